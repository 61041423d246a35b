// Training of the translation network with DDS as its only signal (the DDS paper, Section 5), with resumable
// checkpoints, reproducible data order and noise, and a clean stop on divergence.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { mixSeed } from '@ddsjs/nn';
import type { StableDiffusion } from '@ddsjs/sd';
import { InvalidArgumentError } from '@ddsjs/safetensors';
import { Adam, checkSameTrajectory, clipScale, DivergedError, finiteNumber, gradNorm, nonNegativeInt, nonNegativeNumber, numberInRange, positiveInt, positiveNumber, TrainingRun } from '@ddsjs/train';
import { DEFAULT_GUIDANCE_SCALE } from '../score/score';
import { DEFAULT_LOSS_SCALE } from '../score/edit';
import {
  checkTasks,
  createTranslator,
  CreateTranslatorOptions,
  loadTranslator,
  readTranslatorMeta,
  studentUNetConfig,
  teacherFingerprint,
  Translator,
  TRANSLATOR_FILES,
  TranslatorTrainingRecord,
  unetConfigToJson,
  writeTranslatorFolder,
} from './translator';
import { translatorGrads, type TranslatorGrads, type TranslatorLossOptions } from './translator-loss';
import { DataOrder, datasetHash, prepareTranslatorData, TranslatorData, TranslatorDataProgress, TranslatorDataset } from './translator-data';

/** Default number of training steps of {@link trainTranslator}. */
export const DEFAULT_TRANSLATOR_STEPS = 1000;
/** Default Adam learning rate of {@link trainTranslator} (fine-tuning a Stable Diffusion-sized UNet). */
export const DEFAULT_TRANSLATOR_LR = 1e-5;

// Salt of the per-step DDS noise stream (the task choice and data order use theirs: see DataOrder).
const SALT_NOISE = 3;

/** What {@link TrainTranslatorOptions.onStep} receives after every training step. */
export interface TranslatorStepInfo {
  /** 0-based index of the step just taken (counting resumed steps). */
  step: number;
  /** Total steps requested. */
  steps: number;
  /** Index of the task trained at this step. */
  task: number;
  /** The DDS timestep of each image of the batch. */
  timesteps: number[];
  /** The DDS term `scoreLoss` (unscaled), before the update. */
  loss: number;
  /** The total loss minimised (scaled DDS + weighted regularisers), before the update. */
  total: number;
  /** The cycle term, when enabled. */
  cycle: number | null;
  /** The identity term, when enabled. */
  identity: number | null;
  /** ‖∇total‖₂ over the student's parameters, before clipping. */
  gradNorm: number;
  /** Milliseconds since this run started (after data preparation). */
  elapsedMs: number;
  /** Estimated milliseconds left (mean step time of this run, the first step left out once there are two, × steps left). */
  etaMs: number;
  /** Whether a checkpoint was written after this step. */
  checkpointed: boolean;
  /** The translator being trained (borrowed: do not dispose; valid during the callback). */
  translator: Translator;
}

/** Options of {@link trainTranslator}. */
export interface TrainTranslatorOptions extends Omit<CreateTranslatorOptions, 'seed' | 'teacherFingerprint'>, TranslatorLossOptions {
  /** The training data: source latents with their source prompts (see {@link TranslatorData}). */
  data: TranslatorData;
  /** Total optimisation steps (resumed steps included). Default 1000. */
  steps?: number;
  /** Latents per step (all of one task). Default 1. */
  batchSize?: number;
  /** Adam learning rate. Default 1e-5. */
  lr?: number;
  /** Seed of everything random: student init, task choice, data order, DDS timesteps and noise, generated data. Default 0. */
  seed?: number;
  /** Clip the gradient to this global L2 norm. Default: no clipping. */
  clipGradNorm?: number;
  /** Unconditional prompt of the teacher's classifier-free guidance. Default `''`. */
  negativePrompt?: string;
  /**
   * What translator.json records as the teacher's `source` (default: `sd.source`, the folder it was loaded from).
   * A package name such as `'@ddsjs/toy-shapes/model'` keeps a shipped translator from naming the trainer's own
   * checkout path, which `dds translate` would otherwise try to load as the teacher on another machine.
   */
  teacherSource?: string;
  /** Adam β₁, β₂, ε. Default 0.9, 0.999, 1e-8. */
  adam?: { beta1?: number; beta2?: number; eps?: number };
  /**
   * Guidance-scale warm-up (the DDS paper's remedy against mode collapse): the teacher's guidance rises linearly
   * from `from` (default 1, no guidance) at step 0 to `guidanceScale` at step `steps`, and stays there. Default: none
   * (`guidanceScale` from the first step). See {@link guidanceAtStep}.
   */
  guidanceWarmup?: { steps: number; from?: number };
  /** Folder for checkpoints: a translator folder plus the optimiser state, resumable with `resumeFrom`. */
  checkpointDir?: string;
  /** Write a checkpoint every this many steps (and after the last step). Default 0: after the last step only. Needs `checkpointDir`. */
  checkpointEvery?: number;
  /**
   * Resume from a checkpoint folder: the student, the optimiser state and the step counter are restored, and the
   * run continues exactly as the uninterrupted run would have (data order and noise are functions of the seed and
   * step). Tasks, data and the options that shape training must equal the checkpoint's (an error lists the
   * differences). Checkpoints then go to `checkpointDir`, by default this folder.
   */
  resumeFrom?: string;
  /** Replace a translator already in `checkpointDir` (not being resumed). Default false (an error). */
  overwrite?: boolean;
  /** Called after every step (progress, logging, early stop by returning `false`). May be async. */
  onStep?: (info: TranslatorStepInfo) => boolean | void | Promise<boolean | void>;
  /** Called while the data is prepared (encoding pictures, generating them). */
  onData?: (p: TranslatorDataProgress) => void;
  /** Stops training between steps (a checkpoint is written when `checkpointDir` is set). */
  signal?: AbortSignal;
}

/**
 * Thrown by {@link trainTranslator} when the loss or the gradient stops being finite: `step` is the 0-based step
 * whose loss or gradient was not finite, `lastCheckpoint` the last checkpoint written (folder and steps done) or null.
 */
export class TranslatorDivergedError extends DivergedError {
  constructor(message: string, step: number, lastCheckpoint: { dir: string; step: number } | null) {
    super(message, step, lastCheckpoint);
    this.name = 'TranslatorDivergedError';
  }
}

/**
 * The teacher's guidance scale at (0-based) training step `step`: `guidanceScale`, or during a warm-up of
 * `warmup.steps` steps the linear ramp `from + (guidanceScale − from) · step / warmup.steps` (`from` default 1).
 */
export function guidanceAtStep(step: number, guidanceScale: number, warmup?: { steps: number; from?: number }): number {
  if (!warmup || warmup.steps <= 0 || step >= warmup.steps) return guidanceScale;
  const from = warmup.from ?? 1;
  return from + ((guidanceScale - from) * step) / warmup.steps;
}

/** The options that determine the training trajectory (recorded in translator.json; compared on resume). */
function trajectoryOptions(o: TrainTranslatorOptions, r: Required<Pick<TrainTranslatorOptions, 'batchSize' | 'lr' | 'seed'>>): Record<string, unknown> {
  const w = o.weighting ?? 'uniform';
  return {
    seed: r.seed,
    batchSize: r.batchSize,
    lr: r.lr,
    guidanceScale: o.guidanceScale ?? DEFAULT_GUIDANCE_SCALE,
    tRange: o.tRange ?? null,
    weighting: typeof w === 'function' ? 'custom function' : w,
    lossScale: o.lossScale ?? DEFAULT_LOSS_SCALE,
    cycleWeight: o.cycleWeight ?? 0,
    identityWeight: o.identityWeight ?? 0,
    clipGradNorm: o.clipGradNorm ?? null,
    negativePrompt: o.negativePrompt ?? '',
    adam: { beta1: o.adam?.beta1 ?? 0.9, beta2: o.adam?.beta2 ?? 0.999, eps: o.adam?.eps ?? 1e-8 },
    // Recorded only when used, so checkpoints written before the option existed still resume.
    ...(o.guidanceWarmup && o.guidanceWarmup.steps > 0 ? { guidanceWarmup: { steps: o.guidanceWarmup.steps, from: o.guidanceWarmup.from ?? 1 } } : {}),
  };
}

/**
 * Trains a zero-shot image-to-image translation network (the DDS paper, Section 5) and returns it.
 *
 * The student `f` (see {@link Translator}) starts as the identity (built by {@link createTranslator}, or restored
 * from `resumeFrom`). Each step picks one task (uniformly, reproducibly from the seed) and `batchSize` source
 * latents ẑ of its source prompt, and takes one Adam step on (see {@link translatorGrads})
 * `lossScale · scoreLoss(f(ẑ, y), ddsGrad(ẑ → f(ẑ, y)))` plus the optional cycle and identity terms. The teacher
 * `sd` is frozen: its weights are only read, and only the student's parameters get gradients.
 *
 * Everything random is a function of (seed, step), so `resumeFrom` a checkpoint continues exactly as an
 * uninterrupted run. When the loss or the gradient is not finite, training stops with a
 * {@link TranslatorDivergedError} before that step's update, leaving the last checkpoint as it was. Works on any tfjs
 * backend (the wasm backend included). The caller owns the returned translator (`dispose()`); the teacher stays
 * the caller's.
 */
export async function trainTranslator(sd: StableDiffusion, options: TrainTranslatorOptions): Promise<Translator> {
  const fn = 'trainTranslator';
  if (!sd || !sd.unet || !sd.schedule || typeof sd.encodePrompt !== 'function') throw new InvalidArgumentError(`${fn}: sd must be a loaded Stable Diffusion pipeline`);
  if (!options || typeof options !== 'object') throw new InvalidArgumentError(`${fn}: options must be an object { tasks, data, ... }`);
  const o = options;
  const tasks = checkTasks(fn, o.tasks);
  const steps = nonNegativeInt(fn, 'steps', o.steps ?? DEFAULT_TRANSLATOR_STEPS);
  const batchSize = positiveInt(fn, 'batchSize', o.batchSize ?? 1);
  const lr = positiveNumber(fn, 'lr', o.lr ?? DEFAULT_TRANSLATOR_LR);
  const seed = finiteNumber(fn, 'seed', o.seed ?? 0);
  const clip = o.clipGradNorm === undefined ? Infinity : positiveNumber(fn, 'clipGradNorm', o.clipGradNorm);
  nonNegativeNumber(fn, 'lossScale', o.lossScale ?? DEFAULT_LOSS_SCALE);
  nonNegativeNumber(fn, 'cycleWeight', o.cycleWeight ?? 0);
  nonNegativeNumber(fn, 'identityWeight', o.identityWeight ?? 0);
  const checkpointEvery = nonNegativeInt(fn, 'checkpointEvery', o.checkpointEvery ?? 0);
  const resumeFrom = o.resumeFrom;
  if (resumeFrom !== undefined && (typeof resumeFrom !== 'string' || resumeFrom === '')) throw new InvalidArgumentError(`${fn}: resumeFrom must be a checkpoint folder`);
  const checkpointDir = o.checkpointDir ?? resumeFrom;
  if (checkpointDir !== undefined && (typeof checkpointDir !== 'string' || checkpointDir === '')) throw new InvalidArgumentError(`${fn}: checkpointDir must be a folder path`);
  if (checkpointEvery > 0 && !checkpointDir) throw new InvalidArgumentError(`${fn}: checkpointEvery needs checkpointDir`);
  if (o.onStep !== undefined && typeof o.onStep !== 'function') throw new InvalidArgumentError(`${fn}: onStep must be a function`);
  if (checkpointDir && (!resumeFrom || path.resolve(resumeFrom) !== path.resolve(checkpointDir))) {
    if (fs.existsSync(path.join(checkpointDir, TRANSLATOR_FILES.meta)) && !o.overwrite) {
      throw new InvalidArgumentError(`${fn}: ${checkpointDir} already holds a translator; pass resumeFrom: ${JSON.stringify(checkpointDir)} to continue its training, or overwrite: true to replace it`);
    }
  }
  const adamOpts = { beta1: o.adam?.beta1 ?? 0.9, beta2: o.adam?.beta2 ?? 0.999, eps: o.adam?.eps ?? 1e-8 };
  numberInRange(fn, 'adam.beta1', adamOpts.beta1, 0, 1, { hi: true });
  numberInRange(fn, 'adam.beta2', adamOpts.beta2, 0, 1, { hi: true });
  nonNegativeNumber(fn, 'adam.eps', adamOpts.eps);
  if (o.guidanceWarmup !== undefined) {
    const gw = o.guidanceWarmup;
    if (!gw || typeof gw !== 'object') throw new InvalidArgumentError(`${fn}: guidanceWarmup must be { steps, from? }`);
    nonNegativeInt(fn, 'guidanceWarmup.steps', gw.steps);
    if (gw.from !== undefined) nonNegativeNumber(fn, 'guidanceWarmup.from', gw.from);
  }
  const trajectory = trajectoryOptions(o, { batchSize, lr, seed });

  // ---- the student: fresh, or restored from a checkpoint
  const fingerprint = await teacherFingerprint(sd);
  let translator: Translator;
  let checkpointId: string | null = null;
  if (resumeFrom) {
    const meta = readTranslatorMeta(resumeFrom, fn);
    if (!meta.training) throw new InvalidArgumentError(`${fn}: ${resumeFrom} is a translator without training state; it cannot be resumed`);
    if (!fs.existsSync(path.join(resumeFrom, TRANSLATOR_FILES.optimizer))) {
      throw new InvalidArgumentError(`${fn}: ${resumeFrom} has no ${TRANSLATOR_FILES.optimizer} (a saved translator, not a training checkpoint); it cannot be resumed exactly`);
    }
    if (JSON.stringify(meta.tasks) !== JSON.stringify(tasks)) {
      throw new InvalidArgumentError(`${fn}: resumeFrom ${resumeFrom} was trained on the tasks ${JSON.stringify(meta.tasks)}, not ${JSON.stringify(tasks)}`);
    }
    checkSameTrajectory(fn, `resumeFrom ${resumeFrom}`, meta.training.options, trajectory);
    const fp = meta.teacher?.fingerprint;
    if (fp && (fp.vae !== fingerprint.vae || fp.textEncoder !== fingerprint.textEncoder || (fp.unet && fingerprint.unet && fp.unet !== fingerprint.unet))) {
      throw new InvalidArgumentError(`${fn}: resumeFrom ${resumeFrom} was trained with another teacher (${meta.teacher!.source}) than ${sd.source}`);
    }
    translator = await loadTranslator(resumeFrom, sd);
    checkpointId = meta.checkpointId;
    try {
      const want = JSON.stringify(unetConfigToJson(studentUNetConfig(sd.configs.unet, o.studentConfig, translator.embeddings.shape[2])));
      if (want !== JSON.stringify(unetConfigToJson(translator.unet.config))) {
        throw new InvalidArgumentError(`${fn}: resumeFrom ${resumeFrom} has another student architecture than studentConfig asks for (its config.json: ${JSON.stringify(unetConfigToJson(translator.unet.config))})`);
      }
      const t0 = o.studentTimestep ?? translator.studentTimestep;
      if (t0 !== translator.studentTimestep) throw new InvalidArgumentError(`${fn}: resumeFrom ${resumeFrom} uses studentTimestep ${translator.studentTimestep}, not ${t0}`);
    } catch (e) {
      translator.dispose();
      throw e;
    }
  } else {
    translator = (
      await createTranslator(sd, { tasks, studentConfig: o.studentConfig, init: o.init, studentTimestep: o.studentTimestep, seed, teacherFingerprint: fingerprint })
    ).translator;
  }

  const params = translator.unet.namedParameters().filter(([, p]) => p.isTrainable);
  const adam = new Adam(params, adamOpts);
  let uncond: tf.Tensor3D | null = null;
  const started = Date.now();
  try {
    if (resumeFrom) await adam.load(path.join(resumeFrom, TRANSLATOR_FILES.optimizer), { checkpoint_id: checkpointId! });

    // ---- data
    const data: TranslatorDataset = await prepareTranslatorData(sd, o.data, {
      sourcePrompts: tasks.map((t) => t.source),
      seed,
      fingerprint,
      onProgress: o.onData,
    });
    if (data.shape[2] !== translator.latentChannels) {
      throw new InvalidArgumentError(`${fn}: the data latents have ${data.shape[2]} channels, the student reads ${translator.latentChannels}`);
    }
    const poolPrompts = [...new Set(tasks.map((t) => t.source))];
    const pools = poolPrompts.map((p) => data.prompts.flatMap((q, i) => (q === p ? [i] : [])));
    const empty = poolPrompts.filter((_, i) => pools[i].length === 0);
    if (empty.length) {
      throw new InvalidArgumentError(`${fn}: no training data for the source prompt${empty.length > 1 ? 's' : ''} ${empty.map((p) => JSON.stringify(p)).join(', ')} (data prompts: ${[...new Set(data.prompts)].map((p) => JSON.stringify(p)).join(', ')})`);
    }
    const counts: Record<string, number> = {};
    for (const p of data.prompts) counts[p] = (counts[p] ?? 0) + 1;
    const summary = { shape: [...data.shape], counts, sha256: datasetHash(data) };
    if (resumeFrom && translator.training && translator.training.data.sha256 !== summary.sha256) {
      throw new InvalidArgumentError(`${fn}: resumeFrom ${resumeFrom} was trained on other data (${JSON.stringify(translator.training.data.counts)} latents of [${translator.training.data.shape}]) than given now (${JSON.stringify(counts)} of [${summary.shape}])`);
    }
    const start = translator.stepsDone;
    const priorSeconds = translator.training?.seconds ?? 0;
    const record: TranslatorTrainingRecord = { step: start, options: trajectory, data: summary, seconds: priorSeconds };
    translator.training = record;
    translator.teacher = { source: options.teacherSource ?? sd.source ?? '', fingerprint };
    translator.imageModel = sd;
    const order = new DataOrder(seed, tasks, pools, tasks.map((t) => poolPrompts.indexOf(t.source)), batchSize);
    order.skip(start);
    uncond = sd.encodePrompt(o.negativePrompt ?? '');
    const [h, w, c] = data.shape;

    const checkpoint = async (): Promise<{ dir: string; step: number }> => {
      record.seconds = priorSeconds + (Date.now() - started) / 1000;
      await writeTranslatorFolder(translator, checkpointDir!, [{ name: TRANSLATOR_FILES.optimizer, ...(await adam.state()) }]);
      return { dir: checkpointDir!, step: record.step };
    };

    const loopStart = Date.now();
    let current: { task: number; timesteps: number[] } = { task: 0, timesteps: [] };
    const run = new TrainingRun({
      name: fn,
      start,
      total: steps,
      checkpointEvery,
      checkpoint: checkpointDir ? checkpoint : undefined,
      lastCheckpoint: resumeFrom ? { dir: resumeFrom, step: start } : null,
      signal: o.signal,
      checkSignalBefore: true,
      labels: { total: 'total loss', loss: 'DDS loss', cycle: 'cycle', identity: 'identity', gradNorm: 'gradient norm' },
      updates: 'the student',
      advice: 'resume from it with a lower lr or clipGradNorm',
      onStep: o.onStep
        ? (p) => {
            const v = p.values;
            return o.onStep!({
              step: p.step, steps, task: current.task, timesteps: current.timesteps, loss: v.loss!, total: v.total!, cycle: v.cycle, identity: v.identity, gradNorm: v.gradNorm!,
              elapsedMs: Date.now() - loopStart, etaMs: p.etaSeconds * 1000, checkpointed: p.checkpointed, translator,
            });
          }
        : undefined,
    });
    const read = async (t: tf.Scalar | null) => (t ? (await t.data())[0] : null);
    try {
      await run.run(async (step) => {
        const { task, items } = order.next(step);
        const batch = new Float32Array(items.length * h * w * c);
        items.forEach((it, k) => batch.set(data.latents[it], k * h * w * c));
        const zSource = tf.tensor4d(batch, [items.length, h, w, c]);
        let g: TranslatorGrads;
        try {
          g = translatorGrads(sd, translator, { zSource, task, uncond: uncond! }, {
            guidanceScale: guidanceAtStep(step, o.guidanceScale ?? DEFAULT_GUIDANCE_SCALE, o.guidanceWarmup),
            tRange: o.tRange,
            weighting: o.weighting,
            unetBatch: o.unetBatch,
            seed: mixSeed([seed, SALT_NOISE, step]),
            lossScale: o.lossScale,
            cycleWeight: o.cycleWeight,
            identityWeight: o.identityWeight,
          });
        } finally {
          zSource.dispose();
        }
        try {
          const values = { total: await read(g.total), loss: await read(g.dds), cycle: await read(g.cycle), identity: await read(g.identity), gradNorm: await gradNorm([...g.grads.values()]) };
          current = { task, timesteps: g.timestep };
          return {
            values,
            apply: () => {
              adam.apply(g.grads, lr, clipScale(values.gradNorm, clip));
              record.step = step + 1;
            },
            dispose: () => g.dispose(),
          };
        } catch (e) {
          g.dispose();
          throw e;
        }
      });
    } catch (e) {
      if (e instanceof DivergedError) throw new TranslatorDivergedError(e.message, e.step, e.lastCheckpoint);
      throw e;
    }
    const last = run.lastCheckpoint;
    if (checkpointDir && (!last || last.step !== record.step || path.resolve(last.dir) !== path.resolve(checkpointDir))) await checkpoint();
    record.seconds = priorSeconds + (Date.now() - started) / 1000;
    return translator;
  } catch (e) {
    translator.dispose();
    throw e;
  } finally {
    uncond?.dispose();
    adam.dispose();
  }
}
