import * as tf from '@tensorflow/tfjs';
import { SeededRandom } from './rng';
import { DEFAULT_GUIDANCE_SCALE, ddsGrad, scoreLoss, sdsGrad } from './score';
import type { EditModel, ScoreModel, ScoreOptions, TextEmbeddings, Weighting } from './types';

/** Default number of optimisation steps of the editing loop (the DDS notebook). */
export const DEFAULT_EDIT_STEPS = 200;
/** Default SGD learning rate of the editing loop (the DDS notebook). */
export const DEFAULT_EDIT_LR = 0.1;
/** The notebook's loss scale: it minimises `2000 · scoreLoss(z, grad)` on 64×64 latents (512×512 pictures). */
export const DEFAULT_LOSS_SCALE = 2000;
/** Latent pixels (h·w) of the notebook's 512×512 pictures, at which {@link DEFAULT_LOSS_SCALE} was tuned. */
export const NOTEBOOK_LATENT_PIXELS = 64 * 64;

/**
 * The default loss scale for a latent of `h × w` pixels: `2000 · h·w / 4096`, so that the SGD step on each latent
 * element, `lr · lossScale/(h·w) · grad = lr · 2000/4096 · grad`, is the notebook's at every size. At 512×512 this
 * is exactly the notebook's 2000. Taken literally at other sizes, the notebook's `2000/(h·w)` makes the per-element
 * step grow as the picture shrinks: 64× at 8×8 latents, where it made the toy model's latents diverge (std 1 → 4 in
 * 40 steps). Pass `lossScale: 2000` for the literal notebook formula.
 */
export function defaultLossScale(h: number, w: number): number {
  return (DEFAULT_LOSS_SCALE * h * w) / NOTEBOOK_LATENT_PIXELS;
}

/** What {@link EditLatentOptions.onStep} receives after each optimisation step. */
export interface EditStepInfo {
  /** 0-based index of the step just taken. */
  step: number;
  /** Total number of steps requested. */
  steps: number;
  /** The diffusion timestep sampled for this step (first image of the batch). */
  timestep: number;
  /** Every image's timestep for this step. */
  timesteps: number[];
  /** `scoreLoss(z, grad)` before the step (without the loss scale; the notebook logs the same quantity). */
  loss: number;
  /** Milliseconds since the loop started. */
  elapsedMs: number;
  /** Estimated milliseconds left, from the mean step time so far. */
  etaMs: number;
  /**
   * The latent after this step (the loop's variable: read it, or `tf.clone` it to keep it; never dispose it). Valid
   * only until the callback returns (or its promise settles).
   */
  latent: tf.Tensor4D;
}

/** Options of {@link editLatent} (and, through {@link EditImageOptions}, of {@link editImage}). */
export interface EditLatentOptions {
  /** `'dds'` (default): Delta Denoising Score; `'sds'`: Score Distillation Sampling with the target prompt only. */
  method?: 'dds' | 'sds';
  /** Optimisation steps. Default: the model's `defaults.edit.steps`, else 200. */
  steps?: number;
  /** SGD learning rate when no `optimizer` is given. Default: the model's `defaults.edit.lr`, else 0.1. */
  lr?: number;
  /**
   * The loss minimised is `lossScale · scoreLoss(z, grad)`. Default {@link defaultLossScale}(h, w) = 2000·h·w/4096:
   * the notebook's 2000 at 64×64 latents, and the notebook's per-element step at every other size.
   */
  lossScale?: number;
  /** Classifier-free guidance scale. Default: the model's `defaults.edit.guidanceScale`, else 7.5. */
  guidanceScale?: number;
  /** Seed for every step's timestep and noise (each step gets its own seed derived from this one). */
  seed?: number;
  /** Timestep range of the score (see {@link ScoreOptions.tRange}). Default [50, 950]. */
  tRange?: [number, number];
  /** Timestep weighting of the score. Default `'uniform'`. */
  weighting?: Weighting;
  /** Mask multiplied into the score (broadcast against the latent). */
  mask?: tf.Tensor;
  /** Maximum UNet rows per call (see {@link ScoreOptions.unetBatch}). */
  unetBatch?: number;
  /**
   * The optimiser. Default `tf.train.sgd(lr)` (the notebook's `torch.optim.SGD`), created and disposed by the loop;
   * an optimiser passed here is used as is and not disposed. tfjs optimisers keep per-variable state (Adam's
   * moments) by position, so pass a fresh optimiser to every call.
   */
  optimizer?: tf.Optimizer;
  /**
   * Per-step timestep override (e.g. a deterministic annealing schedule, or stored values in tests). Returning
   * undefined falls back to a random draw.
   */
  timestepAt?: (step: number) => number | number[] | undefined;
  /**
   * Per-step noise override: a tensor of the latent's shape, which the loop disposes after the step. Returning
   * undefined falls back to a random draw.
   */
  noiseAt?: (step: number) => tf.Tensor4D | undefined;
  /**
   * Called after every step (progress bars, logging, early stopping): return `false` to stop early. May be async;
   * the loop awaits it and yields to the event loop between steps.
   */
  onStep?: (info: EditStepInfo) => boolean | void | Promise<boolean | void>;
  /** Aborts the loop between steps (the latent reached so far is returned). */
  signal?: AbortSignal;
}

/** Prompts and options of {@link editImage}. */
export interface EditImageOptions extends EditLatentOptions {
  /** The prompt describing the input image (DDS; ignored by SDS). */
  source: string;
  /** The prompt describing the wanted edit. */
  target: string;
  /** The unconditional prompt for classifier-free guidance. Default `''`. */
  negativePrompt?: string;
}

/** Result of {@link editLatent}. The caller owns `latent`. */
export interface EditLatentResult {
  /** The optimised latent `[B, h, w, C]` (scaled, like the input). */
  latent: tf.Tensor4D;
  /** The number of steps actually taken (fewer than requested when stopped early). */
  steps: number;
  /** `scoreLoss` before each step taken. */
  losses: number[];
}

/** Result of {@link editImage}. The caller owns both tensors. */
export interface EditImageResult {
  /** The edited picture `[1, H, W, 3]` in [0, 1]. */
  image: tf.Tensor4D;
  /** The optimised latent `[1, H/8, W/8, C]` (scaled by the VAE scaling factor). */
  latent: tf.Tensor4D;
  /** The number of steps actually taken. */
  steps: number;
  /** `scoreLoss` before each step taken. */
  losses: number[];
}

function nonNegativeInt(fn: string, name: string, v: number): number {
  if (!Number.isInteger(v) || v < 0) throw new Error(`${fn}: ${name} must be a non-negative integer, got ${v}`);
  return v;
}

// setImmediate in Node; a browser has none (setTimeout(0) there; browsers clamp it to ≈ 4 ms only when nested deeply).
const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => (typeof setImmediate === 'function' ? setImmediate(resolve) : setTimeout(resolve, 0)));

/**
 * The DDS (or SDS) optimisation loop on latents, as the DDS notebook runs it: `z ← zSource` (a `tf.Variable`), then
 * for each step evaluate the score at z, and take an optimiser step on `lossScale · scoreLoss(z, grad)` — with the
 * default SGD this is `z ← z − lr·lossScale/(h·w)·grad`, which with the default loss scale is the notebook's
 * `z ← z − lr·2000/4096·grad` at any latent size (see {@link defaultLossScale}).
 *
 * - `zSource`: the source latent ẑ `[B, h, w, C]` (scaled by the VAE factor), kept fixed; not disposed.
 * - `source` / `target`: the prompts' embeddings (`source` is unused by SDS).
 * - Options not given take the model's own defaults (`sd.defaults.edit`, from its folder's `ddsjs_defaults.json`)
 *   when it has them, else the notebook's (200 steps, lr 0.1, guidance 7.5).
 *
 * Asynchronous so that progress can be shown: `onStep` runs after every step, and the loop yields to the event loop.
 * Intermediate tensors are freed every step. The caller owns the returned `latent`.
 */
export async function editLatent(
  sd: ScoreModel,
  inputs: { zSource: tf.Tensor4D; source: TextEmbeddings; target: TextEmbeddings },
  opts: EditLatentOptions = {},
): Promise<EditLatentResult> {
  const fn = 'editLatent';
  const method = opts.method ?? 'dds';
  if (method !== 'dds' && method !== 'sds') throw new Error(`${fn}: method must be 'dds' or 'sds', got '${String(method)}'`);
  const modelDefaults = sd?.defaults?.edit ?? {};
  const steps = nonNegativeInt(fn, 'steps', opts.steps ?? modelDefaults.steps ?? DEFAULT_EDIT_STEPS);
  const lr = opts.lr ?? modelDefaults.lr ?? DEFAULT_EDIT_LR;
  const guidanceScale = opts.guidanceScale ?? modelDefaults.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
  if (!Number.isFinite(lr) || lr <= 0) throw new Error(`${fn}: lr must be a positive number, got ${lr}`);
  if (opts.seed !== undefined && !Number.isFinite(opts.seed)) throw new Error(`${fn}: seed must be a finite number, got ${opts.seed}`);
  const zSource = inputs?.zSource;
  if (!(zSource instanceof tf.Tensor) || zSource.rank !== 4) {
    throw new Error(`${fn}: zSource must be a latent tensor [B, h, w, C]`);
  }
  const lossScale = opts.lossScale ?? defaultLossScale(zSource.shape[1], zSource.shape[2]);
  if (!Number.isFinite(lossScale)) throw new Error(`${fn}: lossScale must be a finite number, got ${lossScale}`);
  const seeds = opts.seed === undefined ? undefined : new SeededRandom(opts.seed);
  const ownOptimizer = opts.optimizer === undefined;
  const optimizer = opts.optimizer ?? tf.train.sgd(lr);
  const z = tf.variable(zSource, true, undefined, 'float32') as tf.Variable<tf.Rank.R4>;
  const losses: number[] = [];
  const started = Date.now();
  let taken = 0;
  try {
    for (let step = 0; step < steps; step++) {
      if (opts.signal?.aborted) break;
      const scoreOpts: ScoreOptions = {
        guidanceScale,
        tRange: opts.tRange,
        weighting: opts.weighting,
        mask: opts.mask,
        unetBatch: opts.unetBatch,
        seed: seeds ? seeds.nextUint32() : undefined,
      };
      const t = opts.timestepAt?.(step);
      if (t !== undefined) scoreOpts.timestep = t;
      const noise = opts.noiseAt?.(step);
      if (noise !== undefined) scoreOpts.noise = noise;
      let res;
      try {
        res =
          method === 'dds'
            ? ddsGrad(sd, { zSource, zTarget: z, source: inputs.source, target: inputs.target }, scoreOpts)
            : sdsGrad(sd, { z, text: inputs.target }, scoreOpts);
      } finally {
        noise?.dispose();
      }
      let lossValue: number;
      try {
        const grad = res.grad;
        const scaled = optimizer.minimize(() => tf.mul(scoreLoss(z, grad), lossScale) as tf.Scalar, true, [z]);
        try {
          lossValue = (await scaled!.data())[0] / lossScale;
        } finally {
          scaled?.dispose();
        }
      } finally {
        res.dispose();
      }
      losses.push(lossValue);
      taken = step + 1;
      const elapsedMs = Date.now() - started;
      const info: EditStepInfo = {
        step,
        steps,
        timestep: res.timestep[0],
        timesteps: res.timestep,
        loss: lossValue,
        elapsedMs,
        etaMs: (elapsedMs / taken) * (steps - taken),
        latent: z,
      };
      const go = opts.onStep ? await opts.onStep(info) : undefined;
      if (go === false) break;
      await yieldToEventLoop();
    }
    return { latent: tf.clone(z) as tf.Tensor4D, steps: taken, losses };
  } finally {
    z.dispose();
    if (ownOptimizer) optimizer.dispose();
  }
}

/**
 * Edits a picture with DDS (default) or SDS, as the DDS notebook does:
 * 1. `ẑ = vae.encode(image).mean × scalingFactor` (the distribution's mean: deterministic);
 * 2. {@link editLatent} from `z = ẑ` (default 200 SGD steps at lr 0.1 on `2000 · scoreLoss`, or the model's own
 *    defaults from its `ddsjs_defaults.json`), with the prompts
 *    encoded once (`negativePrompt`, default `''`, as the unconditional prompt of both branches);
 * 3. `vae.decode(z / scalingFactor)`, mapped by `x/2 + 0.5` and clamped to [0, 1].
 *
 * `image` is `[1, H, W, 3]` in [−1, 1] (e.g. from `@ddsjs/sd`'s `loadImageForEdit`); H and W must be multiples of 8
 * (the latent is H/8 × W/8; non-square is fine). The caller owns both returned tensors; everything else is freed.
 */
export async function editImage(sd: EditModel, image: tf.Tensor4D, opts: EditImageOptions): Promise<EditImageResult> {
  const fn = 'editImage';
  if (!sd || !sd.vae || typeof sd.vae.encode !== 'function' || typeof sd.vae.decode !== 'function' || typeof sd.encodePrompt !== 'function') {
    throw new Error(`${fn}: the model must have vae.encode, vae.decode and encodePrompt`);
  }
  if (!(image instanceof tf.Tensor) || image.rank !== 4 || image.shape[0] !== 1 || image.shape[3] !== 3) {
    throw new Error(`${fn}: image must be a tensor [1, H, W, 3] in [-1, 1], got ${image instanceof tf.Tensor ? `[${image.shape}]` : typeof image}`);
  }
  const [, H, W] = image.shape;
  if (H % 8 !== 0 || W % 8 !== 0 || H === 0 || W === 0) {
    throw new Error(`${fn}: the image is ${W}×${H} pixels; both sides must be multiples of 8 (the VAE downsamples by 8)`);
  }
  if (!opts || typeof opts.target !== 'string' || typeof opts.source !== 'string') {
    throw new Error(`${fn}: options must give the prompts { source: string, target: string }`);
  }
  const scaling = sd.schedule.scalingFactor;
  if (!Number.isFinite(scaling) || scaling <= 0) throw new Error(`${fn}: schedule.scalingFactor must be positive, got ${scaling}`);

  const text = tf.tidy(() => {
    const uncond = sd.encodePrompt(opts.negativePrompt ?? '');
    return { uncond, cond: sd.encodePrompt(opts.target), condSource: sd.encodePrompt(opts.source) };
  });
  const zSource = tf.tidy(() => {
    const post = sd.vae.encode(image);
    return tf.mul(post.mean, scaling) as tf.Tensor4D;
  });
  try {
    const res = await editLatent(
      sd,
      {
        zSource,
        source: { cond: text.condSource, uncond: text.uncond },
        target: { cond: text.cond, uncond: text.uncond },
      },
      opts,
    );
    let decoded: tf.Tensor4D;
    try {
      decoded = tf.tidy(() => {
        const x = sd.vae.decode(tf.div(res.latent, scaling) as tf.Tensor4D);
        return tf.clipByValue(tf.add(tf.div(x, 2), 0.5), 0, 1) as tf.Tensor4D;
      });
    } catch (e) {
      res.latent.dispose();
      throw e;
    }
    return { image: decoded, latent: res.latent, steps: res.steps, losses: res.losses };
  } finally {
    zSource.dispose();
    tf.dispose([text.uncond, text.cond, text.condSource]);
  }
}
