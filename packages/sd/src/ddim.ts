// The DDIM sampler, matching diffusers' `DDIMScheduler` (0.35) number for number: its timesteps and its step.
// The tables it uses and their float32 emulation: schedule.ts. Returned tensors are the caller's.
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '@ddsjs/safetensors';
import { loadSchedulerConfig, type SchedulerConfig } from './scheduler-config';
import { addNoise, alphaSigma, checkTimestep, computeAlphasCumprod, computeBetas, modelOutputToEps, modelOutputToX0, sameShape } from './schedule';

const f32 = Math.fround;

/** numpy's `round` (half to even). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The inference timesteps diffusers' `DDIMScheduler.set_timesteps(numInferenceSteps)` produces (descending ints),
 * for the config's `timestep_spacing` ('leading' adds `steps_offset`).
 */
export function ddimTimesteps(cfg: Pick<SchedulerConfig, 'numTrainTimesteps' | 'timestepSpacing' | 'stepsOffset'>, numInferenceSteps: number): number[] {
  const n = cfg.numTrainTimesteps;
  if (!Number.isInteger(numInferenceSteps) || numInferenceSteps < 1 || numInferenceSteps > n) {
    throw new InvalidArgumentError(`setTimesteps: numInferenceSteps must be an integer in [1, ${n}] (num_train_timesteps), got ${numInferenceSteps}`);
  }
  const out: number[] = [];
  if (cfg.timestepSpacing === 'linspace') {
    // np.linspace(0, n-1, steps).round()[::-1]
    const stop = n - 1;
    const step = numInferenceSteps > 1 ? stop / (numInferenceSteps - 1) : 0;
    for (let i = 0; i < numInferenceSteps; i++) {
      const v = i === numInferenceSteps - 1 && numInferenceSteps > 1 ? stop : i * step;
      out.push(roundHalfEven(v));
    }
    out.reverse();
  } else if (cfg.timestepSpacing === 'leading') {
    const ratio = Math.floor(n / numInferenceSteps);
    for (let i = 0; i < numInferenceSteps; i++) out.push(i * ratio + cfg.stepsOffset);
    out.reverse();
  } else if (cfg.timestepSpacing === 'trailing') {
    // np.round(np.arange(n, 0, -n/steps)) - 1; numpy fills arange as first + i·(second − first)
    const ratio = n / numInferenceSteps;
    const len = Math.ceil((0 - n) / -ratio);
    const delta = n - ratio - n;
    for (let i = 0; i < len; i++) out.push(roundHalfEven(n + i * delta) - 1);
  } else {
    throw new InvalidArgumentError(`setTimesteps: unsupported timestep_spacing ${JSON.stringify(cfg.timestepSpacing)}`);
  }
  return out;
}

/** Options of {@link DDIMScheduler.step}. */
export interface DDIMStepOptions {
  /** DDIM η (default 0: deterministic). With η > 0 pass `varianceNoise` (ddsjs draws no random numbers here). */
  eta?: number;
  /** Standard normal noise of the sample's shape, used when η > 0. */
  varianceNoise?: tf.Tensor;
}

/** Result of {@link DDIMScheduler.stepWithPrediction}. The caller owns both tensors. */
export interface DDIMStepOutput<T extends tf.Tensor> {
  /** x_{t−1}. */
  prevSample: T;
  /** The predicted x₀ (after clip_sample when enabled). */
  predOriginalSample: T;
}

/**
 * diffusers' `DDIMScheduler`: `setTimesteps(n)` then `step(modelOutput, t, sample)` for each `t` of `timesteps`.
 *
 * @example
 * const ddim = new DDIMScheduler(await loadSchedulerConfig(modelDir));
 * for (const t of ddim.setTimesteps(50)) { const eps = guidedUnet(latents, t); latents = ddim.step(eps, t, latents); }
 */
export class DDIMScheduler {
  /** The validated config. */
  readonly config: SchedulerConfig;
  /** β_t (float32 values). */
  readonly betas: Float32Array;
  /** ᾱ_t (float32 values). */
  readonly alphasCumprod: Float32Array;
  /** ᾱ used after the last step: 1 when `set_alpha_to_one`, else ᾱ_0. */
  readonly finalAlphaCumprod: number;
  /** DDIM's initial noise standard deviation (always 1). */
  readonly initNoiseSigma = 1;
  /** Number of inference steps of the last {@link setTimesteps} call, or null before it. */
  numInferenceSteps: number | null = null;
  /** The descending timesteps of the last {@link setTimesteps} call. */
  timesteps: number[] = [];

  /** Builds the scheduler's tables from a config (see {@link parseSchedulerConfig} / {@link loadSchedulerConfig}). */
  constructor(config: SchedulerConfig) {
    this.config = config;
    this.betas = computeBetas(config);
    this.alphasCumprod = computeAlphasCumprod(this.betas);
    this.finalAlphaCumprod = config.setAlphaToOne ? 1 : this.alphasCumprod[0];
  }

  /** Loads `scheduler_config.json` (file, scheduler folder or model folder) and builds the scheduler. */
  static async fromPretrained(file: string): Promise<DDIMScheduler> {
    return new DDIMScheduler(await loadSchedulerConfig(file));
  }

  /** Sets (and returns) the descending inference timesteps, exactly as diffusers' `set_timesteps`. */
  setTimesteps(numInferenceSteps: number): number[] {
    this.timesteps = ddimTimesteps(this.config, numInferenceSteps);
    this.numInferenceSteps = numInferenceSteps;
    return [...this.timesteps];
  }

  /** The timestep DDIM steps to from `t`: `t − num_train_timesteps // num_inference_steps` (negative after the last). */
  prevTimestep(t: number): number {
    if (this.numInferenceSteps === null) throw new InvalidArgumentError('DDIMScheduler: call setTimesteps(numInferenceSteps) before step()');
    return t - Math.floor(this.config.numTrainTimesteps / this.numInferenceSteps);
  }

  /** One DDIM update x_t → x_{t−1} (see {@link stepWithPrediction}). The caller owns the returned tensor. */
  step<T extends tf.Tensor>(modelOutput: T, t: number, sample: T, opts: DDIMStepOptions = {}): T {
    const { prevSample, predOriginalSample } = this.stepWithPrediction(modelOutput, t, sample, opts);
    predOriginalSample.dispose();
    return prevSample;
  }

  /**
   * One DDIM update, as diffusers' `DDIMScheduler.step` (float32): x̂₀ from the model output (ε, v or x₀),
   * optional clip to ±clip_sample_range, then `x_{t−1} = √ᾱ_prev·x̂₀ + √(1 − ᾱ_prev − σ²)·ε̂ (+ σ·noise)` with
   * σ = η·√((1−ᾱ_prev)/(1−ᾱ_t)·(1 − ᾱ_t/ᾱ_prev)). The caller owns both returned tensors.
   */
  stepWithPrediction<T extends tf.Tensor>(modelOutput: T, t: number, sample: T, opts: DDIMStepOptions = {}): DDIMStepOutput<T> {
    const prevT = this.prevTimestep(t);
    checkTimestep(t, this.config.numTrainTimesteps, 'DDIMScheduler.step');
    sameShape(modelOutput, sample, 'DDIMScheduler.step', 'modelOutput', 'sample');
    const eta = opts.eta ?? 0;
    if (!(eta >= 0) || !Number.isFinite(eta)) throw new InvalidArgumentError(`DDIMScheduler.step: eta must be a finite number ≥ 0, got ${eta}`);
    if (eta > 0) {
      if (!opts.varianceNoise) throw new InvalidArgumentError('DDIMScheduler.step: eta > 0 needs opts.varianceNoise (standard normal noise of the sample shape)');
      sameShape(opts.varianceNoise, sample, 'DDIMScheduler.step', 'varianceNoise', 'sample');
    }

    const aT = this.alphasCumprod[t];
    const aPrev = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const bT = f32(1 - aT);
    const { alpha: sqrtA, sigma: sqrtB } = alphaSigma(this, t);
    const sqrtAPrev = f32(Math.sqrt(aPrev));
    const bPrev = f32(1 - aPrev);
    const variance = f32(f32(bPrev / bT) * f32(1 - f32(aT / aPrev)));
    const sqrtVar = f32(Math.sqrt(variance));
    const std = f32(eta * sqrtVar);
    const dirCoef = f32(Math.sqrt(f32(f32(1 - aPrev) - f32(std * std))));
    const pt = this.config.predictionType;
    const cfg = this.config;

    return tf.tidy(() => {
      const s = (x: number) => tf.scalar(x, 'float32');
      let x0: tf.Tensor;
      let eps: tf.Tensor;
      if (pt === 'epsilon' || pt === 'v_prediction') {
        const sched = { alphasCumprod: this.alphasCumprod, predictionType: pt };
        x0 = modelOutputToX0(sched, modelOutput, sample, t);
        eps = pt === 'epsilon' ? modelOutput : modelOutputToEps(sched, modelOutput, sample, t);
      } else {
        x0 = modelOutput;
        eps = tf.div(tf.sub(sample, tf.mul(s(sqrtA), x0)), s(sqrtB));
      }
      if (cfg.clipSample) x0 = tf.clipByValue(x0, -cfg.clipSampleRange, cfg.clipSampleRange);
      const direction = tf.mul(s(dirCoef), eps);
      let prev = tf.add(tf.mul(s(sqrtAPrev), x0), direction);
      if (eta > 0) prev = tf.add(prev, tf.mul(s(f32(sqrtVar * eta)), opts.varianceNoise!));
      // tf.clone so that the x̂₀ we return is never the caller's own modelOutput tensor
      return { prevSample: prev as T, predOriginalSample: (x0 === modelOutput ? tf.clone(x0) : x0) as T };
    });
  }

  /** diffusers' `add_noise`: `√ᾱ_t·original + √(1−ᾱ_t)·noise`. The caller owns the returned tensor. */
  addNoise<T extends tf.Tensor>(original: T, noise: T, t: number): T {
    return addNoise(this, original, noise, t);
  }
}
