// `dds-weights make-random`: a diffusers folder with the real SD 1.5 / 2.1 architecture (optionally narrower)
// and seeded random weights, for benchmarks and memory tests without downloading a model.
import * as path from 'node:path';
import { hashString, Rng } from '@ddsjs/nn';
import { BUILTIN_CONFIGS } from '@ddsjs/sd/internals';
import {
  COMPONENTS,
  ComponentName,
  ParamSpec,
  RawComponentConfigs,
  componentParams,
  prepareOutdir,
  weightsFileName,
  writeConfigs,
  writeTokenizer,
} from './folder';
import { f32ArrayToF16 } from './numeric';
import { SafetensorsStreamWriter } from './writer';

/** Options of {@link makeRandom}. */
export interface MakeRandomOptions {
  /** Architecture: `sd15` (runwayml/stable-diffusion-v1-5) or `sd21` (stabilityai/stable-diffusion-2-1). */
  like: 'sd15' | 'sd21';
  /** Width factor of the UNet's `block_out_channels` (default 1; see {@link scaleConfigs}). */
  width?: number;
  /** Also scale the VAE's and text encoder's widths by `width` (default false: they keep the real sizes). */
  scaleAll?: boolean;
  /** PRNG seed (default 0). */
  seed?: number;
  /** Write only the `*.fp16.safetensors` variant (default: float32 files and the fp16 variant). */
  fp16Only?: boolean;
  /** Write into an existing non-empty `outdir`. */
  force?: boolean;
  /** Called after each tensor is written. */
  onProgress?: (done: number, total: number, key: string) => void;
}

/** What {@link makeRandom} wrote. */
export interface MakeRandomResult {
  /** The configs written. */
  configs: RawComponentConfigs;
  /** Parameter count per component. */
  parameters: Record<ComponentName, number>;
  /** Files written. */
  files: string[];
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}
function lcm(a: number, b: number): number {
  return (a / gcd(a, b)) * b;
}

/** `c · f` rounded to the nearest multiple of `m` (at least `m`). */
export function scaleChannels(c: number, f: number, m: number): number {
  return Math.max(m, m * Math.round((c * f) / m));
}

/**
 * The raw configs of `like` with the widths scaled by `width`:
 * - UNet: each `block_out_channels[i]` becomes `c·width` rounded to the nearest multiple of
 *   lcm(norm_num_groups, heads_i) (heads_i = the block's `attention_head_dim`, which diffusers uses as the head
 *   count), so GroupNorm groups and attention heads divide every width; head counts, depths, block types,
 *   cross-attention width and the time embedding rule (4 × block_out_channels[0]) are unchanged.
 *   SD 1.5 × 0.5 → [160, 320, 640, 640]; SD 1.5 × 0.125 → [32, 96, 160, 160].
 * - with `scaleAll`, also the VAE's `block_out_channels` (multiples of norm_num_groups) and the text encoder's
 *   `hidden_size` (multiple of lcm(num_attention_heads, 8)) and `intermediate_size` (multiple of 8); the UNet's
 *   `cross_attention_dim` follows `hidden_size`. Layer counts never change.
 * Throws on a width ≤ 0 or not finite.
 */
export function scaleConfigs(like: 'sd15' | 'sd21', width = 1, scaleAll = false): RawComponentConfigs {
  if (!(like in BUILTIN_CONFIGS)) throw new Error(`--like must be sd15 or sd21, got ${JSON.stringify(like)}`);
  if (!Number.isFinite(width) || width <= 0 || width > 4) throw new Error(`--width must be a number in (0, 4], got ${width}`);
  const b = BUILTIN_CONFIGS[like];
  const raw: RawComponentConfigs = structuredClone({ unet: b.unet, vae: b.vae, textEncoder: b.textEncoder, scheduler: b.scheduler }) as RawComponentConfigs;
  if (width === 1) return raw;
  const u = raw.unet;
  const groups = (u.norm_num_groups as number) ?? 32;
  const chans = u.block_out_channels as number[];
  const headsCfg = (u.num_attention_heads ?? u.attention_head_dim ?? 8) as number | number[];
  const heads = chans.map((_, i) => (Array.isArray(headsCfg) ? headsCfg[i] : headsCfg));
  u.block_out_channels = chans.map((c, i) => scaleChannels(c, width, lcm(groups, heads[i])));
  if (scaleAll) {
    const v = raw.vae;
    const vg = (v.norm_num_groups as number) ?? 32;
    v.block_out_channels = (v.block_out_channels as number[]).map((c) => scaleChannels(c, width, vg));
    const t = raw.textEncoder;
    const th = t.num_attention_heads as number;
    t.hidden_size = scaleChannels(t.hidden_size as number, width, lcm(th, 8));
    t.intermediate_size = scaleChannels(t.intermediate_size as number, width, 8);
    if (typeof t.projection_dim === 'number') t.projection_dim = t.hidden_size;
    u.cross_attention_dim = t.hidden_size;
  }
  return raw;
}

/**
 * Fills `out` with the random initial value of parameter `key` (PyTorch shape `shape`): weights of rank ≥ 2
 * (linear, conv, embeddings) N(0, 1/√fan_in) with fan_in = prod(shape[1:]); rank-1 `weight`s (norm scales)
 * 1 + N(0, 0.02); biases N(0, 0.02). Deterministic in (seed, key) — independent of the order of generation.
 */
export function randomParameter(key: string, shape: readonly number[], seed: number, out?: Float32Array): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = out ?? new Float32Array(n);
  const rng = new Rng((hashString(key) ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0);
  if (shape.length >= 2) {
    const fanIn = shape.slice(1).reduce((a, b) => a * b, 1);
    return rng.fillNormal(data, 0, 1 / Math.sqrt(fanIn));
  }
  if (key.endsWith('weight')) return rng.fillNormal(data, 1, 0.02);
  return rng.fillNormal(data, 0, 0.02);
}

/**
 * Writes a diffusers folder `outdir` with the SD 1.5 / 2.1 architecture (scaled by `width`, see
 * {@link scaleConfigs}) and seeded random weights (see {@link randomParameter}), so that activations stay finite
 * through the UNet: `model_index.json`, component configs, `tokenizer/` (bundled CLIP vocabulary, the model's
 * pad token), `scheduler/`, and per component float32 `*.safetensors` plus the `*.fp16.safetensors` variant (or
 * only the fp16 variant with `fp16Only`). Shapes come from the @ddsjs/sd modules (no tensor is allocated); data
 * is generated and written one tensor at a time. An existing non-empty `outdir` is an error unless `force`.
 */
export async function makeRandom(outdir: string, options: MakeRandomOptions): Promise<MakeRandomResult> {
  const seed = options.seed ?? 0;
  if (!Number.isInteger(seed)) throw new Error(`--seed must be an integer, got ${seed}`);
  const raw = scaleConfigs(options.like, options.width ?? 1, options.scaleAll ?? false);
  const params = componentParams(raw);
  prepareOutdir(outdir, options.force);
  writeConfigs(outdir, raw);
  writeTokenizer(outdir, BUILTIN_CONFIGS[options.like].tokenizer.pad_token);
  const total = COMPONENTS.reduce((s, c) => s + params[c.name].length, 0);
  let done = 0;
  const files: string[] = [];
  const parameters = {} as Record<ComponentName, number>;
  const metadata = { format: 'pt', ddsjs: `make-random --like ${options.like} --width ${options.width ?? 1} --seed ${seed}` };
  for (const c of COMPONENTS) {
    const list: ParamSpec[] = params[c.name];
    parameters[c.name] = list.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
    const writers: { w: SafetensorsStreamWriter; fp16: boolean }[] = [];
    try {
      for (const fp16 of options.fp16Only ? [true] : [false, true]) {
        const file = path.join(outdir, c.name, weightsFileName(c.base, fp16));
        writers.push({ w: await SafetensorsStreamWriter.create(file, list.map((p) => ({ key: p.key, dtype: fp16 ? 'F16' : 'F32', shape: p.shape })), metadata), fp16 });
        files.push(file);
      }
      const shapes = new Map(list.map((p) => [p.key, p.shape]));
      for (const key of writers[0].w.order) {
        const data = randomParameter(key, shapes.get(key)!, seed);
        for (const { w, fp16 } of writers) await w.write(key, fp16 ? f32ArrayToF16(data).bits : data);
        options.onProgress?.(++done, total, `${c.name}/${key}`);
      }
      for (const { w } of writers) await w.finish();
    } catch (e) {
      for (const { w } of writers) await w.abort();
      throw e;
    }
  }
  return { configs: raw, parameters, files };
}
