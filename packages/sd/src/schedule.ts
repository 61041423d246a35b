/**
 * Noise schedules matching diffusers' `DDIMScheduler` (0.35) number for number, and the diffusion math on them
 * (α/σ, noising, model output → ε / x̂₀, guidance). The config: scheduler-config.ts; the DDIM sampler: ddim.ts.
 *
 * Float32 emulation: diffusers builds the tables with torch in float32. This module reproduces that exactly:
 * - `torch.linspace(start, end, n, dtype=float32)`: `start + step·i` for the first half and `end − step·(n−1−i)`
 *   for the second, each with a single rounding (a fused multiply-add, as PyTorch's compiled CPU kernel does), with
 *   `step = (end − start)/(n − 1)` rounded to float32;
 * - `** 2`, `1 − β`, `sqrt` rounded to float32 after each operation;
 * - `torch.cumprod` on CPU accumulates in double and rounds each partial product to float32.
 * Against the fixture goldens (scaled_linear 0.00085 → 0.012): betas and alphas_cumprod are bit-identical.
 *
 * Tensors are NHWC float32 (any shape works: the scheduler is elementwise). Functions returning tensors say so;
 * the caller owns (disposes) them.
 *
 * @module
 */
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '@ddsjs/safetensors';
import type { SchedulerConfig } from './scheduler-config';

const f32 = Math.fround;

/** The noise schedule that score-distillation code needs (DESIGN.md's `sd.schedule`), plus the tables behind it. */
export interface NoiseSchedule {
  /** ᾱ_t for t = 0 … numTrainTimesteps−1 (float32 values, as diffusers computes them). */
  alphasCumprod: Float32Array;
  /** What the UNet predicts; `'sample'` models are rejected by {@link makeNoiseSchedule}. */
  predictionType: 'epsilon' | 'v_prediction';
  /** VAE latent scaling factor (`scaling_factor` of vae/config.json; 0.18215 for SD 1.x/2.x). */
  scalingFactor: number;
  /** β_t (float32 values). */
  betas: Float32Array;
  /** Number of training timesteps (1000). */
  numTrainTimesteps: number;
  /** The scheduler config the tables were built from. */
  config: SchedulerConfig;
}

// ---------------------------------------------------------------------------------------------------------------
// Float32 tables

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
/** The float32 neighbour of float32 `x`: the next one up (`up`) or down. */
function nextFloat32(x: number, up: boolean): number {
  if (x === 0) return up ? 1.401298464324817e-45 : -1.401298464324817e-45;
  f32buf[0] = x;
  u32buf[0] += x > 0 === up ? 1 : -1;
  return f32buf[0];
}

/**
 * `fmaf(a, b, c)`: a·b + c with one rounding to float32, for float32 a, b, c where a·b is exact in double
 * (true here: b is an integer below 2²⁰). Handles the double-rounding midpoint case.
 */
function fmaf(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // exact: p + c = s + err
  const r = f32(s);
  if (err === 0 || r === s) return r;
  const other = nextFloat32(r, s > r);
  if (Math.abs(s - r) !== Math.abs(other - s)) return r;
  // s is exactly halfway between two floats: the true value lies on err's side of it
  return err > 0 === other > r ? other : r;
}

/** `torch.linspace(start, end, n, dtype=torch.float32)` on CPU, bit for bit. */
export function linspaceFloat32(start: number, end: number, n: number): Float32Array {
  const out = new Float32Array(n);
  if (n === 1) {
    out[0] = start;
    return out;
  }
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (n - 1));
  const half = Math.floor(n / 2);
  for (let i = 0; i < n; i++) out[i] = i < half ? fmaf(step, i, s) : fmaf(-step, n - 1 - i, e);
  return out;
}

/** `torch.cumprod` of a float32 vector on CPU: double accumulator, each partial product rounded to float32. */
export function cumprodFloat32(x: ArrayLike<number>): Float32Array {
  const out = new Float32Array(x.length);
  let acc = 1;
  for (let i = 0; i < x.length; i++) {
    acc *= x[i];
    out[i] = acc;
  }
  return out;
}

/** diffusers' `betas_for_alpha_bar` (cosine, max_beta 0.999): computed in double, stored as float32. */
export function betasForAlphaBar(numTimesteps: number, maxBeta = 0.999): Float32Array {
  const alphaBar = (t: number) => Math.cos(((t + 0.008) / 1.008) * Math.PI * 0.5) ** 2;
  const out = new Float32Array(numTimesteps);
  for (let i = 0; i < numTimesteps; i++) {
    out[i] = Math.min(1 - alphaBar((i + 1) / numTimesteps) / alphaBar(i / numTimesteps), maxBeta);
  }
  return out;
}

/** diffusers' `rescale_zero_terminal_snr` (float32 arithmetic): betas whose last ᾱ is exactly 0. */
export function rescaleZeroTerminalSnr(betas: Float32Array): Float32Array {
  const n = betas.length;
  const ac = cumprodFloat32(betas.map((b) => f32(1 - b)));
  const sq = ac.map((a) => f32(Math.sqrt(a)));
  const s0 = sq[0];
  const sT = sq[n - 1];
  const scale = f32(s0 / f32(s0 - sT));
  const abar = sq.map((v) => {
    const r = f32(f32(v - sT) * scale);
    return f32(r * r);
  });
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const alpha = i === 0 ? abar[0] : f32(abar[i] / abar[i - 1]);
    out[i] = f32(1 - alpha);
  }
  return out;
}

/** β_t of a scheduler config, as diffusers' DDIMScheduler computes them (float32). */
export function computeBetas(cfg: SchedulerConfig): Float32Array {
  const n = cfg.numTrainTimesteps;
  let betas: Float32Array;
  if (cfg.trainedBetas) betas = Float32Array.from(cfg.trainedBetas);
  else if (cfg.betaSchedule === 'linear') betas = linspaceFloat32(cfg.betaStart, cfg.betaEnd, n);
  else if (cfg.betaSchedule === 'scaled_linear') {
    betas = linspaceFloat32(Math.sqrt(cfg.betaStart), Math.sqrt(cfg.betaEnd), n).map((x) => f32(x * x));
  } else if (cfg.betaSchedule === 'squaredcos_cap_v2') betas = betasForAlphaBar(n);
  else throw new InvalidArgumentError(`${cfg.source}: "beta_schedule" ${JSON.stringify(cfg.betaSchedule)} is not supported`);
  if (cfg.rescaleBetasZeroSnr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/** ᾱ_t = ∏_{s≤t}(1 − β_s) in float32, as `torch.cumprod(1.0 - betas)` on CPU. */
export function computeAlphasCumprod(betas: ArrayLike<number>): Float32Array {
  return cumprodFloat32(Array.from(betas, (b) => f32(1 - b)));
}

/**
 * Builds the noise schedule used by SDS/DDS from a scheduler config and the VAE's `scaling_factor`.
 * Throws for `prediction_type: 'sample'` (score distillation needs ε or v).
 */
export function makeNoiseSchedule(cfg: SchedulerConfig, scalingFactor: number): NoiseSchedule {
  if (typeof scalingFactor !== 'number' || !Number.isFinite(scalingFactor) || scalingFactor <= 0) {
    throw new InvalidArgumentError(`makeNoiseSchedule: scalingFactor must be a positive number (vae/config.json "scaling_factor"), got ${scalingFactor}`);
  }
  if (cfg.predictionType === 'sample') {
    throw new InvalidArgumentError(`${cfg.source}: "prediction_type" 'sample' is not supported for score distillation; ddsjs needs 'epsilon' or 'v_prediction'`);
  }
  const betas = computeBetas(cfg);
  return {
    alphasCumprod: computeAlphasCumprod(betas),
    predictionType: cfg.predictionType,
    scalingFactor,
    betas,
    numTrainTimesteps: cfg.numTrainTimesteps,
    config: cfg,
  };
}

/** Throws an InvalidArgumentError naming `who` unless `t` is an integer timestep in [0, n). Internal (ddim.ts). */
export function checkTimestep(t: number, n: number, who: string): void {
  if (!Number.isInteger(t) || t < 0 || t >= n) {
    throw new InvalidArgumentError(`${who}: timestep must be an integer in [0, ${n - 1}], got ${t}`);
  }
}

/** One integer timestep for a whole batch, or one per row of the batch (the leading axis). */
export type Timesteps = number | readonly number[];

/**
 * α_t = √ᾱ_t and σ_t = √(1 − ᾱ_t), rounded to float32 as torch computes them — THE implementation of the noise
 * schedule's coefficients (noising, v→ε, x̂₀ and every score use it). For one timestep it returns two numbers; for
 * a list, two Float32Arrays of the list's length. `schedule` is a {@link NoiseSchedule} (or anything with
 * `alphasCumprod`). Throws a RangeError when a timestep is not an integer in [0, T−1].
 */
export function alphaSigma(schedule: { alphasCumprod: ArrayLike<number> }, t: number): { alpha: number; sigma: number };
export function alphaSigma(schedule: { alphasCumprod: ArrayLike<number> }, t: readonly number[]): { alpha: Float32Array; sigma: Float32Array };
export function alphaSigma(
  schedule: { alphasCumprod: ArrayLike<number> },
  t: Timesteps,
): { alpha: number; sigma: number } | { alpha: Float32Array; sigma: Float32Array } {
  const ac = schedule.alphasCumprod;
  const one = (v: number): [number, number] => {
    checkTimestep(v, ac.length, 'alphaSigma');
    const a = f32(ac[v]);
    return [f32(Math.sqrt(a)), f32(Math.sqrt(f32(1 - a)))];
  };
  if (typeof t === 'number') {
    const [alpha, sigma] = one(t);
    return { alpha, sigma };
  }
  if (!Array.isArray(t)) throw new InvalidArgumentError(`alphaSigma: timesteps must be a number or an array of numbers, got ${typeof t}`);
  const alpha = new Float32Array(t.length);
  const sigma = new Float32Array(t.length);
  t.forEach((v, i) => ([alpha[i], sigma[i]] = one(v)));
  return { alpha, sigma };
}

/** Throws an InvalidArgumentError naming `who`, `na` and `nb` unless `a` and `b` have one shape. Internal (ddim.ts). */
export function sameShape(a: tf.Tensor, b: tf.Tensor, who: string, na: string, nb: string): void {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i])) {
    throw new InvalidArgumentError(`${who}: ${na} shape [${a.shape}] differs from ${nb} shape [${b.shape}]`);
  }
}

/**
 * The per-row coefficients α_t, σ_t of `t` for a batch shaped `shape`: scalars for one timestep, `[B, 1, …, 1]`
 * tensors for one per row (checked against the batch size). Used inside the callers' `tf.tidy`.
 */
function coefficients(schedule: { alphasCumprod: ArrayLike<number> }, t: Timesteps, shape: readonly number[], who: string): { a: tf.Tensor; s: tf.Tensor } {
  if (typeof t === 'number') {
    const { alpha, sigma } = alphaSigma(schedule, t);
    return { a: tf.scalar(alpha), s: tf.scalar(sigma) };
  }
  if (shape.length === 0 || t.length !== shape[0]) {
    throw new InvalidArgumentError(`${who}: ${Array.isArray(t) ? t.length : typeof t} timesteps for a batch of ${shape.length ? shape[0] : 'a scalar'}`);
  }
  const { alpha, sigma } = alphaSigma(schedule, t);
  const rowShape = [t.length, ...shape.slice(1).map(() => 1)];
  return { a: tf.tensor(alpha, rowShape), s: tf.tensor(sigma, rowShape) };
}

/**
 * Converts a v-prediction to ε: `ε = α_t·v + σ_t·z_t` (DDS.md; diffusers' `pred_epsilon`), with
 * α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t). `alphaCumprodT` is ᾱ_t. The caller owns the returned tensor.
 */
export function vToEps<T extends tf.Tensor>(v: T, zt: T, alphaCumprodT: number): T {
  if (!(alphaCumprodT >= 0 && alphaCumprodT <= 1)) throw new InvalidArgumentError(`vToEps: alphaCumprodT must be in [0, 1], got ${alphaCumprodT}`);
  return vToEpsAt({ alphasCumprod: [alphaCumprodT] }, v, zt, 0);
}

function vToEpsAt<T extends tf.Tensor>(schedule: { alphasCumprod: ArrayLike<number> }, v: T, zt: T, t: Timesteps): T {
  sameShape(v, zt, 'vToEps', 'v', 'zt');
  return tf.tidy(() => {
    const { a, s } = coefficients(schedule, t, v.shape, 'vToEps');
    return tf.add(tf.mul(a, v), tf.mul(s, zt));
  }) as T;
}

function checkPrediction(schedule: { predictionType: string }, who: string): void {
  if (schedule.predictionType !== 'epsilon' && schedule.predictionType !== 'v_prediction') {
    throw new InvalidArgumentError(`${who}: unsupported predictionType ${JSON.stringify(schedule.predictionType)} (epsilon or v_prediction)`);
  }
}

/**
 * The model's raw output turned into ε at timestep `t` (one, or one per row): a copy for 'epsilon' models,
 * {@link vToEps} for 'v_prediction'. The caller owns the returned tensor.
 */
export function modelOutputToEps<T extends tf.Tensor>(
  schedule: Pick<NoiseSchedule, 'alphasCumprod' | 'predictionType'>,
  modelOutput: T,
  zt: T,
  t: Timesteps,
): T {
  checkPrediction(schedule, 'modelOutputToEps');
  sameShape(modelOutput, zt, 'modelOutputToEps', 'modelOutput', 'zt');
  if (schedule.predictionType === 'v_prediction') return vToEpsAt(schedule, modelOutput, zt, t);
  tf.tidy(() => void coefficients(schedule, t, zt.shape, 'modelOutputToEps')); // validates t
  return tf.clone(modelOutput) as T;
}

/**
 * The model's prediction of the clean latent x̂₀ from its raw output at timestep `t` (one, or one per row):
 * `(z_t − σ_t·ε)/α_t` for 'epsilon' models, `α_t·z_t − σ_t·v` for 'v_prediction' (diffusers' `pred_original_sample`,
 * without clipping). The caller owns the returned tensor.
 */
export function modelOutputToX0<T extends tf.Tensor>(
  schedule: Pick<NoiseSchedule, 'alphasCumprod' | 'predictionType'>,
  modelOutput: T,
  zt: T,
  t: Timesteps,
): T {
  checkPrediction(schedule, 'modelOutputToX0');
  sameShape(modelOutput, zt, 'modelOutputToX0', 'modelOutput', 'zt');
  return tf.tidy(() => {
    const { a, s } = coefficients(schedule, t, zt.shape, 'modelOutputToX0');
    if (schedule.predictionType === 'v_prediction') return tf.sub(tf.mul(a, zt), tf.mul(s, modelOutput));
    return tf.div(tf.sub(zt, tf.mul(s, modelOutput)), a);
  }) as T;
}

/**
 * Classifier-free guidance: `ε̂ = ε_u + s·(ε_c − ε_u)` (the DDS notebook's and diffusers' formula). The caller owns
 * the returned tensor.
 */
export function guide<T extends tf.Tensor>(uncond: T, cond: T, scale: number): T {
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new InvalidArgumentError(`guide: the guidance scale must be a finite number, got ${scale}`);
  sameShape(uncond, cond, 'guide', 'uncond', 'cond');
  return tf.tidy(() => tf.add(uncond, tf.mul(scale, tf.sub(cond, uncond)))) as T;
}

/**
 * Forward diffusion `z_t = α_t·z₀ + σ_t·ε` (diffusers' `add_noise`) at one integer timestep, or one per row of the
 * batch (`t.length` = the leading dimension). The caller owns the returned tensor.
 */
export function addNoise<T extends tf.Tensor>(schedule: { alphasCumprod: ArrayLike<number> }, original: T, noise: T, t: Timesteps): T {
  sameShape(original, noise, 'addNoise', 'original', 'noise');
  return tf.tidy(() => {
    const { a, s } = coefficients(schedule, t, original.shape, 'addNoise');
    return tf.add(tf.mul(a, original), tf.mul(s, noise));
  }) as T;
}
