// The toy model's architecture presets, as the diffusers configs of its components.
import type { RawComponentConfigs } from '@ddsjs/weights-tools';

/** Named architecture presets of {@link toyConfigs}. */
export type ToyPreset = 'toy' | 'toy16' | 'micro';

/** Every {@link ToyPreset}, for argument checking. */
export const TOY_PRESETS: readonly ToyPreset[] = ['toy', 'toy16', 'micro'];

/** What the presets of {@link toyConfigs} differ in; everything else is shared. */
interface PresetArch {
  image: number;
  vaeChannels: number[];
  vaeGroups: number;
  unetChannels: number[];
  unetGroups: number;
  /** Per UNet level, top first: cross-attention or not (the up blocks mirror it). */
  unetAttention: boolean[];
  /** Text hidden size = UNet cross-attention dim. */
  hidden: number;
  heads: number;
  textLayers: number;
}

const PRESET_ARCH: Record<ToyPreset, PresetArch> = {
  toy: { image: 64, vaeChannels: [16, 32, 64, 64], vaeGroups: 4, unetChannels: [32, 64, 64], unetGroups: 8, unetAttention: [true, true, false], hidden: 64, heads: 4, textLayers: 2 },
  toy16: { image: 64, vaeChannels: [16, 32, 64], vaeGroups: 4, unetChannels: [16, 32, 64, 64], unetGroups: 4, unetAttention: [false, true, true, false], hidden: 64, heads: 4, textLayers: 2 },
  micro: { image: 16, vaeChannels: [32, 32], vaeGroups: 8, unetChannels: [32, 32], unetGroups: 8, unetAttention: [true, false], hidden: 32, heads: 2, textLayers: 1 },
};

/**
 * The diffusers configs of a toy model (as the files `unet/config.json`, `vae/config.json`,
 * `text_encoder/config.json`, `scheduler/scheduler_config.json` hold them).
 * - `'toy'` (the shipped model): 64×64 RGB pictures; VAE `block_out_channels` [16, 32, 64, 64] (4 GroupNorm
 *   groups), one resnet per block → 8×8×4 latents (downscale 8, as SD); UNet [32, 64, 64], `layers_per_block` 1,
 *   8 GroupNorm groups, cross-attention in the two upper levels (8×8 and 4×4), 4 heads, `cross_attention_dim` 64; CLIP text model hidden 64, 2 layers, 4 heads, MLP
 *   128, the real 49408-token vocabulary; DDIM scheduler with SD's scaled_linear betas (0.00085 → 0.012, 1000 steps).
 *   GroupNorm groups are few on purpose: with one channel per group (e.g. 16 groups on 16 channels) the norm is a
 *   per-channel instance norm that erases each picture's mean colour, and a first VAE run could not reproduce
 *   background colours; SD keeps ≥ 4 channels per group (32 groups on 128–1280 channels).
 * - `'toy16'`: the same world and text encoder with **16×16×4 latents** (downscale 4): VAE [16, 32, 64] (the toy
 *   VAE without its last level); UNet [16, 32, 64, 64] with 4 GroupNorm groups — a cheap 16-channel level without
 *   attention at 16×16 on top of the toy UNet's levels (cross-attention at 8×8 and 4×4, plain at 2×2). Measured on
 *   wasm, batch 16, fwd+bwd: 2.6 s/step against the toy UNet's 2.1 s (putting the toy UNet itself at 16×16 costs
 *   6.9 s, most of it attention over 256 positions; without attention at 16×16, 3.7 s). Not shipped (yet): see
 *   docs/notes/2026-12-toy-model-log.md, "16×16 latents".
 * - `'micro'` (tests): 16×16 pictures, VAE [32, 32] → 8×8×4, UNet [32, 32], text hidden 32 with 1 layer.
 */
export function toyConfigs(preset: ToyPreset = 'toy'): RawComponentConfigs {
  if (!TOY_PRESETS.includes(preset)) throw new Error(`train-toy: --preset must be one of ${TOY_PRESETS.join(', ')}, got ${JSON.stringify(preset)}`);
  const a = PRESET_ARCH[preset];
  const { image, vaeChannels, hidden, unetChannels } = a;
  const latent = image / 2 ** (vaeChannels.length - 1);
  const down = a.unetAttention.map((x) => (x ? 'CrossAttnDownBlock2D' : 'DownBlock2D'));
  const up = [...a.unetAttention].reverse().map((x) => (x ? 'CrossAttnUpBlock2D' : 'UpBlock2D'));
  return {
    unet: {
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.35.2',
      act_fn: 'silu',
      attention_head_dim: a.heads,
      block_out_channels: unetChannels,
      center_input_sample: false,
      cross_attention_dim: hidden,
      down_block_types: down,
      downsample_padding: 1,
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 1,
      mid_block_scale_factor: 1,
      norm_eps: 1e-5,
      norm_num_groups: a.unetGroups,
      out_channels: 4,
      sample_size: latent,
      up_block_types: up,
    },
    vae: {
      _class_name: 'AutoencoderKL',
      _diffusers_version: '0.35.2',
      act_fn: 'silu',
      block_out_channels: vaeChannels,
      down_block_types: vaeChannels.map(() => 'DownEncoderBlock2D'),
      in_channels: 3,
      latent_channels: 4,
      layers_per_block: 1,
      norm_num_groups: a.vaeGroups,
      out_channels: 3,
      sample_size: image,
      scaling_factor: 0.18215,
      up_block_types: vaeChannels.map(() => 'UpDecoderBlock2D'),
    },
    textEncoder: {
      architectures: ['CLIPTextModel'],
      attention_dropout: 0.0,
      bos_token_id: 49406,
      dropout: 0.0,
      eos_token_id: 49407,
      hidden_act: 'quick_gelu',
      hidden_size: hidden,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: 2 * hidden,
      layer_norm_eps: 1e-5,
      max_position_embeddings: 77,
      model_type: 'clip_text_model',
      num_attention_heads: a.heads,
      num_hidden_layers: a.textLayers,
      pad_token_id: 49407,
      projection_dim: hidden,
      torch_dtype: 'float32',
      transformers_version: '4.57.6',
      vocab_size: 49408,
    },
    scheduler: {
      _class_name: 'DDIMScheduler',
      _diffusers_version: '0.35.2',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      clip_sample: false,
      num_train_timesteps: 1000,
      prediction_type: 'epsilon',
      set_alpha_to_one: false,
      steps_offset: 1,
      trained_betas: null,
    },
  };
}
