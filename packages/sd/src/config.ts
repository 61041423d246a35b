// Typed configs of diffusers' UNet2DConditionModel and AutoencoderKL, parsed from each component's
// config.json with diffusers' defaults for absent keys and per-block values broadcast from scalars.
import type * as NodeFs from 'fs';
import type * as NodePath from 'path';
import { nodeModule } from './node-builtins';
import { IoError, ModelFormatError } from '@ddsjs/safetensors';

const fs = nodeModule<typeof NodeFs>('fs');
const path = nodeModule<typeof NodePath>('path');

/** Down-block types the UNet implements. */
export type UNetDownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
/** Up-block types the UNet implements. */
export type UNetUpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

/**
 * A `UNet2DConditionModel` config (diffusers `unet/config.json`), normalised: every per-block value is
 * an array with one entry per down block (in down-block order; the up path reverses them as diffusers does).
 */
export interface UNet2DConditionConfig {
  /** The file the config was read from (for error messages). */
  file: string;
  sampleSize: number | null;
  inChannels: number;
  outChannels: number;
  centerInputSample: boolean;
  flipSinToCos: boolean;
  freqShift: number;
  downBlockTypes: UNetDownBlockType[];
  midBlockType: 'UNetMidBlock2DCrossAttn';
  upBlockTypes: UNetUpBlockType[];
  blockOutChannels: number[];
  /** Resnets per down block (up blocks have one more). */
  layersPerBlock: number[];
  downsamplePadding: number;
  midBlockScaleFactor: number;
  actFn: 'silu';
  normNumGroups: number;
  normEps: number;
  /** Context width per down block. */
  crossAttentionDim: number[];
  /** Transformer blocks per Transformer2DModel, per down block. */
  transformerLayersPerBlock: number[];
  /** Transformer blocks per Transformer2DModel of each up block (up-block order), when given separately. */
  reverseTransformerLayersPerBlock: number[] | null;
  /** Attention heads per down block (diffusers' `num_attention_heads`, or `attention_head_dim` when that is null). */
  numAttentionHeads: number[];
  useLinearProjection: boolean;
  upcastAttention: boolean;
  /** Width of the time embedding (default 4 × blockOutChannels[0]). */
  timeEmbedDim: number;
  convInKernel: number;
  convOutKernel: number;
}

/** An `AutoencoderKL` config (diffusers `vae/config.json`), normalised. */
export interface AutoencoderKLConfig {
  /** The file the config was read from (for error messages). */
  file: string;
  inChannels: number;
  outChannels: number;
  downBlockTypes: 'DownEncoderBlock2D'[];
  upBlockTypes: 'UpDecoderBlock2D'[];
  blockOutChannels: number[];
  layersPerBlock: number;
  actFn: 'silu';
  latentChannels: number;
  normNumGroups: number;
  sampleSize: number;
  /** Latent scaling factor (`z = scalingFactor · vae.encode(x).mean`); 0.18215 when absent. */
  scalingFactor: number;
  midBlockAddAttention: boolean;
  useQuantConv: boolean;
  usePostQuantConv: boolean;
}

type Json = Record<string, unknown>;

class Reader {
  constructor(
    readonly json: Json,
    readonly file: string,
  ) {}

  fail(field: string, msg: string): never {
    throw new ModelFormatError(`${this.file}: field '${field}' ${msg}`);
  }

  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null;
  }

  int(field: string, dflt: number, min = 0): number {
    const v = this.json[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) this.fail(field, `must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    return v;
  }

  num(field: string, dflt: number): number {
    const v = this.json[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, `must be a number, got ${JSON.stringify(v)}`);
    return v;
  }

  bool(field: string, dflt: boolean): boolean {
    const v = this.json[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') this.fail(field, `must be a boolean, got ${JSON.stringify(v)}`);
    return v;
  }

  str(field: string, dflt: string): string {
    const v = this.json[field];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'string') this.fail(field, `must be a string, got ${JSON.stringify(v)}`);
    return v;
  }

  strList(field: string, dflt: string[]): string[] {
    const v = this.json[field];
    if (v === undefined || v === null) return dflt;
    if (!Array.isArray(v) || v.length === 0 || !v.every((s) => typeof s === 'string')) {
      this.fail(field, `must be a non-empty list of strings, got ${JSON.stringify(v)}`);
    }
    return v as string[];
  }

  intList(field: string, dflt: number[]): number[] {
    const v = this.json[field];
    if (v === undefined || v === null) return dflt;
    if (!Array.isArray(v) || v.length === 0 || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x > 0)) {
      this.fail(field, `must be a non-empty list of positive integers, got ${JSON.stringify(v)}`);
    }
    return v as number[];
  }

  /** A positive integer or a per-block list of them, broadcast to `n` entries. */
  perBlock(field: string, dflt: number | null, n: number): number[] | null {
    const v = this.json[field];
    if (v === undefined || v === null) return dflt === null ? null : new Array<number>(n).fill(dflt);
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v <= 0) this.fail(field, `must be a positive integer, got ${v}`);
      return new Array<number>(n).fill(v);
    }
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x > 0)) {
      this.fail(field, `must be a positive integer or a list of them (nested lists are not supported), got ${JSON.stringify(v)}`);
    }
    if (v.length !== n) this.fail(field, `has ${v.length} entries but the model has ${n} blocks`);
    return v as number[];
  }

  /** Fails unless the field is absent or equal to one of `allowed` (the defaults this port implements). */
  only(field: string, allowed: unknown[], what = 'is not supported'): void {
    const v = this.json[field] ?? null;
    if (!allowed.some((a) => a === v)) this.fail(field, `${what} (got ${JSON.stringify(v)}; supported: ${allowed.map((a) => JSON.stringify(a)).join(', ')})`);
  }
}

/**
 * Parses a diffusers `UNet2DConditionModel` config.json object. `file` names the source in errors.
 * Unsupported features (SDXL added conditioning, class embeddings, scale-shift resnets, unknown block
 * types, …) throw an error naming the file and field rather than being ignored.
 */
export function parseUNetConfig(json: unknown, file = 'unet/config.json'): UNet2DConditionConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelFormatError(`${file}: not a JSON object`);
  const r = new Reader(json as Json, file);
  const cls = r.str('_class_name', 'UNet2DConditionModel');
  if (cls !== 'UNet2DConditionModel') r.fail('_class_name', `must be 'UNet2DConditionModel', got '${cls}'`);

  const downBlockTypes = r.strList('down_block_types', ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
  const upBlockTypes = r.strList('up_block_types', ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D']);
  downBlockTypes.forEach((t) => {
    if (t !== 'CrossAttnDownBlock2D' && t !== 'DownBlock2D') r.fail('down_block_types', `contains unsupported block type '${t}' (supported: CrossAttnDownBlock2D, DownBlock2D)`);
  });
  upBlockTypes.forEach((t) => {
    if (t !== 'CrossAttnUpBlock2D' && t !== 'UpBlock2D') r.fail('up_block_types', `contains unsupported block type '${t}' (supported: CrossAttnUpBlock2D, UpBlock2D)`);
  });
  const n = downBlockTypes.length;
  if (upBlockTypes.length !== n) r.fail('up_block_types', `has ${upBlockTypes.length} entries but down_block_types has ${n}`);
  const blockOutChannels = r.intList('block_out_channels', [320, 640, 1280, 1280]);
  if (blockOutChannels.length !== n) r.fail('block_out_channels', `has ${blockOutChannels.length} entries but down_block_types has ${n}`);

  r.only('mid_block_type', [null, 'UNetMidBlock2DCrossAttn'], 'mid block type is not supported');
  r.only('act_fn', [null, 'silu'], 'activation is not supported');
  r.only('time_embedding_type', [null, 'positional'], 'time embedding type is not supported');
  r.only('resnet_time_scale_shift', [null, 'default'], "resnet time scale shift is not supported ('scale_shift' is not implemented)");
  r.only('class_embed_type', [null], 'class embeddings are not supported');
  r.only('num_class_embeds', [null], 'class embeddings are not supported');
  r.only('addition_embed_type', [null], 'added conditioning (SDXL text_time etc.) is not supported');
  r.only('addition_time_embed_dim', [null], 'added conditioning (SDXL) is not supported');
  r.only('projection_class_embeddings_input_dim', [null], 'class/added-condition projections are not supported');
  r.only('class_embeddings_concat', [null, false], 'class embeddings are not supported');
  r.only('encoder_hid_dim', [null], 'an encoder hidden-state projection is not supported');
  r.only('encoder_hid_dim_type', [null], 'an encoder hidden-state projection is not supported');
  r.only('time_cond_proj_dim', [null], 'timestep conditioning projections (LCM) are not supported');
  r.only('time_embedding_act_fn', [null], 'a time embedding activation is not supported');
  r.only('timestep_post_act', [null], 'a timestep post-activation is not supported');
  r.only('dual_cross_attention', [null, false], 'dual cross attention is not supported');
  r.only('only_cross_attention', [null, false], 'only_cross_attention is not supported');
  r.only('mid_block_only_cross_attention', [null, false], 'mid_block_only_cross_attention is not supported');
  r.only('attention_type', [null, 'default'], 'attention type is not supported');
  r.only('cross_attention_norm', [null], 'cross attention norm is not supported');
  r.only('resnet_skip_time_act', [null, false], 'resnet_skip_time_act is not supported');
  r.only('resnet_out_scale_factor', [null, 1, 1.0], 'resnet_out_scale_factor other than 1 is not supported');
  r.only('dropout', [null, 0, 0.0], 'dropout is not implemented (inference-only port)');

  const layersPerBlock = r.perBlock('layers_per_block', 2, n)!;
  const crossAttentionDim = r.perBlock('cross_attention_dim', 1280, n)!;
  const transformerLayersPerBlock = r.perBlock('transformer_layers_per_block', 1, n)!;
  const reverseTransformerLayersPerBlock = r.perBlock('reverse_transformer_layers_per_block', null, n);
  // diffusers quirk: `attention_head_dim` of SD1/2 configs is the head count (`num_attention_heads = num_attention_heads or attention_head_dim`).
  const heads = r.has('num_attention_heads') ? r.perBlock('num_attention_heads', null, n)! : r.perBlock('attention_head_dim', 8, n)!;
  blockOutChannels.forEach((c, i) => {
    if (c % heads[i] !== 0) r.fail(r.has('num_attention_heads') ? 'num_attention_heads' : 'attention_head_dim', `: ${heads[i]} heads do not divide block ${i}'s ${c} channels`);
  });
  const normNumGroups = r.int('norm_num_groups', 32, 1);
  blockOutChannels.forEach((c) => {
    if (c % normNumGroups !== 0) r.fail('norm_num_groups', `${normNumGroups} does not divide block_out_channels entry ${c}`);
  });
  const convInKernel = r.int('conv_in_kernel', 3, 1);
  const convOutKernel = r.int('conv_out_kernel', 3, 1);
  if (convInKernel % 2 === 0) r.fail('conv_in_kernel', `must be odd, got ${convInKernel}`);
  if (convOutKernel % 2 === 0) r.fail('conv_out_kernel', `must be odd, got ${convOutKernel}`);
  const sampleSize = r.json.sample_size;
  if (sampleSize !== undefined && sampleSize !== null && typeof sampleSize !== 'number') {
    r.fail('sample_size', `must be an integer (non-square sample sizes are not supported), got ${JSON.stringify(sampleSize)}`);
  }

  return {
    file,
    sampleSize: typeof sampleSize === 'number' ? sampleSize : null,
    inChannels: r.int('in_channels', 4, 1),
    outChannels: r.int('out_channels', 4, 1),
    centerInputSample: r.bool('center_input_sample', false),
    flipSinToCos: r.bool('flip_sin_to_cos', true),
    freqShift: r.num('freq_shift', 0),
    downBlockTypes: downBlockTypes as UNetDownBlockType[],
    midBlockType: 'UNetMidBlock2DCrossAttn',
    upBlockTypes: upBlockTypes as UNetUpBlockType[],
    blockOutChannels,
    layersPerBlock,
    downsamplePadding: r.int('downsample_padding', 1, 0),
    midBlockScaleFactor: r.num('mid_block_scale_factor', 1),
    actFn: 'silu',
    normNumGroups,
    normEps: r.num('norm_eps', 1e-5),
    crossAttentionDim,
    transformerLayersPerBlock,
    reverseTransformerLayersPerBlock,
    numAttentionHeads: heads,
    useLinearProjection: r.bool('use_linear_projection', false),
    upcastAttention: r.bool('upcast_attention', false),
    timeEmbedDim: r.int('time_embedding_dim', blockOutChannels[0] * 4, 1),
    convInKernel,
    convOutKernel,
  };
}

/**
 * Parses a diffusers `AutoencoderKL` config.json object. `file` names the source in errors.
 * Unsupported values (other block types, a non-zero `shift_factor`, latents mean/std, …) throw.
 */
export function parseVaeConfig(json: unknown, file = 'vae/config.json'): AutoencoderKLConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelFormatError(`${file}: not a JSON object`);
  const r = new Reader(json as Json, file);
  const cls = r.str('_class_name', 'AutoencoderKL');
  if (cls !== 'AutoencoderKL') r.fail('_class_name', `must be 'AutoencoderKL', got '${cls}'`);
  const downBlockTypes = r.strList('down_block_types', ['DownEncoderBlock2D']);
  const upBlockTypes = r.strList('up_block_types', ['UpDecoderBlock2D']);
  downBlockTypes.forEach((t) => {
    if (t !== 'DownEncoderBlock2D') r.fail('down_block_types', `contains unsupported block type '${t}' (supported: DownEncoderBlock2D)`);
  });
  upBlockTypes.forEach((t) => {
    if (t !== 'UpDecoderBlock2D') r.fail('up_block_types', `contains unsupported block type '${t}' (supported: UpDecoderBlock2D)`);
  });
  const blockOutChannels = r.intList('block_out_channels', [64]);
  if (downBlockTypes.length !== blockOutChannels.length) r.fail('down_block_types', `has ${downBlockTypes.length} entries but block_out_channels has ${blockOutChannels.length}`);
  if (upBlockTypes.length !== blockOutChannels.length) r.fail('up_block_types', `has ${upBlockTypes.length} entries but block_out_channels has ${blockOutChannels.length}`);
  r.only('act_fn', [null, 'silu'], 'activation is not supported');
  r.only('shift_factor', [null, 0, 0.0], 'a latent shift factor is not supported');
  r.only('latents_mean', [null], 'per-channel latent mean/std normalisation is not supported');
  r.only('latents_std', [null], 'per-channel latent mean/std normalisation is not supported');
  r.only('norm_type', [null, 'group'], 'norm type is not supported');
  const normNumGroups = r.int('norm_num_groups', 32, 1);
  blockOutChannels.forEach((c) => {
    if (c % normNumGroups !== 0) r.fail('norm_num_groups', `${normNumGroups} does not divide block_out_channels entry ${c}`);
  });
  const scalingFactor = r.num('scaling_factor', 0.18215);
  if (!(scalingFactor > 0)) r.fail('scaling_factor', `must be positive, got ${scalingFactor}`);
  const sampleSize = r.json.sample_size;
  return {
    file,
    inChannels: r.int('in_channels', 3, 1),
    outChannels: r.int('out_channels', 3, 1),
    downBlockTypes: downBlockTypes as 'DownEncoderBlock2D'[],
    upBlockTypes: upBlockTypes as 'UpDecoderBlock2D'[],
    blockOutChannels,
    layersPerBlock: r.int('layers_per_block', 1, 1),
    actFn: 'silu',
    latentChannels: r.int('latent_channels', 4, 1),
    normNumGroups,
    sampleSize: typeof sampleSize === 'number' ? sampleSize : Array.isArray(sampleSize) ? Number(sampleSize[0]) : 32,
    scalingFactor,
    midBlockAddAttention: r.bool('mid_block_add_attention', true),
    useQuantConv: r.bool('use_quant_conv', true),
    usePostQuantConv: r.bool('use_post_quant_conv', true),
  };
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (e) {
    throw new IoError(`${file}: cannot read config (${(e as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`${file}: invalid JSON (${(e as Error).message})`);
  }
}

/** Reads and parses `<dir>/config.json` of a diffusers UNet folder (e.g. `model/unet`). */
export async function loadUNetConfig(dir: string): Promise<UNet2DConditionConfig> {
  const file = path.join(dir, 'config.json');
  return parseUNetConfig(await readJson(file), file);
}

/** Reads and parses `<dir>/config.json` of a diffusers VAE folder (e.g. `model/vae`). */
export async function loadVaeConfig(dir: string): Promise<AutoencoderKLConfig> {
  const file = path.join(dir, 'config.json');
  return parseVaeConfig(await readJson(file), file);
}
