// The diffusers configs of the models single-file (LDM / CompVis) checkpoints are detected as: SD 1.5 and SD 2.1,
// as the raw JSON of their hub folders (see single-file.ts for detection and loading).

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
