// Single-file (original LDM / CompVis) Stable Diffusion checkpoints: model-type detection (diffusers'
// infer_diffusers_model_type), lazily-read StateDictSources for `loadStateDict` over the key mappings of
// single-file-keys.ts, and checks of a config against the checkpoint's shapes. The built-in configs of the detected
// models: single-file-configs.ts.
import type { StateDictSource } from '@ddsjs/nn';
import { mappedSource } from './sources';
import { ModelFormatError } from '@ddsjs/safetensors';
import { BUILTIN_CONFIGS, BuiltinConfigSet } from './single-file-configs';
import {
  LDM_CLIP_PREFIX,
  LDM_OPEN_CLIP_PREFIX,
  LDM_UNET_PREFIX,
  LDM_VAE_PREFIX,
  LdmOpenClipLayout,
  LdmUnetLayout,
  LdmVaeLayout,
  convertLdmClipKeys,
  convertLdmUnetKeys,
  convertLdmVaeKeys,
  convertOpenClipKeys,
} from './single-file-keys';

// ---------------------------------------------------------------------------------------------
// Detection
// ---------------------------------------------------------------------------------------------

/** diffusers' marker keys (CHECKPOINT_KEY_NAMES in single_file_utils.py). */
const KEY = {
  v2: 'model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight',
  inpainting: 'model.diffusion_model.input_blocks.0.0.weight',
  xlBase: 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias',
  xlRefiner: 'conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias',
  upscale: 'model.diffusion_model.input_blocks.10.0.skip_connection.bias',
  controlnet: 'control_model.time_embed.0.weight',
  playground: 'edm_mean',
  sd3: 'model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias',
  clip: 'cond_stage_model.transformer.text_model.embeddings.position_embedding.weight',
  openClip: 'cond_stage_model.model.token_embedding.weight',
} as const;

/** The model families single files are detected as. */
export type SingleFileModelType = 'sd15' | 'sd21';
/** The text-encoder layouts of LDM checkpoints: transformers CLIP (SD 1.x) or OpenCLIP (SD 2.x). */
export type LdmTextEncoderKind = 'clip' | 'open_clip';

/** Options of {@link detectSingleFileModel}. */
export interface DetectOptions {
  /**
   * Overrides the prediction type. diffusers' `from_single_file` configures every SD 2.x checkpoint
   * from `stable-diffusion-2-1` (v-prediction, 768 px); the weights do not say which objective they were
   * trained with, so SD 2.x-base (512 px, epsilon) checkpoints need `'epsilon'` here.
   */
  predictionType?: 'epsilon' | 'v_prediction';
  /**
   * The architecture comes from diffusers configs the caller has (as diffusers' `from_single_file` with `config`):
   * infer only what configs cannot say — the text-encoder key layout — and skip the model-family refusals
   * (inpainting, upscaler, … are recognised by keys that a custom architecture can have too, e.g. a last down
   * block that changes the channel count has `input_blocks.10.0.skip_connection`). `modelType` then follows the
   * text-encoder layout (OpenCLIP → `'sd21'`).
   */
  configsGiven?: boolean;
}

/** What {@link detectSingleFileModel} found. */
export interface DetectedSingleFile {
  /** `'sd15'` (diffusers model type `v1`) or `'sd21'` (`v2`). */
  modelType: SingleFileModelType;
  /** Layout of the text encoder keys. */
  textEncoder: LdmTextEncoderKind;
  /** Prediction type for the scheduler (option, else the built-in config's). */
  predictionType: 'epsilon' | 'v_prediction';
  /**
   * The built-in configs of `modelType` (copies; the scheduler's `prediction_type` set to
   * `predictionType`). Their network sizes are the full-size models'.
   */
  configs: BuiltinConfigSet;
}

/**
 * Detects which model an LDM single-file checkpoint holds from its keys and shapes, as diffusers'
 * `infer_diffusers_model_type`: SD 2.x when
 * `model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight` has 1024 input
 * features, else SD 1.x. Throws an error naming the model type for checkpoints diffusers recognises
 * but this library does not support (inpainting, SDXL, upscaler, ControlNet, SD3, Playground), and for
 * files with no UNet or no text encoder in LDM layout — unless `options.configsGiven` (then only the
 * text-encoder layout is inferred).
 *
 * `shape(key)` returns the stored shape of a key (e.g. `(k) => file.info(k).shape`).
 */
export function detectSingleFileModel(
  keys: readonly string[],
  shape: (key: string) => readonly number[],
  options: DetectOptions = {},
): DetectedSingleFile {
  const has = new Set(keys);
  const given = options.configsGiven ?? false;
  const unsupported = (what: string, key: string): void => {
    if (given) return;
    throw new ModelFormatError(`single-file checkpoint: this is ${what} (key '${key}'), which is not supported; supported: SD 1.x and SD 2.x text-to-image`);
  };
  if (has.has(KEY.inpainting) && shape(KEY.inpainting)[1] === 9) unsupported('an inpainting model (9 input channels)', KEY.inpainting);
  if (has.has(KEY.playground)) unsupported('Playground v2.5', KEY.playground);
  if (has.has(KEY.xlBase)) unsupported('SDXL base', KEY.xlBase);
  if (has.has(KEY.xlRefiner)) unsupported('the SDXL refiner', KEY.xlRefiner);
  if (has.has(KEY.upscale)) unsupported('the x4 upscaler', KEY.upscale);
  if (has.has(KEY.controlnet)) unsupported('a ControlNet', KEY.controlnet);
  if (has.has(KEY.sd3)) unsupported('SD3', KEY.sd3);
  if (!keys.some((k) => k.startsWith(LDM_UNET_PREFIX))) {
    throw new ModelFormatError(`single-file checkpoint: no UNet keys ('${LDM_UNET_PREFIX}…'); is this an LDM/CompVis Stable Diffusion checkpoint?`);
  }
  if (!keys.some((k) => k.startsWith(LDM_VAE_PREFIX))) {
    throw new ModelFormatError(`single-file checkpoint: no VAE keys ('${LDM_VAE_PREFIX}…')`);
  }
  let textEncoder: LdmTextEncoderKind;
  if (has.has(KEY.clip)) textEncoder = 'clip';
  else if (has.has(KEY.openClip)) textEncoder = 'open_clip';
  else {
    throw new ModelFormatError(
      `single-file checkpoint: no text encoder in LDM layout (expected '${KEY.clip}' (SD 1.x) or '${KEY.openClip}' (SD 2.x))`,
    );
  }
  const isV2 = given ? textEncoder === 'open_clip' : has.has(KEY.v2) && shape(KEY.v2).at(-1) === 1024;
  const modelType: SingleFileModelType = isV2 ? 'sd21' : 'sd15';
  const base = BUILTIN_CONFIGS[modelType];
  const predictionType = options.predictionType ?? (isV2 ? 'v_prediction' : 'epsilon');
  const configs: BuiltinConfigSet = structuredClone(base) as BuiltinConfigSet;
  configs.scheduler.prediction_type = predictionType;
  return { modelType, textEncoder, predictionType, configs };
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/** The diffusers configs {@link singleFileSources} needs (parsed configs fit). */
export interface SingleFileLayouts {
  unet: LdmUnetLayout;
  vae: LdmVaeLayout;
  textEncoder: LdmOpenClipLayout;
}

/** The three components of a single-file checkpoint as StateDictSources with diffusers key names. */
export interface SingleFileSources {
  /** UNet2DConditionModel keys (`conv_in.weight`, `down_blocks.0.resnets.0.norm1.weight`, …). */
  unet: StateDictSource;
  /** AutoencoderKL keys (`encoder.down_blocks.0.resnets.0.conv1.weight`, …), attention weights `[C,C]`. */
  vae: StateDictSource;
  /** transformers CLIPTextModel keys (`text_model.…`). */
  textEncoder: StateDictSource;
}

/**
 * Presents an LDM single-file checkpoint (`file`: e.g. `safetensorsSource(await SafetensorsFile.open(p))`)
 * as three StateDictSources with diffusers/transformers key names and shapes, for the components'
 * `loadStateDict`. Tensors are read lazily, one at a time, from `file` (reshapes/splits applied on
 * read). `textEncoder` picks the text-encoder layout (see {@link detectSingleFileModel}).
 */
export function singleFileSources(
  file: StateDictSource,
  layouts: SingleFileLayouts,
  textEncoder: LdmTextEncoderKind,
  name = 'single-file checkpoint',
): SingleFileSources {
  const keys = file.keys();
  return {
    unet: mappedSource(file, convertLdmUnetKeys(keys, layouts.unet), `${name} (UNet)`),
    vae: mappedSource(file, convertLdmVaeKeys(keys, layouts.vae), `${name} (VAE)`),
    textEncoder: mappedSource(
      file,
      textEncoder === 'clip' ? convertLdmClipKeys(keys) : convertOpenClipKeys(keys, layouts.textEncoder),
      `${name} (text encoder)`,
    ),
  };
}

// ---------------------------------------------------------------------------------------------
// Checking a config against the checkpoint's shapes
// ---------------------------------------------------------------------------------------------

/** Architecture sizes read off an LDM checkpoint's shapes (everything the weights determine). */
export interface LdmDimensions {
  unet: {
    inChannels: number;
    outChannels: number;
    blockOutChannels: number[];
    layersPerBlock: number[];
    downBlockTypes: string[];
    /** Context width of the cross-attention layers (null when there are none). */
    crossAttentionDim: number | null;
    /** Whether `proj_in`/`proj_out` are linear (SD 2.x) rather than 1×1 convs (SD 1.x). */
    useLinearProjection: boolean | null;
  };
  vae: { inChannels: number; blockOutChannels: number[]; layersPerBlock: number; latentChannels: number };
  textEncoder: { vocabSize: number; maxPositionEmbeddings: number; hiddenSize: number; intermediateSize: number; layersInFile: number };
}

/**
 * Reads the architecture sizes of an LDM checkpoint from its key names and shapes (no data is read):
 * UNet block widths, resnets per block, which blocks have attention, context width, linear or conv
 * projections; VAE widths, resnets per block, latent channels; text encoder vocabulary, positions,
 * width, MLP width and number of layers stored. Attention head counts are not recoverable from shapes.
 * Throws an error naming the missing key when a component lacks a key it must have.
 */
export function inferLdmDimensions(keys: readonly string[], shape: (key: string) => readonly number[]): LdmDimensions {
  const has = new Set(keys);
  const need = (key: string): readonly number[] => {
    if (!has.has(key)) throw new ModelFormatError(`single-file checkpoint: missing '${key}'`);
    return shape(key);
  };
  const U = LDM_UNET_PREFIX;
  // UNet: input_blocks indices, split into down blocks at the downsamplers (`input_blocks.N.0.op`).
  const inputIdx = new Set<number>();
  const opIdx = new Set<number>();
  for (const k of keys) {
    const m = /^model\.diffusion_model\.input_blocks\.(\d+)\.0\.(op\.)?/.exec(k);
    if (m && m[1] !== '0') (m[2] ? opIdx : inputIdx).add(Number(m[1]));
  }
  const sorted = [...inputIdx].sort((a, b) => a - b);
  const segments: number[][] = [[]];
  for (let i = 1; i <= Math.max(0, ...sorted, ...opIdx); i++) {
    if (opIdx.has(i)) segments.push([]);
    else if (inputIdx.has(i)) segments[segments.length - 1]!.push(i);
  }
  const blockOutChannels = segments.map((s) => need(`${U}input_blocks.${s[0]}.0.out_layers.3.weight`)[0]!);
  const downBlockTypes = segments.map((s) => (has.has(`${U}input_blocks.${s[0]}.1.proj_in.weight`) ? 'CrossAttnDownBlock2D' : 'DownBlock2D'));
  let crossAttentionDim: number | null = null;
  let useLinearProjection: boolean | null = null;
  for (const k of keys) {
    if (crossAttentionDim === null && k.startsWith(U) && k.endsWith('.attn2.to_k.weight')) crossAttentionDim = shape(k)[1] ?? null;
    if (useLinearProjection === null && k.startsWith(U) && k.endsWith('.proj_in.weight')) useLinearProjection = shape(k).length === 2;
  }
  const convIn = need(`${U}input_blocks.0.0.weight`);
  const convOut = need(`${U}out.2.weight`);
  // VAE.
  const V = LDM_VAE_PREFIX;
  const vaeDown = new Set<number>();
  const vaeBlocks = new Set<number>();
  for (const k of keys) {
    const m = /^first_stage_model\.encoder\.down\.(\d+)\.block\.(\d+)\./.exec(k);
    if (m) {
      vaeDown.add(Number(m[1]));
      if (m[1] === '0') vaeBlocks.add(Number(m[2]));
    }
  }
  const vaeWidths = [...vaeDown].sort((a, b) => a - b).map((i) => need(`${V}encoder.down.${i}.block.0.conv2.weight`)[0]!);
  const vaeConvIn = need(`${V}encoder.conv_in.weight`);
  const quant = need(`${V}quant_conv.weight`);
  // Text encoder.
  let text: LdmDimensions['textEncoder'];
  if (has.has(`${LDM_CLIP_PREFIX}text_model.embeddings.token_embedding.weight`)) {
    const T = `${LDM_CLIP_PREFIX}text_model.`;
    const tok = need(`${T}embeddings.token_embedding.weight`);
    const layers = new Set(keys.map((k) => /^cond_stage_model\.transformer\.text_model\.encoder\.layers\.(\d+)\./.exec(k)?.[1]).filter((x) => x !== undefined));
    text = {
      vocabSize: tok[0]!,
      hiddenSize: tok[1]!,
      maxPositionEmbeddings: need(`${T}embeddings.position_embedding.weight`)[0]!,
      intermediateSize: need(`${T}encoder.layers.0.mlp.fc1.weight`)[0]!,
      layersInFile: layers.size,
    };
  } else {
    const T = LDM_OPEN_CLIP_PREFIX;
    const tok = need(`${T}token_embedding.weight`);
    const layers = new Set(keys.map((k) => /^cond_stage_model\.model\.transformer\.resblocks\.(\d+)\./.exec(k)?.[1]).filter((x) => x !== undefined));
    text = {
      vocabSize: tok[0]!,
      hiddenSize: tok[1]!,
      maxPositionEmbeddings: need(`${T}positional_embedding`)[0]!,
      intermediateSize: need(`${T}transformer.resblocks.0.mlp.c_fc.weight`)[0]!,
      layersInFile: layers.size,
    };
  }
  return {
    unet: {
      inChannels: convIn[1]!,
      outChannels: convOut[0]!,
      blockOutChannels,
      layersPerBlock: segments.map((s) => s.length),
      downBlockTypes,
      crossAttentionDim,
      useLinearProjection,
    },
    vae: { inChannels: vaeConvIn[1]!, blockOutChannels: vaeWidths, layersPerBlock: vaeBlocks.size, latentChannels: quant[0]! / 2 },
    textEncoder: text,
  };
}

/**
 * Compares diffusers configs (raw JSON, e.g. {@link DetectedSingleFile.configs} or a folder's
 * config.json files) with the sizes an LDM checkpoint's shapes imply, and returns one readable line per
 * disagreement (empty when they agree), e.g. `unet: block_out_channels is [320,640,1280,1280] in the
 * config but [32,64,64,64] in the checkpoint`. Use it to fail early with a short message instead of a
 * list of every mis-shaped key. `textEncoderKind` decides how the stored layer count is read: OpenCLIP
 * checkpoints may hold more layers than the config uses (SD 2.x: 24 stored, 23 used).
 */
export function singleFileConfigMismatches(
  dims: LdmDimensions,
  configs: Pick<BuiltinConfigSet, 'unet' | 'vae' | 'textEncoder'>,
  textEncoderKind: LdmTextEncoderKind,
): string[] {
  const out: string[] = [];
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  const cmp = (component: string, field: string, configValue: unknown, fileValue: unknown): void => {
    if (!same(configValue, fileValue)) {
      out.push(`${component}: ${field} is ${JSON.stringify(configValue)} in the config but ${JSON.stringify(fileValue)} in the checkpoint`);
    }
  };
  const u = configs.unet;
  const n = dims.unet.blockOutChannels.length;
  const perBlock = (v: unknown, def: unknown): unknown => (Array.isArray(v) ? v : Array(n).fill(v ?? def));
  cmp('unet', 'block_out_channels', u.block_out_channels, dims.unet.blockOutChannels);
  cmp('unet', 'layers_per_block', perBlock(u.layers_per_block, 2), dims.unet.layersPerBlock);
  cmp('unet', 'down_block_types', u.down_block_types, dims.unet.downBlockTypes);
  cmp('unet', 'in_channels', u.in_channels ?? 4, dims.unet.inChannels);
  cmp('unet', 'out_channels', u.out_channels ?? 4, dims.unet.outChannels);
  if (dims.unet.crossAttentionDim !== null) {
    const c = u.cross_attention_dim ?? 1280;
    cmp('unet', 'cross_attention_dim', Array.isArray(c) ? c[0] : c, dims.unet.crossAttentionDim);
  }
  if (dims.unet.useLinearProjection !== null) cmp('unet', 'use_linear_projection', u.use_linear_projection ?? false, dims.unet.useLinearProjection);
  const v = configs.vae;
  cmp('vae', 'block_out_channels', v.block_out_channels, dims.vae.blockOutChannels);
  cmp('vae', 'layers_per_block', v.layers_per_block ?? 1, dims.vae.layersPerBlock);
  cmp('vae', 'latent_channels', v.latent_channels ?? 4, dims.vae.latentChannels);
  cmp('vae', 'in_channels', v.in_channels ?? 3, dims.vae.inChannels);
  const t = configs.textEncoder;
  const d = CLIP_DEFAULTS_JSON;
  cmp('text_encoder', 'vocab_size', t.vocab_size ?? d.vocab_size, dims.textEncoder.vocabSize);
  cmp('text_encoder', 'hidden_size', t.hidden_size ?? d.hidden_size, dims.textEncoder.hiddenSize);
  cmp('text_encoder', 'intermediate_size', t.intermediate_size ?? d.intermediate_size, dims.textEncoder.intermediateSize);
  cmp('text_encoder', 'max_position_embeddings', t.max_position_embeddings ?? d.max_position_embeddings, dims.textEncoder.maxPositionEmbeddings);
  const layers = (t.num_hidden_layers ?? d.num_hidden_layers) as number;
  if (textEncoderKind === 'clip') cmp('text_encoder', 'num_hidden_layers', layers, dims.textEncoder.layersInFile);
  else if (layers > dims.textEncoder.layersInFile) {
    out.push(`text_encoder: num_hidden_layers is ${layers} in the config but the checkpoint holds only ${dims.textEncoder.layersInFile} resblocks`);
  }
  return out;
}

const CLIP_DEFAULTS_JSON = { vocab_size: 49408, hidden_size: 512, intermediate_size: 2048, max_position_embeddings: 77, num_hidden_layers: 12 };
