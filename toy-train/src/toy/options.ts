// The options of the toy trainer: their types, defaults and checks, the saved state, and the options that shape
// each phase's trajectory (compared when a run resumes).
import { BACKGROUND_NAMES, type BackgroundName } from '@ddsjs/toy-shapes';
import { configDiff, configHash, finiteNumber, nonNegativeInt, nonNegativeNumber, numberInRange, positiveInt, positiveNumber } from '@ddsjs/train';
import type { RawComponentConfigs } from '@ddsjs/weights-tools';
import type { ToyPreset } from './presets';

/** Progress of {@link trainToy}, reported after every step. */
export interface TrainToyProgress {
  /** The phase running. */
  phase: 'vae' | 'unet';
  /** Steps done in this phase (1-based after the first step). */
  step: number;
  /** Steps this phase runs to. */
  total: number;
  /** This step's loss. */
  loss: number;
  /** Mean seconds per step of this phase in this process (excluding the first, warm-up step when possible). */
  secondsPerStep: number;
  /** Estimated seconds left for this phase. */
  etaSeconds: number;
}

/** Options of {@link trainToy}. */
export interface TrainToyOptions {
  /** Output diffusers folder (created; training state goes to `<outdir>/train/`). */
  outdir: string;
  /** Architecture preset (default `'toy'`); ignored when resuming (the saved configs and preset win). */
  preset?: ToyPreset;
  /** Master seed: initialisation, data and noise (default 0). */
  seed?: number;
  /** VAE steps (default 1200; 20 for 'micro'). */
  vaeSteps?: number;
  /** UNet steps (default 2000; 20 for 'micro'). */
  unetSteps?: number;
  /** VAE batch size (default 4). */
  vaeBatch?: number;
  /** UNet batch size (default 16). */
  unetBatch?: number;
  /** VAE learning rate (Adam, default 1e-3). */
  vaeLr?: number;
  /** UNet learning rate (Adam, default 5e-4, linear warm-up over the first 100 steps). */
  unetLr?: number;
  /** Weight of the mean per-element KL term of the VAE loss (default 1e-4). */
  klWeight?: number;
  /**
   * Weight of shape pixels relative to background pixels in the VAE's reconstruction loss (default 5; 1 = plain
   * MSE). Without it a VAE run reproduced positions and backgrounds but turned every shape brown.
   */
  shapeWeight?: number;
  /**
   * Initial bias of the VAE encoder's log-variance channels (default −6, i.e. posterior std ≈ 0.05 at the start).
   * With the default initialisation (logvar ≈ 0, std ≈ 1) the decoder first sees latents drowned in unit noise and
   * learns to ignore them: a run reproduced backgrounds but turned every shape brown (the mean colour).
   */
  vaeLogvarInit?: number;
  /** Weight of the VAE's colour term: MSE of 4×4-pixel block means of reconstruction and picture (default 4; 0 = off). */
  vaeLowFreqWeight?: number;
  /**
   * Weight of the latent colour term: MSE between the first three channels of the posterior mean and 2 × each latent
   * cell's mean RGB (default 0 = off). Makes the encoder carry colour explicitly.
   */
  vaeLatentColourWeight?: number;
  /**
   * Weight of the latent foreground term (default 0 = off): MSE between latent channel 3 of the posterior mean and
   * `vaeLatentMaskLevel · (2·coverage − 1)`, coverage = the fraction of each latent cell the shape covers. It gives the
   * latent a foreground channel, so that every shape colour lies on the same side of every background there: without
   * it, colours on opposite sides of a background in the colour channels (green and red around gray) make "the shape
   * is elsewhere" a likelier reading of a recoloured latent than "the shape changed colour" (see the package README).
   */
  vaeLatentMaskWeight?: number;
  /** The latent foreground term's level: channel 3 → +level on the shape, −level on the background (default 2). */
  vaeLatentMaskLevel?: number;
  /** Train only the VAE decoder (and post_quant_conv): the latents stay as they are (default false). */
  vaeFreezeEncoder?: boolean;
  /**
   * Start from this diffusers folder's weights and configs instead of a seeded initialisation (fine-tuning; ignored
   * when resuming). Each component's float32 `*.safetensors` is read, or its `*.fp16.safetensors` where only that
   * exists. Its VAE `scaling_factor` is kept as long as the encoder stays frozen (`vaeFreezeEncoder`), so a UNet
   * trained on its latents stays valid; the step counters start at 0.
   */
  initFrom?: string;
  /** Probability of replacing a caption with `""` in UNet training (default 0.1). */
  captionDropout?: number;
  /**
   * Offset noise for the UNet phase (default 0 = off), as diffusers' `--noise_offset`: the diffusion noise gets
   * `noiseOffset · n` added, n ~ N(0, 1) drawn once per sample and channel (constant over the picture). Without it a
   * model trained at 16×16 latents never learnt to choose the background's overall colour when sampling from pure
   * noise: the residual signal at t = 999 of the training schedule (√ᾱ = 0.068 on the latent's mean, averaged over
   * 256 cells) is a cue that pure noise lacks, and generation fell back to the mean colour (grey).
   */
  noiseOffset?: number;
  /** Global gradient-norm clip (default 1). */
  gradClip?: number;
  /** Write a checkpoint every this many steps of each phase (default 250) and at each phase's end. */
  checkpointEvery?: number;
  /**
   * Number of distinct training pictures the UNet phase draws from (default 8192; 64 for 'micro'): they are
   * rendered and encoded once by the frozen VAE (≈ 2 KB of latent mean/std each); every draw samples fresh latent
   * noise, diffusion noise and timestep.
   */
  poolSize?: number;
  /**
   * Relative frequency of each background in the UNet's picture pool (default: every background 1, i.e. uniform
   * captions). A picture whose background has weight w is kept with probability w / max(weights), otherwise redrawn
   * (from the same per-picture generator, so the pool stays a function of the seed); e.g. `{ gray: 3 }` makes gray
   * backgrounds 3× as frequent as each other one. Backgrounds not named weigh 1.
   */
  poolBackgroundWeights?: Partial<Record<BackgroundName, number>>;
  /** Train on the same batch every step (overfitting check for tests; default false). */
  fixedBatch?: boolean;
  /** Stop (after writing a checkpoint) once this many seconds have passed in this call; resume later. */
  timeBudgetSeconds?: number;
  /**
   * Stop (after writing a checkpoint) at the end of the current step once this signal is aborted (the command aborts it
   * on Ctrl-C); the result has `done: false` and rerunning resumes exactly.
   */
  signal?: AbortSignal;
  /**
   * Also keep a copy of the trained component's float32 weights at every checkpoint, as
   * `<outdir>/train/checkpoints/<vae|unet>-<step>.safetensors` (≈ 8 MB per UNet checkpoint of the toy preset), for
   * checkpoint averaging (`dds-weights average`). Default false.
   */
  keepCheckpoints?: boolean;
  /** Start afresh in an existing non-empty `outdir` (overwriting its files) instead of refusing or resuming. */
  force?: boolean;
  /** Resume from `<outdir>/train/state.json` when present (default true). */
  resume?: boolean;
  /** Also write the `*.fp16.safetensors` variant at the end (default true). */
  fp16?: boolean;
  /** Called after every step. */
  onProgress?: (p: TrainToyProgress) => void;
  /** Called with informational lines (checkpoints, phase changes). */
  log?: (line: string) => void;
}

/** What {@link trainToy} did. */
export interface TrainToyResult {
  /** The (absolute) output folder. */
  outdir: string;
  /** VAE steps completed in total (including earlier runs this one resumed). */
  vaeSteps: number;
  /** UNet steps completed in total. */
  unetSteps: number;
  /** Whether both phases are complete. */
  done: boolean;
  /** Wall seconds of this call. */
  seconds: number;
  /** Mean seconds per VAE step measured in this call (NaN when no VAE step ran). */
  vaeSecondsPerStep: number;
  /** Mean seconds per UNet step measured in this call (NaN when no UNet step ran). */
  unetSecondsPerStep: number;
  /** Losses of this call's VAE steps, in order. */
  vaeLosses: number[];
  /** Losses of this call's UNet steps, in order. */
  unetLosses: number[];
  /** The latent scaling factor written to `vae/config.json` (after the VAE phase). */
  scalingFactor: number;
}

/** The saved training state (`<outdir>/train/state.json`). */
export interface TrainState {
  version: 1;
  seed: number;
  /** Preset the configs came from (defaults of steps and pool size follow it on resume). */
  preset?: ToyPreset;
  configs: RawComponentConfigs;
  vaeStep: number;
  unetStep: number;
  scalingFactor: number | null;
  /** The VAE step the scaling factor was measured at (it is re-measured when the VAE trains further). */
  scalingFactorStep?: number;
  /** The folder the weights were initialised from (`initFrom`), when they were. */
  initFrom?: string;
  seconds: number;
  /**
   * Per phase, the options that shape its trajectory and their {@link configHash}, recorded when the phase starts: a
   * resume that would continue a phase with other options is refused (absent in states of older versions).
   */
  trajectory?: Partial<Record<'vae' | 'unet', { hash: string; config: Record<string, unknown> }>>;
}

/**
 * The options of {@link trainToy} with their defaults filled in (some follow the preset) and checked: throws a
 * one-line error `train-toy: <option> must be …` on the first bad one.
 */
export function resolveToyOptions(options: TrainToyOptions, preset: ToyPreset) {
  const micro = preset === 'micro';
  const o = {
    vaeSteps: options.vaeSteps ?? (micro ? 20 : 1200),
    unetSteps: options.unetSteps ?? (micro ? 20 : 2000),
    vaeBatch: options.vaeBatch ?? 4,
    unetBatch: options.unetBatch ?? 16,
    vaeLr: options.vaeLr ?? 1e-3,
    unetLr: options.unetLr ?? 5e-4,
    klWeight: options.klWeight ?? 1e-4,
    shapeWeight: options.shapeWeight ?? 5,
    vaeLogvarInit: options.vaeLogvarInit ?? -6,
    vaeLowFreqWeight: options.vaeLowFreqWeight ?? 4,
    vaeFreezeEncoder: options.vaeFreezeEncoder ?? false,
    vaeLatentColourWeight: options.vaeLatentColourWeight ?? 0,
    vaeLatentMaskWeight: options.vaeLatentMaskWeight ?? 0,
    vaeLatentMaskLevel: options.vaeLatentMaskLevel ?? 2,
    captionDropout: options.captionDropout ?? 0.1,
    noiseOffset: options.noiseOffset ?? 0,
    gradClip: options.gradClip ?? 1,
    checkpointEvery: options.checkpointEvery ?? 250,
    poolSize: options.poolSize ?? (micro ? 64 : 8192),
    poolBackgroundWeights: options.poolBackgroundWeights,
    fixedBatch: options.fixedBatch ?? false,
    timeBudgetSeconds: options.timeBudgetSeconds,
  };
  const T = 'train-toy';
  nonNegativeInt(T, 'vaeSteps', o.vaeSteps);
  nonNegativeInt(T, 'unetSteps', o.unetSteps);
  positiveInt(T, 'vaeBatch', o.vaeBatch);
  positiveInt(T, 'unetBatch', o.unetBatch);
  positiveInt(T, 'checkpointEvery', o.checkpointEvery);
  positiveInt(T, 'poolSize', o.poolSize);
  const bgWeights = o.poolBackgroundWeights;
  if (bgWeights !== undefined) {
    for (const [k, w] of Object.entries(bgWeights)) {
      if (!(BACKGROUND_NAMES as readonly string[]).includes(k)) throw new Error(`train-toy: poolBackgroundWeights: unknown background '${k}' (one of ${BACKGROUND_NAMES.join(', ')})`);
      nonNegativeNumber(T, `poolBackgroundWeights.${k}`, w);
    }
    if (BACKGROUND_NAMES.every((b) => (bgWeights[b] ?? 1) === 0)) throw new Error('train-toy: poolBackgroundWeights: every background has weight 0');
  }
  positiveNumber(T, 'vaeLr', o.vaeLr);
  positiveNumber(T, 'unetLr', o.unetLr);
  positiveNumber(T, 'gradClip', o.gradClip);
  positiveNumber(T, 'shapeWeight', o.shapeWeight);
  nonNegativeNumber(T, 'klWeight', o.klWeight);
  finiteNumber(T, 'vaeLogvarInit', o.vaeLogvarInit);
  nonNegativeNumber(T, 'vaeLowFreqWeight', o.vaeLowFreqWeight);
  nonNegativeNumber(T, 'vaeLatentColourWeight', o.vaeLatentColourWeight);
  nonNegativeNumber(T, 'vaeLatentMaskWeight', o.vaeLatentMaskWeight);
  finiteNumber(T, 'vaeLatentMaskLevel', o.vaeLatentMaskLevel);
  nonNegativeNumber(T, 'noiseOffset', o.noiseOffset);
  numberInRange(T, 'captionDropout', o.captionDropout, 0, 1, { hi: true });
  if (o.timeBudgetSeconds !== undefined) positiveNumber(T, 'timeBudgetSeconds', o.timeBudgetSeconds);
  return o;
}

/** {@link TrainToyOptions} resolved by {@link resolveToyOptions}. */
export type ResolvedToyOptions = ReturnType<typeof resolveToyOptions>;

/** Per phase, the options that shape its trajectory (what a resume of that phase must keep). */
export function phaseTrajectories(o: ResolvedToyOptions, seed: number): Record<'vae' | 'unet', Record<string, unknown>> {
  return {
    vae: {
      seed, vaeBatch: o.vaeBatch, vaeLr: o.vaeLr, klWeight: o.klWeight, shapeWeight: o.shapeWeight, vaeLowFreqWeight: o.vaeLowFreqWeight,
      vaeLatentColourWeight: o.vaeLatentColourWeight, vaeLatentMaskWeight: o.vaeLatentMaskWeight, vaeLatentMaskLevel: o.vaeLatentMaskLevel,
      vaeFreezeEncoder: o.vaeFreezeEncoder, gradClip: o.gradClip, fixedBatch: o.fixedBatch,
    },
    unet: {
      seed, unetBatch: o.unetBatch, unetLr: o.unetLr, captionDropout: o.captionDropout, noiseOffset: o.noiseOffset, gradClip: o.gradClip,
      poolSize: o.poolSize, poolBackgroundWeights: o.poolBackgroundWeights ?? null, fixedBatch: o.fixedBatch,
    },
  };
}

/**
 * Throws `train-toy: the <phase> phase of <outdir> was trained with other options (…)` when the run would continue a
 * phase it has started (0 < steps done < steps asked) with options whose {@link configHash} differs from the one
 * recorded in `state` (states without a record, from older versions, are not checked).
 */
export function checkResumeTrajectory(state: TrainState, o: ResolvedToyOptions, trajectories: Record<'vae' | 'unet', Record<string, unknown>>, outdir: string): void {
  for (const [phase, done, total] of [['vae', state.vaeStep, o.vaeSteps], ['unet', state.unetStep, o.unetSteps]] as const) {
    const rec = state.trajectory?.[phase];
    if (rec && done > 0 && done < total && rec.hash !== configHash(trajectories[phase])) {
      const diffs = configDiff(rec.config, trajectories[phase]);
      throw new Error(`train-toy: the ${phase} phase of ${outdir} was trained with other options (${diffs.join('; ')}); resume with the same options or pass --force to start afresh`);
    }
  }
}
