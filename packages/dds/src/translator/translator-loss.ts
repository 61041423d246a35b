// The translator's training signal: DDS as a differentiable loss (ddsLoss) and one step's gradients with the optional
// cycle and identity terms (translatorGrads). The training loop around them is in translator-train.ts.
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '@ddsjs/safetensors';
import { DEFAULT_GUIDANCE_SCALE, ddsGrad, scoreLoss } from '../score/score';
import { DEFAULT_LOSS_SCALE } from '../score/edit';
import type { ScoreModel, ScoreOptions, TextEmbeddings, Weighting } from '../score/types';
import { Translator, TranslatorTask } from './translator';

/** The differentiable DDS loss of {@link ddsLoss}. */
export interface DdsLossResult {
  /** `scoreLoss(zTarget, ddsGrad(zSource → zTarget))`, a scalar the caller owns. */
  loss: tf.Scalar;
  /** The diffusion timestep drawn for each image. */
  timestep: number[];
}

/**
 * `scoreLoss(zTarget, ddsGrad(sd, { zSource, zTarget, source, target }, opts).grad)` as one differentiable op:
 * its value is the DDS surrogate loss and its gradient with respect to `zTarget` is `grad / (h·w)`, exactly as
 * composing {@link ddsGrad} with {@link scoreLoss}. The difference is memory: the teacher UNet runs inside the op's
 * forward, which a gradient tape does not record, so `tf.variableGrads(() => ddsLoss(sd, student(x), …).loss)`
 * keeps no teacher activations and runs the student once. No gradient reaches the teacher, `zSource` or the
 * embeddings. The caller owns `loss`.
 */
export function ddsLoss(
  sd: ScoreModel,
  zTarget: tf.Tensor4D,
  inputs: { zSource: tf.Tensor4D; source: TextEmbeddings; target: TextEmbeddings },
  opts: ScoreOptions = {},
): DdsLossResult {
  if (!(zTarget instanceof tf.Tensor) || zTarget.rank !== 4) {
    throw new InvalidArgumentError(`ddsLoss: zTarget must be a latent tensor [B, h, w, C], got ${zTarget instanceof tf.Tensor ? `[${zTarget.shape}]` : typeof zTarget}`);
  }
  const hw = zTarget.shape[1] * zTarget.shape[2];
  let timestep: number[] = [];
  const op = tf.customGrad(((z: tf.Tensor, save: tf.GradSaveFunc) => {
    const r = ddsGrad(sd, { zSource: inputs.zSource, zTarget: z as tf.Tensor4D, source: inputs.source, target: inputs.target }, opts);
    try {
      timestep = r.timestep;
      const value = scoreLoss(z, r.grad);
      save([r.grad]);
      return { value, gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.mul(dy, tf.div(saved[0], hw)) };
    } finally {
      r.dispose();
    }
  }) as unknown as Parameters<typeof tf.customGrad>[0]) as (z: tf.Tensor) => tf.Tensor;
  const loss = op(zTarget) as tf.Scalar;
  return { loss, timestep };
}

/** Options of {@link translatorGrads}: the score's options plus the loss weights. */
export interface TranslatorLossOptions {
  /** Classifier-free guidance scale of the teacher. Default 7.5. */
  guidanceScale?: number;
  /** Timestep range of the DDS score. Default [50, 950]. */
  tRange?: [number, number];
  /** Timestep weighting of the DDS score. Default `'uniform'`. */
  weighting?: Weighting;
  /** At most this many rows per teacher UNet call. */
  unetBatch?: number;
  /** Seed of the DDS timestep and noise (see {@link ScoreOptions.seed}). */
  seed?: number;
  /** The DDS term is `lossScale · scoreLoss` (the DDS notebook's 2000). Default 2000. */
  lossScale?: number;
  /** Weight of the cycle-consistency term `mean((f(f(ẑ, y), ŷ) − ẑ)²)`. Default 0 (off). */
  cycleWeight?: number;
  /** Weight of the identity term `mean((f(ẑ, ŷ) − ẑ)²)`. Default 0 (off). */
  identityWeight?: number;
}

/** The loss and gradients of one translator training step. The caller owns every tensor (`dispose()` frees them). */
export interface TranslatorGrads {
  /** Gradient of `total` for every trainable student parameter, by parameter name (`down_blocks.0.…weight`). */
  grads: Map<string, tf.Tensor>;
  /** `lossScale · dds + cycleWeight · cycle + identityWeight · identity`. */
  total: tf.Scalar;
  /** `scoreLoss(f(ẑ, y), ddsGrad(ẑ → f(ẑ, y)))`, unscaled. */
  dds: tf.Scalar;
  /** The cycle term (unweighted), when `cycleWeight > 0`. */
  cycle: tf.Scalar | null;
  /** The identity term (unweighted), when `identityWeight > 0`. */
  identity: tf.Scalar | null;
  /** The DDS timestep of each image. */
  timestep: number[];
  /** Frees every tensor above. */
  dispose(): void;
}

function taskIndexOf(fn: string, translator: Translator, task: number | TranslatorTask): number {
  if (typeof task === 'number') {
    if (!Number.isInteger(task) || task < 0 || task >= translator.tasks.length) throw new InvalidArgumentError(`${fn}: unknown task index ${task} (the translator has ${translator.tasks.length} tasks)`);
    return task;
  }
  const i = translator.tasks.findIndex((t) => t.source === task?.source && t.target === task?.target);
  if (i < 0) throw new InvalidArgumentError(`${fn}: unknown task ${JSON.stringify(task)}`);
  return i;
}

/**
 * The loss of the translation network on one batch and its gradient with respect to the student's trainable
 * parameters (and nothing else): with ẑ = `zSource` `[B, h, w, C]`, the task's source prompt ŷ and target prompt y,
 *
 *     total = lossScale · scoreLoss(f(ẑ, y), ddsGrad(ẑ → f(ẑ, y)))           (the teacher is frozen)
 *           + cycleWeight · mean((f(f(ẑ, y), ŷ) − ẑ)²) + identityWeight · mean((f(ẑ, ŷ) − ẑ)²)
 *
 * `uncond` is the teacher's unconditional embedding `[1, L, D]` (of `''`); the prompt embeddings are the
 * translator's. A building block of {@link trainTranslator}, exported for custom loops. The caller owns the result.
 */
export function translatorGrads(
  sd: ScoreModel,
  translator: Translator,
  inputs: { zSource: tf.Tensor4D; task: number | TranslatorTask; uncond: tf.Tensor3D },
  opts: TranslatorLossOptions = {},
): TranslatorGrads {
  const fn = 'translatorGrads';
  const ti = taskIndexOf(fn, translator, inputs?.task);
  const task = translator.tasks[ti];
  const { zSource, uncond } = inputs;
  if (!(uncond instanceof tf.Tensor) || uncond.rank !== 3 || uncond.shape[0] !== 1) {
    throw new InvalidArgumentError(`${fn}: uncond must be the teacher's unconditional embedding [1, L, D], got ${uncond instanceof tf.Tensor ? `[${uncond.shape}]` : typeof uncond}`);
  }
  const lossScale = opts.lossScale ?? DEFAULT_LOSS_SCALE;
  const cycleWeight = opts.cycleWeight ?? 0;
  const identityWeight = opts.identityWeight ?? 0;
  for (const [n, v] of [['lossScale', lossScale], ['cycleWeight', cycleWeight], ['identityWeight', identityWeight]] as const) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`${fn}: ${n} must be a non-negative number, got ${v}`);
  }
  const params = translator.unet.namedParameters().filter(([, p]) => p.isSet && p.isTrainable);
  if (params.length === 0) throw new InvalidArgumentError(`${fn}: the student has no trainable parameters`);
  const scoreOpts: ScoreOptions = {
    guidanceScale: opts.guidanceScale ?? DEFAULT_GUIDANCE_SCALE,
    tRange: opts.tRange,
    weighting: opts.weighting,
    unetBatch: opts.unetBatch,
    seed: opts.seed,
  };
  const embT = translator.embedding(task.target);
  const embS = translator.embedding(task.source);
  const kept: { dds?: tf.Scalar; cycle?: tf.Scalar; identity?: tf.Scalar; timestep: number[] } = { timestep: [] };
  try {
    const { value, grads } = tf.variableGrads(() => {
      const out = translator.translateLatent(zSource, task.target);
      const d = ddsLoss(sd, out, { zSource, source: { cond: embS, uncond }, target: { cond: embT, uncond } }, scoreOpts);
      kept.timestep = d.timestep;
      kept.dds = tf.keep(d.loss);
      let total: tf.Scalar = tf.mul(d.loss, lossScale);
      if (cycleWeight > 0) {
        const back = translator.translateLatent(out, task.source);
        kept.cycle = tf.keep(tf.mean(tf.squaredDifference(back, zSource)) as tf.Scalar);
        total = tf.add(total, tf.mul(kept.cycle, cycleWeight));
      }
      if (identityWeight > 0) {
        const same = translator.translateLatent(zSource, task.source);
        kept.identity = tf.keep(tf.mean(tf.squaredDifference(same, zSource)) as tf.Scalar);
        total = tf.add(total, tf.mul(kept.identity, identityWeight));
      }
      return total;
    }, params.map(([, p]) => p.value));
    const byVar = new Map(params.map(([n, p]) => [p.value.name, n] as [string, string]));
    const named = new Map<string, tf.Tensor>();
    for (const [v, g] of Object.entries(grads)) named.set(byVar.get(v)!, g);
    const res: TranslatorGrads = {
      grads: named,
      total: value,
      dds: kept.dds!,
      cycle: kept.cycle ?? null,
      identity: kept.identity ?? null,
      timestep: kept.timestep,
      dispose() {
        tf.dispose([...named.values(), value, kept.dds!, ...(kept.cycle ? [kept.cycle] : []), ...(kept.identity ? [kept.identity] : [])]);
      },
    };
    return res;
  } catch (e) {
    tf.dispose([kept.dds, kept.cycle, kept.identity].filter((t): t is tf.Scalar => t !== undefined));
    throw e;
  } finally {
    embT.dispose();
    embS.dispose();
  }
}
