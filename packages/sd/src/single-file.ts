// Single-file (original LDM / CompVis) Stable Diffusion checkpoints: model-type detection, built-in
// diffusers configs, and the key mapping LDM → diffusers for the UNet, the VAE and the text encoder,
// reimplemented from diffusers' loaders/single_file_utils.py (convert_ldm_unet_checkpoint,
// convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint,
// infer_diffusers_model_type). The mappings are pure functions of the key list and the diffusers
// config; `singleFileSources` turns them into lazily-read StateDictSources for `loadStateDict`.
import type { StateDictSource } from '@ddsjs/nn';
import { KeyMapping, MappedTensor, mappedSource } from './sources';
import { InvalidArgumentError, ModelFormatError } from '@ddsjs/safetensors';

/** Key prefix of the UNet in an LDM checkpoint. */
export const LDM_UNET_PREFIX = 'model.diffusion_model.';
/** Key prefix of the VAE (first stage model) in an LDM checkpoint. */
export const LDM_VAE_PREFIX = 'first_stage_model.';
/** Key prefix of an SD 1.x text encoder (transformers CLIPTextModel) in an LDM checkpoint. */
export const LDM_CLIP_PREFIX = 'cond_stage_model.transformer.';
/** Key prefix of an SD 2.x text encoder (OpenCLIP ViT-H text tower) in an LDM checkpoint. */
export const LDM_OPEN_CLIP_PREFIX = 'cond_stage_model.model.';

// ---------------------------------------------------------------------------------------------
// Built-in configs
// ---------------------------------------------------------------------------------------------

/** Raw diffusers/transformers JSON of one model's components, as in its hub folder. */
export interface BuiltinConfigSet {
  /** `unet/config.json`. */
  unet: Record<string, unknown>;
  /** `vae/config.json`. */
  vae: Record<string, unknown>;
  /** `text_encoder/config.json`. */
  textEncoder: Record<string, unknown>;
  /** `scheduler/scheduler_config.json`. */
  scheduler: Record<string, unknown>;
  /**
   * The parts of `tokenizer/tokenizer_config.json` that differ between models: SD 1.x pads with
   * `<|endoftext|>` (49407), SD 2.x with `!` (id 0). Vocabulary and merges are the same CLIP BPE.
   */
  tokenizer: { pad_token: string; model_max_length: number; do_lower_case: boolean };
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

const SD_DOWN_BLOCKS = ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'];
const SD_UP_BLOCKS = ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'];

/**
 * The diffusers configs of the models single-file checkpoints are detected as (the hub folders
 * `runwayml/stable-diffusion-v1-5` and `stabilityai/stable-diffusion-2-1`, which diffusers'
 * `from_single_file` fetches for model types `v1` and `v2`), as raw JSON objects. Treat as read-only.
 * `sd21` is the 768-pixel v-prediction model; SD 2.x-base (512, epsilon) checkpoints use the same
 * network config with `prediction_type: 'epsilon'` (see {@link detectSingleFileModel}).
 */
export const BUILTIN_CONFIGS: Readonly<Record<'sd15' | 'sd21', BuiltinConfigSet>> = deepFreeze({
  sd15: {
    unet: {
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.6.0',
      act_fn: 'silu',
      attention_head_dim: 8,
      block_out_channels: [320, 640, 1280, 1280],
      center_input_sample: false,
      cross_attention_dim: 768,
      down_block_types: SD_DOWN_BLOCKS,
      downsample_padding: 1,
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 2,
      mid_block_scale_factor: 1,
      norm_eps: 1e-5,
      norm_num_groups: 32,
      out_channels: 4,
      sample_size: 64,
      up_block_types: SD_UP_BLOCKS,
    },
    vae: {
      _class_name: 'AutoencoderKL',
      _diffusers_version: '0.6.0',
      act_fn: 'silu',
      block_out_channels: [128, 256, 512, 512],
      down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
      in_channels: 3,
      latent_channels: 4,
      layers_per_block: 2,
      norm_num_groups: 32,
      out_channels: 3,
      sample_size: 512,
      up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    },
    textEncoder: {
      _name_or_path: 'openai/clip-vit-large-patch14',
      architectures: ['CLIPTextModel'],
      attention_dropout: 0.0,
      bos_token_id: 0,
      dropout: 0.0,
      eos_token_id: 2,
      hidden_act: 'quick_gelu',
      hidden_size: 768,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: 3072,
      layer_norm_eps: 1e-5,
      max_position_embeddings: 77,
      model_type: 'clip_text_model',
      num_attention_heads: 12,
      num_hidden_layers: 12,
      pad_token_id: 1,
      projection_dim: 768,
      torch_dtype: 'float32',
      vocab_size: 49408,
    },
    scheduler: {
      _class_name: 'PNDMScheduler',
      _diffusers_version: '0.6.0',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    },
    tokenizer: { pad_token: '<|endoftext|>', model_max_length: 77, do_lower_case: true },
  },
  sd21: {
    unet: {
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.10.0.dev0',
      act_fn: 'silu',
      attention_head_dim: [5, 10, 20, 20],
      block_out_channels: [320, 640, 1280, 1280],
      center_input_sample: false,
      cross_attention_dim: 1024,
      down_block_types: SD_DOWN_BLOCKS,
      downsample_padding: 1,
      dual_cross_attention: false,
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 2,
      mid_block_scale_factor: 1,
      norm_eps: 1e-5,
      norm_num_groups: 32,
      num_class_embeds: null,
      only_cross_attention: false,
      out_channels: 4,
      sample_size: 96,
      up_block_types: SD_UP_BLOCKS,
      upcast_attention: true,
      use_linear_projection: true,
    },
    vae: {
      _class_name: 'AutoencoderKL',
      _diffusers_version: '0.10.0.dev0',
      act_fn: 'silu',
      block_out_channels: [128, 256, 512, 512],
      down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
      in_channels: 3,
      latent_channels: 4,
      layers_per_block: 2,
      norm_num_groups: 32,
      out_channels: 3,
      sample_size: 768,
      up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    },
    textEncoder: {
      _name_or_path: 'hf-models/stable-diffusion-v2-768x768/text_encoder',
      architectures: ['CLIPTextModel'],
      attention_dropout: 0.0,
      bos_token_id: 0,
      dropout: 0.0,
      eos_token_id: 2,
      hidden_act: 'gelu',
      hidden_size: 1024,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: 4096,
      layer_norm_eps: 1e-5,
      max_position_embeddings: 77,
      model_type: 'clip_text_model',
      num_attention_heads: 16,
      num_hidden_layers: 23,
      pad_token_id: 1,
      projection_dim: 512,
      torch_dtype: 'float32',
      vocab_size: 49408,
    },
    scheduler: {
      _class_name: 'DDIMScheduler',
      _diffusers_version: '0.8.0',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      clip_sample: false,
      num_train_timesteps: 1000,
      prediction_type: 'v_prediction',
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
    },
    tokenizer: { pad_token: '!', model_max_length: 77, do_lower_case: true },
  },
});

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
// Key mappings
// ---------------------------------------------------------------------------------------------

/** What the UNet mapping needs of the diffusers UNet config (a parsed `UNet2DConditionConfig` fits). */
export interface LdmUnetLayout {
  /** Resnets per down block (a number for all blocks, or one per down block). Up blocks have one more. */
  layersPerBlock: number | readonly number[];
  /** One entry per down block (only the count is used). */
  blockOutChannels: readonly number[];
}

/** What the VAE mapping needs of the diffusers VAE config (a parsed `AutoencoderKLConfig` fits). */
export interface LdmVaeLayout {
  /** One entry per decoder up block (only the count is used: LDM numbers them in reverse). */
  upBlockTypes: readonly string[];
}

const identity = (from: string): MappedTensor => ({ from });

function renameResnet(suffix: string): string {
  return suffix
    .replace('in_layers.0', 'norm1')
    .replace('in_layers.2', 'conv1')
    .replace('out_layers.0', 'norm2')
    .replace('out_layers.3', 'conv2')
    .replace('emb_layers.1', 'time_emb_proj')
    .replace('skip_connection', 'conv_shortcut');
}

/**
 * Maps the UNet keys of an LDM checkpoint (`model.diffusion_model.*`) to diffusers
 * `UNet2DConditionModel` keys, as diffusers' `convert_ldm_unet_checkpoint` (non-EMA weights):
 * `time_embed.{0,2}` → `time_embedding.linear_{1,2}`, `input_blocks.0.0` → `conv_in`,
 * `input_blocks.N.0` → `down_blocks.b.resnets.j` / `input_blocks.N.0.op` → `down_blocks.b.downsamplers.0.conv`,
 * `input_blocks.N.1` → `down_blocks.b.attentions.j`, `middle_block.{0,1,2}` → `mid_block.{resnets.0,attentions.0,resnets.1}`,
 * `output_blocks.N.0` → `up_blocks.b.resnets.j`, `output_blocks.N.1` → `up_blocks.b.attentions.j`,
 * `output_blocks.N.{1,2}.conv` → `up_blocks.b.upsamplers.0.conv`, `out.{0,2}` → `conv_norm_out`/`conv_out`,
 * with resnet renames (`in_layers.0` → `norm1`, `in_layers.2` → `conv1`, `out_layers.{0,3}` → `norm2`/`conv2`,
 * `emb_layers.1` → `time_emb_proj`, `skip_connection` → `conv_shortcut`). Block b and layer j of an
 * LDM index follow from `layersPerBlock` (down blocks: lpb resnets + a downsampler except the last;
 * up blocks: lpb + 1 layers). No tensor changes shape.
 *
 * Keys outside `model.diffusion_model.` are ignored; keys inside it that no rule covers are kept
 * under their full LDM name, so that strict loading reports them as unexpected.
 * Returns presented (diffusers) key → stored (LDM) key.
 */
export function convertLdmUnetKeys(keys: readonly string[], config: LdmUnetLayout): KeyMapping {
  const nDown = config.blockOutChannels.length;
  const lpbAt = (b: number): number => {
    const l = config.layersPerBlock;
    const v = typeof l === 'number' ? l : l[b];
    if (v === undefined || !Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`convertLdmUnetKeys: invalid layersPerBlock ${JSON.stringify(l)}`);
    return v;
  };
  // LDM input_blocks index → (down block, slot): slot j < lpb is resnet/attention j, 'down' the downsampler.
  const inputs = new Map<number, { block: number; slot: number | 'down' }>();
  let idx = 1;
  for (let b = 0; b < nDown; b++) {
    for (let j = 0; j < lpbAt(b); j++) inputs.set(idx++, { block: b, slot: j });
    if (b < nDown - 1) inputs.set(idx++, { block: b, slot: 'down' });
  }
  // LDM output_blocks index → (up block, layer).
  const outputs = new Map<number, { block: number; layer: number }>();
  idx = 0;
  for (let u = 0; u < nDown; u++) {
    const n = lpbAt(nDown - 1 - u) + 1;
    for (let j = 0; j < n; j++) outputs.set(idx++, { block: u, layer: j });
  }
  const fixed: Record<string, string> = {
    'time_embed.0': 'time_embedding.linear_1',
    'time_embed.2': 'time_embedding.linear_2',
    'input_blocks.0.0': 'conv_in',
    'out.0': 'conv_norm_out',
    'out.2': 'conv_out',
  };
  const out: KeyMapping = new Map();
  const put = (diffusers: string, ldmKey: string): void => {
    if (out.has(diffusers)) {
      throw new InvalidArgumentError(`convertLdmUnetKeys: '${ldmKey}' and '${out.get(diffusers)!.from}' both map to '${diffusers}'`);
    }
    out.set(diffusers, identity(ldmKey));
  };
  for (const key of keys) {
    if (!key.startsWith(LDM_UNET_PREFIX)) continue;
    const k = key.slice(LDM_UNET_PREFIX.length);
    const param = /^(.*)\.(weight|bias)$/.exec(k);
    let mapped: string | null = null;
    if (param && fixed[param[1]!] !== undefined) mapped = `${fixed[param[1]!]}.${param[2]}`;
    let m: RegExpExecArray | null;
    if (!mapped && (m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k))) {
      const at = inputs.get(Number(m[1]));
      const sub = Number(m[2]);
      const rest = m[3]!;
      if (at && at.slot === 'down' && sub === 0 && rest.startsWith('op.')) {
        mapped = `down_blocks.${at.block}.downsamplers.0.conv.${rest.slice(3)}`;
      } else if (at && at.slot !== 'down' && sub === 0) {
        mapped = `down_blocks.${at.block}.resnets.${at.slot}.${renameResnet(rest)}`;
      } else if (at && at.slot !== 'down' && sub === 1) {
        mapped = `down_blocks.${at.block}.attentions.${at.slot}.${rest}`;
      }
    } else if (!mapped && (m = /^middle_block\.(\d+)\.(.+)$/.exec(k))) {
      const sub = Number(m[1]);
      if (sub === 0 || sub === 2) mapped = `mid_block.resnets.${sub / 2}.${renameResnet(m[2]!)}`;
      else if (sub === 1) mapped = `mid_block.attentions.0.${m[2]}`;
    } else if (!mapped && (m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k))) {
      const at = outputs.get(Number(m[1]));
      const sub = Number(m[2]);
      const rest = m[3]!;
      if (at && sub === 0) mapped = `up_blocks.${at.block}.resnets.${at.layer}.${renameResnet(rest)}`;
      else if (at && (sub === 1 || sub === 2) && rest.startsWith('conv.')) {
        mapped = `up_blocks.${at.block}.upsamplers.0.conv.${rest.slice(5)}`;
      } else if (at && sub === 1) mapped = `up_blocks.${at.block}.attentions.${at.layer}.${rest}`;
    }
    put(mapped ?? key, key);
  }
  return out;
}

const VAE_FIXED: Record<string, string> = {
  'encoder.conv_in': 'encoder.conv_in',
  'encoder.conv_out': 'encoder.conv_out',
  'encoder.norm_out': 'encoder.conv_norm_out',
  'decoder.conv_in': 'decoder.conv_in',
  'decoder.conv_out': 'decoder.conv_out',
  'decoder.norm_out': 'decoder.conv_norm_out',
  quant_conv: 'quant_conv',
  post_quant_conv: 'post_quant_conv',
};

const VAE_ATTN: Record<string, string> = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };

/**
 * Maps the VAE keys of an LDM checkpoint (`first_stage_model.*`) to diffusers `AutoencoderKL` keys, as
 * diffusers' `convert_ldm_vae_checkpoint`: `{encoder,decoder}.{conv_in,conv_out}` unchanged,
 * `norm_out` → `conv_norm_out`, `encoder.down.i.block.j` → `encoder.down_blocks.i.resnets.j`,
 * `encoder.down.i.downsample.conv` → `encoder.down_blocks.i.downsamplers.0.conv`,
 * `decoder.up.{n-1-i}.block.j` → `decoder.up_blocks.i.resnets.j` (LDM numbers the decoder's up blocks
 * from the lowest resolution's opposite end), `decoder.up.{n-1-i}.upsample.conv` →
 * `decoder.up_blocks.i.upsamplers.0.conv`, `mid.block_{1,2}` → `mid_block.resnets.{0,1}`,
 * `nin_shortcut` → `conv_shortcut`, `mid.attn_1.{norm,q,k,v,proj_out}` →
 * `mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}` with conv-shaped weights `[C,C,1,1]`
 * presented as linear `[C,C]` (the `'squeeze'` transform). `quant_conv`/`post_quant_conv` unchanged.
 *
 * Keys outside `first_stage_model.` are ignored; unmatched keys inside it keep their full LDM name
 * (strict loading then reports them). Returns presented (diffusers) key → stored key + transform.
 */
export function convertLdmVaeKeys(keys: readonly string[], config: LdmVaeLayout): KeyMapping {
  const nUp = config.upBlockTypes.length;
  const out: KeyMapping = new Map();
  for (const key of keys) {
    if (!key.startsWith(LDM_VAE_PREFIX)) continue;
    const k = key.slice(LDM_VAE_PREFIX.length);
    let mapped: string | null = null;
    let transform: MappedTensor['transform'];
    let m: RegExpExecArray | null;
    const param = /^(.*)\.(weight|bias)$/.exec(k);
    if (param && VAE_FIXED[param[1]!] !== undefined) mapped = `${VAE_FIXED[param[1]!]}.${param[2]}`;
    else if ((m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(k))) {
      mapped = `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${m[3]!.replace('nin_shortcut', 'conv_shortcut')}`;
    } else if ((m = /^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$/.exec(k))) {
      mapped = `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`;
    } else if ((m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(k)) && Number(m[1]) < nUp) {
      mapped = `decoder.up_blocks.${nUp - 1 - Number(m[1])}.resnets.${m[2]}.${m[3]!.replace('nin_shortcut', 'conv_shortcut')}`;
    } else if ((m = /^decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)$/.exec(k)) && Number(m[1]) < nUp) {
      mapped = `decoder.up_blocks.${nUp - 1 - Number(m[1])}.upsamplers.0.conv.${m[2]}`;
    } else if ((m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(k))) {
      mapped = `${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${m[3]!.replace('nin_shortcut', 'conv_shortcut')}`;
    } else if ((m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(k))) {
      mapped = `${m[1]}.mid_block.attentions.0.${VAE_ATTN[m[2]!]}.${m[3]}`;
      if (m[2] !== 'norm' && m[3] === 'weight') transform = { kind: 'squeeze' };
    }
    const name = mapped ?? key;
    if (out.has(name)) throw new InvalidArgumentError(`convertLdmVaeKeys: '${key}' and '${out.get(name)!.from}' both map to '${name}'`);
    out.set(name, transform ? { from: key, transform } : { from: key });
  }
  return out;
}

/**
 * Maps an SD 1.x text encoder (`cond_stage_model.transformer.*`, a transformers CLIPTextModel state
 * dict) to transformers keys by removing the prefix, as diffusers' `convert_ldm_clip_checkpoint`; the
 * `text_model.embeddings.position_ids` buffer is dropped. Returns presented key → stored key.
 */
export function convertLdmClipKeys(keys: readonly string[]): KeyMapping {
  const out: KeyMapping = new Map();
  for (const key of keys) {
    if (!key.startsWith(LDM_CLIP_PREFIX)) continue;
    const k = key.slice(LDM_CLIP_PREFIX.length);
    if (k === 'text_model.embeddings.position_ids') continue;
    out.set(k, identity(key));
  }
  return out;
}

/** What the OpenCLIP mapping needs of the text encoder config (a `CLIPTextConfig` fits). */
export interface LdmOpenClipLayout {
  /** Layers the diffusers text encoder has (23 for SD 2.x: the checkpoint's last resblock is dropped). */
  numHiddenLayers: number;
}

const OPEN_CLIP_RENAMES: [string, string][] = [
  ['resblocks.', 'text_model.encoder.layers.'],
  ['ln_1', 'layer_norm1'],
  ['ln_2', 'layer_norm2'],
  ['.c_fc.', '.fc1.'],
  ['.c_proj.', '.fc2.'],
  ['.attn', '.self_attn'],
];

/**
 * Maps an SD 2.x OpenCLIP text tower (`cond_stage_model.model.*`) to transformers CLIPTextModel keys,
 * as diffusers' `convert_open_clip_checkpoint`: `positional_embedding` →
 * `text_model.embeddings.position_embedding.weight`, `token_embedding.weight` →
 * `text_model.embeddings.token_embedding.weight`, `ln_final` → `text_model.final_layer_norm`,
 * `transformer.resblocks.i.{ln_1,ln_2,mlp.c_fc,mlp.c_proj,attn.out_proj}` →
 * `text_model.encoder.layers.i.{layer_norm1,layer_norm2,mlp.fc1,mlp.fc2,self_attn.out_proj}`, and the fused
 * `attn.in_proj_{weight,bias}` `[3D, …]` split into `self_attn.{q,k,v}_proj` (thirds along axis 0, the
 * `'chunk'` transform). Resblocks with index ≥ `numHiddenLayers` (SD 2.x's 24th), `text_projection`,
 * `logit_scale` and `attn_mask` are dropped, as diffusers does for a CLIPTextModel.
 * Returns presented key → stored key + transform.
 */
export function convertOpenClipKeys(keys: readonly string[], config: LdmOpenClipLayout): KeyMapping {
  const out: KeyMapping = new Map();
  const P = LDM_OPEN_CLIP_PREFIX;
  const top: Record<string, string> = {
    positional_embedding: 'text_model.embeddings.position_embedding.weight',
    'token_embedding.weight': 'text_model.embeddings.token_embedding.weight',
    'ln_final.weight': 'text_model.final_layer_norm.weight',
    'ln_final.bias': 'text_model.final_layer_norm.bias',
  };
  const dropped = new Set(['text_projection', 'logit_scale', 'attn_mask']);
  for (const key of keys) {
    if (!key.startsWith(P)) continue;
    const k = key.slice(P.length);
    if (top[k] !== undefined) {
      out.set(top[k]!, identity(key));
      continue;
    }
    if (dropped.has(k)) continue;
    const m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(k);
    if (!m) {
      out.set(key, identity(key)); // unknown: strict loading reports it
      continue;
    }
    if (Number(m[1]) >= config.numHiddenLayers) continue;
    let name = k.slice('transformer.'.length);
    for (const [from, to] of OPEN_CLIP_RENAMES) name = name.replace(from, to);
    const fused = /^(.*)\.in_proj_(weight|bias)$/.exec(name);
    if (fused) {
      ['q_proj', 'k_proj', 'v_proj'].forEach((p, index) => {
        out.set(`${fused[1]}.${p}.${fused[2]}`, { from: key, transform: { kind: 'chunk', index, chunks: 3 } });
      });
    } else {
      out.set(name, identity(key));
    }
  }
  return out;
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
