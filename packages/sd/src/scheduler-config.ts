// The scheduler config (scheduler/scheduler_config.json) of diffusers' DDIMScheduler: its types, defaults,
// validation and loading. The tables and the noise math built from it: schedule.ts; the sampler: ddim.ts.
import type * as NodeFs from 'fs';
import type * as NodePath from 'path';
import { nodeModule } from './node-builtins';
import { IoError, ModelFormatError } from '@ddsjs/safetensors';

const fs = nodeModule<typeof NodeFs>('fs');
const path = nodeModule<typeof NodePath>('path');

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
