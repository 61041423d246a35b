/**
 * Noise schedules and the DDIM sampler, matching diffusers' `DDIMScheduler` (0.35) number for number.
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
import type * as NodeFs from 'fs';
import type * as NodePath from 'path';
import { nodeModule } from './node-builtins';
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError, IoError, ModelFormatError } from '@ddsjs/safetensors';

const fs = nodeModule<typeof NodeFs>('fs');
const path = nodeModule<typeof NodePath>('path');

const f32 = Math.fround;

/** Beta schedules diffusers' DDIMScheduler implements (and so do we). */
export type BetaSchedule = 'linear' | 'scaled_linear' | 'squaredcos_cap_v2';
/** What the UNet predicts. */
export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
/** How `setTimesteps` spaces the inference timesteps (diffusers' `timestep_spacing`). */
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

/**
 * A scheduler config (diffusers `scheduler/scheduler_config.json`), read as `DDIMScheduler.from_config` reads it:
 * keys another scheduler class stores (PNDM's `skip_prk_steps`, …) are ignored, absent keys take DDIM's defaults.
 */
export interface SchedulerConfig {
  /** Where the config came from (used in error messages). */
  source: string;
  /** `_class_name` of the file (e.g. "PNDMScheduler"), informational; null when absent. */
  className: string | null;
  /** `num_train_timesteps` (default 1000). */
  numTrainTimesteps: number;
  /** `beta_start` (default 0.0001). */
  betaStart: number;
  /** `beta_end` (default 0.02). */
  betaEnd: number;
  /** `beta_schedule` (default 'linear'). Ignored when `trainedBetas` is set. */
  betaSchedule: BetaSchedule;
  /** `trained_betas` (default null): explicit betas, one per training timestep. */
  trainedBetas: number[] | null;
  /** `prediction_type` (default 'epsilon'). */
  predictionType: PredictionType;
  /** `steps_offset` (default 0; SD 1.x/2.x use 1). */
  stepsOffset: number;
  /** `set_alpha_to_one` (DDIM default true; SD's PNDM config says false). */
  setAlphaToOne: boolean;
  /** `timestep_spacing` (default 'leading'). */
  timestepSpacing: TimestepSpacing;
  /** `clip_sample` (DDIM default true): clamp the predicted x₀ to ±`clipSampleRange`. */
  clipSample: boolean;
  /** `clip_sample_range` (default 1.0). */
  clipSampleRange: number;
  /** `rescale_betas_zero_snr` (default false): rescale betas to zero terminal SNR (Lin et al. 2023). */
  rescaleBetasZeroSnr: boolean;
}

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
// Config

/** Diffusers' DDIMScheduler defaults, for keys absent from the file. */
export const DDIM_DEFAULTS: Omit<SchedulerConfig, 'source' | 'className'> = {
  numTrainTimesteps: 1000,
  betaStart: 0.0001,
  betaEnd: 0.02,
  betaSchedule: 'linear',
  trainedBetas: null,
  predictionType: 'epsilon',
  stepsOffset: 0,
  setAlphaToOne: true,
  timestepSpacing: 'leading',
  clipSample: true,
  clipSampleRange: 1.0,
  rescaleBetasZeroSnr: false,
};

/**
 * Validates and types a parsed scheduler_config.json, filling DDIM's defaults. `source` (a file name) is quoted in
 * errors. Throws for unsupported values: a `beta_schedule` other than linear/scaled_linear/squaredcos_cap_v2, a
 * `prediction_type` other than epsilon/v_prediction/sample, a `timestep_spacing` other than leading/trailing/linspace,
 * `thresholding: true`, wrongly typed fields, and `trained_betas` of the wrong length.
 */
export function parseSchedulerConfig(json: unknown, source = 'scheduler_config.json'): SchedulerConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelFormatError(`${source}: a scheduler config must be a JSON object`);
  }
  const o = json as Record<string, unknown>;
  const bad = (key: string, why: string): never => {
    throw new ModelFormatError(`${source}: "${key}" ${why} (got ${JSON.stringify(o[key])})`);
  };
  const num = (key: string, def: number, check: (v: number) => boolean, what: string): number => {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) return bad(key, `must be ${what}`);
    return v;
  };
  const bool = (key: string, def: boolean): boolean => {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'boolean') return bad(key, 'must be true or false');
    return v;
  };
  const oneOf = <T extends string>(key: string, def: T, allowed: readonly T[]): T => {
    const v = o[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      return bad(key, `is not supported; ddsjs implements ${allowed.map((a) => `'${a}'`).join(', ')}`);
    }
    return v as T;
  };

  const numTrainTimesteps = num('num_train_timesteps', DDIM_DEFAULTS.numTrainTimesteps, (v) => Number.isInteger(v) && v >= 2, 'an integer ≥ 2');
  const betaStart = num('beta_start', DDIM_DEFAULTS.betaStart, (v) => v >= 0 && v < 1, 'a number in [0, 1)');
  const betaEnd = num('beta_end', DDIM_DEFAULTS.betaEnd, (v) => v >= 0 && v < 1, 'a number in [0, 1)');
  const betaSchedule = oneOf<BetaSchedule>('beta_schedule', DDIM_DEFAULTS.betaSchedule, ['linear', 'scaled_linear', 'squaredcos_cap_v2']);
  let trainedBetas: number[] | null = null;
  if (o['trained_betas'] !== undefined && o['trained_betas'] !== null) {
    const tb = o['trained_betas'];
    if (!Array.isArray(tb) || tb.some((b) => typeof b !== 'number' || !(b > 0 && b < 1))) {
      bad('trained_betas', 'must be null or an array of numbers in (0, 1)');
    }
    if ((tb as number[]).length !== numTrainTimesteps) {
      bad('trained_betas', `must have num_train_timesteps = ${numTrainTimesteps} entries, not ${(tb as number[]).length}`);
    }
    trainedBetas = [...(tb as number[])];
  }
  const predictionType = oneOf<PredictionType>('prediction_type', DDIM_DEFAULTS.predictionType, ['epsilon', 'v_prediction', 'sample']);
  const stepsOffset = num('steps_offset', DDIM_DEFAULTS.stepsOffset, (v) => Number.isInteger(v) && v >= 0, 'a non-negative integer');
  const setAlphaToOne = bool('set_alpha_to_one', DDIM_DEFAULTS.setAlphaToOne);
  const timestepSpacing = oneOf<TimestepSpacing>('timestep_spacing', DDIM_DEFAULTS.timestepSpacing, ['leading', 'trailing', 'linspace']);
  const clipSample = bool('clip_sample', DDIM_DEFAULTS.clipSample);
  const clipSampleRange = num('clip_sample_range', DDIM_DEFAULTS.clipSampleRange, (v) => v > 0, 'a positive number');
  if (bool('thresholding', false)) bad('thresholding', 'is not supported (dynamic thresholding); set it to false');
  const rescaleBetasZeroSnr = bool('rescale_betas_zero_snr', DDIM_DEFAULTS.rescaleBetasZeroSnr);
  const className = typeof o['_class_name'] === 'string' ? (o['_class_name'] as string) : null;
  return {
    source, className, numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, predictionType, stepsOffset,
    setAlphaToOne, timestepSpacing, clipSample, clipSampleRange, rescaleBetasZeroSnr,
  };
}

/**
 * Reads and validates a scheduler config. `file` is the JSON file, the `scheduler/` folder, or a diffusers model
 * folder (which has `scheduler/scheduler_config.json`). See {@link parseSchedulerConfig}.
 */
export async function loadSchedulerConfig(file: string): Promise<SchedulerConfig> {
  let p = file;
  const candidates = [path.join(file, 'scheduler_config.json'), path.join(file, 'scheduler', 'scheduler_config.json')];
  let stat: NodeFs.Stats | null = null;
  try {
    stat = await fs.promises.stat(p);
  } catch {
    throw new IoError(`loadSchedulerConfig: ${file} does not exist`);
  }
  if (stat.isDirectory()) {
    const found = candidates.find((c) => fs.existsSync(c));
    if (!found) throw new ModelFormatError(`loadSchedulerConfig: no scheduler_config.json in ${file} or ${path.join(file, 'scheduler')}`);
    p = found;
  }
  const text = await fs.promises.readFile(p, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`${p}: not valid JSON: ${(e as Error).message}`);
  }
  return parseSchedulerConfig(json, p);
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

function checkTimestep(t: number, n: number, who: string): void {
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

function sameShape(a: tf.Tensor, b: tf.Tensor, who: string, na: string, nb: string): void {
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

// ---------------------------------------------------------------------------------------------------------------
// DDIM

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
