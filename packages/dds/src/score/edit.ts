import * as tf from '@tensorflow/tfjs';
import { imageToLatents, latentsToImage, resolveDefaults } from '@ddsjs/sd';
import type { ResolvedSetting } from '@ddsjs/sd/internals';
import { SeededRandom } from './rng';
import { DEFAULT_GUIDANCE_SCALE, ddsGrad, scoreLoss, sdsGrad } from './score';
import { NFSD_NEGATIVE_PROMPT, csdGrad, nfsdGrad, pdsGrad } from './family';
import { FLOWEDIT_DEFAULTS, flowEditLatent } from './flowedit';
import type { EditModel, ScoreModel, ScoreOptions, TextEmbeddings, Weighting } from './types';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** Default number of optimisation steps of the editing loop (the DDS notebook). */
export const DEFAULT_EDIT_STEPS = 200;
/** Default SGD learning rate of the editing loop (the DDS notebook). */
export const DEFAULT_EDIT_LR = 0.1;
/** The editing methods of {@link editLatent} / {@link editImage}. */
export type EditMethod = 'dds' | 'sds' | 'nfsd' | 'csd' | 'pds' | 'flowedit';
/** Every {@link EditMethod}. */
export const EDIT_METHODS: readonly EditMethod[] = ['dds', 'sds', 'nfsd', 'csd', 'pds', 'flowedit'];

/**
 * Each method's library defaults of the editing loop (a model folder's `ddsjs_defaults.json` `edit` section wins
 * over them, for every method). The loop of the score methods is the DDS notebook's (SGD on `2000·scoreLoss`, 200
 * steps, lr 0.1); the score's own settings are its paper's:
 * - `dds`, `sds`: guidance 7.5 (the DDS notebook).
 * - `nfsd`: ω 7.5, w(t) = 1 − ᾱ_t, the reference's negative prompt ({@link NFSD_NEGATIVE_PROMPT}).
 * - `csd`: the classifier score ε̂(y) − ε̂(∅) (scales (1, 0, −1, 0)); no guidance scale (the value is unused).
 * - `pds`: guidance 100 (the reference's `PDSConfig.guidance_scale`), t_prev = t − 2.
 * - `flowedit`: T = 50 steps of which n_max = 33 run, n_avg = 1, source guidance 3.5, target guidance 13.5 (the
 *   paper's SD3 settings); no learning rate (the value is unused).
 */
export const EDIT_METHOD_DEFAULTS: Readonly<Record<EditMethod, Readonly<{ steps: number; lr: number; guidanceScale: number }>>> = {
  dds: { steps: DEFAULT_EDIT_STEPS, lr: DEFAULT_EDIT_LR, guidanceScale: DEFAULT_GUIDANCE_SCALE },
  sds: { steps: DEFAULT_EDIT_STEPS, lr: DEFAULT_EDIT_LR, guidanceScale: DEFAULT_GUIDANCE_SCALE },
  nfsd: { steps: DEFAULT_EDIT_STEPS, lr: DEFAULT_EDIT_LR, guidanceScale: DEFAULT_GUIDANCE_SCALE },
  csd: { steps: DEFAULT_EDIT_STEPS, lr: DEFAULT_EDIT_LR, guidanceScale: DEFAULT_GUIDANCE_SCALE },
  pds: { steps: DEFAULT_EDIT_STEPS, lr: DEFAULT_EDIT_LR, guidanceScale: 100 },
  flowedit: { steps: FLOWEDIT_DEFAULTS.steps, lr: DEFAULT_EDIT_LR, guidanceScale: FLOWEDIT_DEFAULTS.targetGuidanceScale },
};

/** The library's editing defaults of the default method, DDS (the DDS notebook): 200 steps, SGD lr 0.1, guidance 7.5. */
export const LIBRARY_EDIT_DEFAULTS = EDIT_METHOD_DEFAULTS.dds;

/** The editing loop's resolved settings, each with where it came from (see `resolveDefaults` of @ddsjs/sd). */
export interface EditSettings {
  steps: ResolvedSetting;
  lr: ResolvedSetting;
  guidanceScale: ResolvedSetting;
}

/**
 * The steps, learning rate and guidance scale the editing loop uses, each with its source: the option when given,
 * else the model's value for this method (`defaults.edit.methods[method]`, its folder's `ddsjs_defaults.json`
 * `edit.methods.<method>`), else the model's value for every method (`defaults.edit`), else the method's
 * {@link EDIT_METHOD_DEFAULTS} (`opts.method`, default 'dds'). {@link editLatent} / {@link editImage} resolve their
 * settings with it, and the CLI prints them from it. Throws for an unknown method, given or named in
 * `defaults.edit.methods`.
 */
export function resolveEditDefaults(
  model: Pick<ScoreModel, 'defaults'> | undefined,
  opts: { method?: EditMethod; steps?: number; lr?: number; guidanceScale?: number } = {},
): EditSettings {
  const method = checkMethod('resolveEditDefaults', opts?.method);
  const { steps, lr, guidanceScale } = opts ?? {};
  const edit = model?.defaults?.edit;
  const own = edit?.methods;
  const unknown = own ? Object.keys(own).find((m) => !EDIT_METHODS.includes(m as EditMethod)) : undefined;
  if (unknown !== undefined) {
    throw new Error(`resolveEditDefaults: the model's defaults (edit.methods) name an unknown method '${unknown}'; methods are ${EDIT_METHODS.join(', ')}`);
  }
  const m = own?.[method];
  const fromModel = { steps: m?.steps ?? edit?.steps, lr: m?.lr ?? edit?.lr, guidanceScale: m?.guidanceScale ?? edit?.guidanceScale };
  return resolveDefaults({ steps, lr, guidanceScale }, fromModel, EDIT_METHOD_DEFAULTS[method]);
}

function checkMethod(fn: string, method: unknown): EditMethod {
  const m = method ?? 'dds';
  if (!EDIT_METHODS.includes(m as EditMethod)) {
    throw new InvalidArgumentError(`${fn}: method must be one of ${EDIT_METHODS.map((x) => `'${x}'`).join(', ')}, got '${String(m)}'`);
  }
  return m as EditMethod;
}

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
  /**
   * The score (or editing path): `'dds'` (default) Delta Denoising Score; `'sds'` Score Distillation Sampling with
   * the target prompt only; `'nfsd'` Noise-Free Score Distillation (target prompt, a negative prompt); `'csd'`
   * Classifier Score Distillation (target prompt); `'pds'` Posterior Distillation Sampling (both prompts);
   * `'flowedit'` FlowEdit's deterministic path (no optimiser; see {@link flowEditLatent}). Each method's defaults:
   * {@link EDIT_METHOD_DEFAULTS}.
   */
  method?: EditMethod;
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
  /** Mask multiplied into the score: 1 = edit, 0 = keep; at latent or image resolution (see `ScoreOptions.mask`). */
  mask?: tf.Tensor;
  /** FlowEdit: n_max, n_avg and the source branch's guidance (see {@link FlowEditOptions}). */
  flowEdit?: { nMax?: number; nAvg?: number; sourceGuidanceScale?: number };
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
  /** NFSD's negative prompt y_neg (its δ_D term). Default {@link NFSD_NEGATIVE_PROMPT}, the reference's. */
  nfsdNegativePrompt?: string;
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
  if (!Number.isInteger(v) || v < 0) throw new InvalidArgumentError(`${fn}: ${name} must be a non-negative integer, got ${v}`);
  return v;
}

// setImmediate in Node; a browser has none (setTimeout(0) there; browsers clamp it to ≈ 4 ms only when nested deeply).
const yieldToEventLoop = (): Promise<void> =>
  new Promise((resolve) => (typeof setImmediate === 'function' ? setImmediate(resolve) : setTimeout(resolve, 0)));

/**
 * The score-distillation optimisation loop on latents, as the DDS notebook runs it: `z ← zSource` (a
 * `tf.Variable`), then for each step evaluate the method's score at z (DDS by default; SDS, NFSD, CSD, PDS), and take
 * an optimiser step on `lossScale · scoreLoss(z, grad)` — with the default SGD this is
 * `z ← z − lr·lossScale/(h·w)·grad`, which with the default loss scale is the notebook's `z ← z − lr·2000/4096·grad`
 * at any latent size (see {@link defaultLossScale}). `method: 'flowedit'` runs {@link flowEditLatent} instead (no
 * optimiser; `steps` is its T, `guidanceScale` its target guidance; `losses` stays empty).
 *
 * - `zSource`: the source latent ẑ `[B, h, w, C]` (scaled by the VAE factor), kept fixed; not disposed.
 * - `source` / `target`: the prompts' embeddings (`source` is used by DDS, PDS and FlowEdit); `negative`: the
 *   negative prompt's embeddings, needed by NFSD.
 * - Options not given take the model's own defaults (`sd.defaults.edit`, from its folder's `ddsjs_defaults.json`)
 *   when it has them, else the method's ({@link EDIT_METHOD_DEFAULTS}; DDS: 200 steps, lr 0.1, guidance 7.5).
 *
 * Asynchronous so that progress can be shown: `onStep` runs after every step, and the loop yields to the event loop.
 * Intermediate tensors are freed every step. The caller owns the returned `latent`.
 */
export async function editLatent(
  sd: ScoreModel,
  inputs: { zSource: tf.Tensor4D; source: TextEmbeddings; target: TextEmbeddings; negative?: tf.Tensor3D },
  opts: EditLatentOptions = {},
): Promise<EditLatentResult> {
  const fn = 'editLatent';
  const method = checkMethod(fn, opts.method);
  if (method === 'nfsd' && !(inputs?.negative instanceof tf.Tensor)) throw new InvalidArgumentError(`${fn}: method 'nfsd' needs inputs.negative (the negative prompt's embeddings)`);
  const settings = resolveEditDefaults(sd, { ...opts, method });
  const steps = nonNegativeInt(fn, 'steps', settings.steps.value);
  const lr = settings.lr.value;
  const guidanceScale = settings.guidanceScale.value;
  if (!Number.isFinite(lr) || lr <= 0) throw new InvalidArgumentError(`${fn}: lr must be a positive number, got ${lr}`);
  if (opts.seed !== undefined && !Number.isFinite(opts.seed)) throw new InvalidArgumentError(`${fn}: seed must be a finite number, got ${opts.seed}`);
  const zSource = inputs?.zSource;
  if (!(zSource instanceof tf.Tensor) || zSource.rank !== 4) {
    throw new InvalidArgumentError(`${fn}: zSource must be a latent tensor [B, h, w, C]`);
  }
  if (method === 'flowedit') return flowEditLoop(sd, inputs, opts, steps, guidanceScale);
  const lossScale = opts.lossScale ?? defaultLossScale(zSource.shape[1], zSource.shape[2]);
  if (!Number.isFinite(lossScale)) throw new InvalidArgumentError(`${fn}: lossScale must be a finite number, got ${lossScale}`);
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
        const pair = { zSource, zTarget: z, source: inputs.source, target: inputs.target };
        res =
          method === 'dds'
            ? ddsGrad(sd, pair, scoreOpts)
            : method === 'sds'
              ? sdsGrad(sd, { z, text: inputs.target }, scoreOpts)
              : method === 'nfsd'
                ? nfsdGrad(sd, { z, text: { ...inputs.target, negative: inputs.negative! } }, scoreOpts)
                : method === 'csd'
                  ? csdGrad(sd, { z, text: inputs.target }, scoreOpts)
                  : pdsGrad(sd, pair, scoreOpts);
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

/** editLatent's FlowEdit path: `steps` is FlowEdit's T, `guidanceScale` its target guidance; losses are not defined (empty). */
async function flowEditLoop(
  sd: ScoreModel,
  inputs: { zSource: tf.Tensor4D; source: TextEmbeddings; target: TextEmbeddings },
  opts: EditLatentOptions,
  steps: number,
  guidanceScale: number,
): Promise<EditLatentResult> {
  const started = Date.now();
  const r = await flowEditLatent(sd, inputs, {
    steps,
    targetGuidanceScale: guidanceScale,
    ...(opts.flowEdit ?? {}),
    seed: opts.seed,
    mask: opts.mask,
    unetBatch: opts.unetBatch,
    signal: opts.signal,
    onStep: opts.onStep
      ? ({ step, steps: n, timestep, latent }) => {
          const elapsedMs = Date.now() - started;
          return opts.onStep!({ step, steps: n, timestep, timesteps: [timestep], loss: NaN, elapsedMs, etaMs: (elapsedMs / (step + 1)) * (n - step - 1), latent });
        }
      : undefined,
  });
  return { latent: r.latent, steps: r.steps, losses: [] };
}

/**
 * Edits a picture with DDS (default) or another `opts.method` ({@link EditMethod}), as the DDS notebook does:
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
    throw new InvalidArgumentError(`${fn}: the model must have vae.encode, vae.decode and encodePrompt`);
  }
  if (!(image instanceof tf.Tensor) || image.rank !== 4 || image.shape[0] !== 1 || image.shape[3] !== 3) {
    throw new InvalidArgumentError(`${fn}: image must be a tensor [1, H, W, 3] in [-1, 1], got ${image instanceof tf.Tensor ? `[${image.shape}]` : typeof image}`);
  }
  const [, H, W] = image.shape;
  if (H % 8 !== 0 || W % 8 !== 0 || H === 0 || W === 0) {
    throw new InvalidArgumentError(`${fn}: the image is ${W}×${H} pixels; both sides must be multiples of 8 (the VAE downsamples by 8)`);
  }
  if (!opts || typeof opts.target !== 'string' || typeof opts.source !== 'string') {
    throw new InvalidArgumentError(`${fn}: options must give the prompts { source: string, target: string }`);
  }
  const scaling = sd.schedule?.scalingFactor;
  if (!Number.isFinite(scaling) || scaling <= 0) throw new InvalidArgumentError(`${fn}: schedule.scalingFactor must be positive, got ${scaling}`);

  const method = checkMethod(fn, opts.method);
  const text = tf.tidy(() => {
    const uncond = sd.encodePrompt(opts.negativePrompt ?? '');
    const negative = method === 'nfsd' ? sd.encodePrompt(opts.nfsdNegativePrompt ?? NFSD_NEGATIVE_PROMPT) : undefined;
    return { uncond, cond: sd.encodePrompt(opts.target), condSource: sd.encodePrompt(opts.source), ...(negative ? { negative } : {}) };
  });
  const zSource = imageToLatents(sd, image);
  try {
    const res = await editLatent(
      sd,
      {
        zSource,
        source: { cond: text.condSource, uncond: text.uncond },
        target: { cond: text.cond, uncond: text.uncond },
        negative: text.negative,
      },
      opts,
    );
    let decoded: tf.Tensor4D;
    try {
      decoded = latentsToImage(sd, res.latent);
    } catch (e) {
      res.latent.dispose();
      throw e;
    }
    return { image: decoded, latent: res.latent, steps: res.steps, losses: res.losses };
  } finally {
    zSource.dispose();
    tf.dispose([text.uncond, text.cond, text.condSource, ...(text.negative ? [text.negative] : [])]);
  }
}
