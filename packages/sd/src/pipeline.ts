// The StableDiffusion pipeline object: the loaded components, the schedule, and the calls every loop uses.
import * as tf from '@tensorflow/tfjs';
import { tfSeed } from '@ddsjs/nn';
import { CLIPTokenizer } from './tokenizer';
import { CLIPTextModel } from './clip';
import { CLIPTextConfig } from './clip-config';
import { UNet2DConditionModel, TimestepInput } from './unet';
import { AutoencoderKL } from './vae';
import { AutoencoderKLConfig, UNet2DConditionConfig } from './config';
import { NoiseSchedule, guide, makeNoiseSchedule } from './schedule';
import type { SchedulerConfig } from './scheduler-config';
import { DDIMScheduler } from './ddim';
import { imageToLatents, latentsToImage, nativeImageSize } from './codec';
import { PipelineDefaults, resolveGenerateDefaults } from './defaults';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** Options of {@link StableDiffusion.generate}. */
export interface GenerateOptions {
  /** DDIM steps (default: the model's `generate.steps` in its `ddsjs_defaults.json`, else 50). */
  steps?: number;
  /**
   * Classifier-free guidance scale (default: the model's `generate.guidance_scale` in its `ddsjs_defaults.json`,
   * else 7.5; ≤ 1 runs the conditional branch only).
   */
  guidanceScale?: number;
  /** Negative prompt (default `""`). */
  negativePrompt?: string;
  /** Seed of the initial noise (default 0). Ignored when `latents` is given. */
  seed?: number;
  /** Image height in pixels (default: the UNet's `sample_size` × the VAE's downscale factor). */
  height?: number;
  /** Image width in pixels (default as height). */
  width?: number;
  /** Initial noise `[1,h,w,4]` NHWC (not disposed); overrides `seed`/`height`/`width`. */
  latents?: tf.Tensor4D;
  /** Called after each DDIM step; `latents` is borrowed (valid during the call only; clone it to keep it). */
  onStep?: (info: { step: number; timestep: number; total: number; latents: tf.Tensor4D }) => void;
}

/** Result of {@link StableDiffusion.generate}; the caller owns both tensors. */
export interface GenerateResult {
  /** `[1,H,W,3]` in [0, 1]. */
  image: tf.Tensor4D;
  /** The final latents `[1,h,w,4]` (scaled, as the UNet sees them). */
  latents: tf.Tensor4D;
}

/** The configs a pipeline was built from. */
export interface StableDiffusionConfigs {
  unet: UNet2DConditionConfig;
  vae: AutoencoderKLConfig;
  textEncoder: CLIPTextConfig;
  scheduler: SchedulerConfig;
}

/**
 * A loaded Stable Diffusion pipeline: tokenizer, text encoder, UNet, VAE and noise schedule, with the
 * conveniences score distillation needs. Every tensor a method returns is owned by the caller. Create it with
 * {@link loadStableDiffusion}; call {@link StableDiffusion.dispose} to free the weights.
 */
export class StableDiffusion {
  /** The noise schedule (ᾱ_t, prediction type, latent scaling factor). */
  readonly schedule: NoiseSchedule;

  constructor(
    readonly tokenizer: CLIPTokenizer,
    readonly textEncoder: CLIPTextModel,
    readonly unet: UNet2DConditionModel,
    readonly vae: AutoencoderKL,
    readonly configs: StableDiffusionConfigs,
    /** Where the model was loaded from. */
    readonly source: string,
    /**
     * The model's own defaults for the editing loop and for {@link StableDiffusion.generate}, from the folder's
     * `ddsjs_defaults.json` (see {@link DEFAULTS_FILE}); `{}` when it has none (the papers' defaults apply).
     */
    readonly defaults: PipelineDefaults = {},
  ) {
    this.schedule = makeNoiseSchedule(configs.scheduler, vae.scalingFactor);
  }

  /** Latent channels of the UNet's input. */
  get latentChannels(): number {
    return this.configs.unet.inChannels;
  }

  /** Pixels per latent cell (8 for SD). */
  get vaeScaleFactor(): number {
    return this.vae.downscaleFactor;
  }

  /** Text embeddings `[B,77,D]` of `prompt` (one string or several): tokenizer + text encoder. Caller owns the result. */
  encodePrompt(prompt: string | string[]): tf.Tensor3D {
    return tf.tidy(() => {
      const ids = this.tokenizer.encode(prompt);
      return this.textEncoder.forward(ids);
    });
  }

  /**
   * Encodes images `[B,H,W,3]` in [−1, 1] to scaled latents `mean · scalingFactor` `[B,H/8,W/8,4]` (the
   * deterministic encoding of the DDS notebook). Caller owns the result.
   */
  encodeImage(image: tf.Tensor4D): tf.Tensor4D {
    return imageToLatents(this, image);
  }

  /** Decodes scaled latents `[B,h,w,4]` to images `[B,8h,8w,3]` in [0, 1] (`x/2 + 0.5`, clamped). Caller owns the result. */
  decodeLatents(latents: tf.Tensor4D): tf.Tensor4D {
    return latentsToImage(this, latents);
  }

  /**
   * The model's native picture size in pixels: the UNet's `sample_size` × the VAE's downscale factor
   * ({@link nativeImageSize}) — 512 for SD 1.5, 768 for SD 2.1, 64 for the embedded toy model. diffusers generates
   * and edits at this size.
   */
  get nativeSize(): number {
    return nativeImageSize(this);
  }

  /** The UNet's raw prediction for `sample` at `timestep` given `context` (see UNet2DConditionModel.forward). Caller owns it. */
  predict(sample: tf.Tensor4D, timestep: TimestepInput, context: tf.Tensor3D): tf.Tensor4D {
    return this.unet.forward(sample, timestep, context);
  }

  /**
   * Text-to-image with DDIM (η = 0, diffusers' timestep spacing and `steps_offset`) and classifier-free guidance,
   * as diffusers' StableDiffusionPipeline with a DDIMScheduler. The caller owns the returned tensors.
   */
  async generate(prompt: string, options: GenerateOptions = {}): Promise<GenerateResult> {
    if (typeof prompt !== 'string') throw new InvalidArgumentError(`generate: prompt must be a string, got ${typeof prompt}`);
    const { steps: { value: steps }, guidanceScale: { value: scale } } = resolveGenerateDefaults(this.defaults, options);
    if (!Number.isInteger(steps) || steps < 1 || steps > this.schedule.numTrainTimesteps) {
      throw new InvalidArgumentError(`generate: steps must be an integer in [1, ${this.schedule.numTrainTimesteps}], got ${steps}`);
    }
    if (!Number.isFinite(scale)) throw new InvalidArgumentError(`generate: guidanceScale must be finite, got ${scale}`);
    const f = this.vaeScaleFactor;
    const height = options.height ?? this.nativeSize;
    const width = options.width ?? this.nativeSize;
    for (const [n, v] of [['height', height], ['width', width]] as const) {
      if (!Number.isInteger(v) || v < f || v % f !== 0) {
        throw new InvalidArgumentError(`generate: ${n} must be a positive multiple of ${f} pixels, got ${v}`);
      }
    }
    const cfg = scale > 1;
    const context = tf.tidy(() =>
      cfg ? this.encodePrompt([options.negativePrompt ?? '', prompt]) : this.encodePrompt(prompt),
    );
    let latents: tf.Tensor4D =
      options.latents?.clone() ??
      tf.randomNormal([1, height / f, width / f, this.latentChannels], 0, 1, 'float32', tfSeed(options.seed ?? 0));
    const ddim = new DDIMScheduler(this.configs.scheduler);
    const timesteps = ddim.setTimesteps(steps);
    try {
      for (let i = 0; i < timesteps.length; i++) {
        const t = timesteps[i];
        const next = tf.tidy(() => {
          const input = cfg ? tf.concat([latents, latents], 0) : latents;
          const out = this.unet.forward(input as tf.Tensor4D, t, context);
          let guided: tf.Tensor4D = out;
          if (cfg) {
            const [u, c] = tf.split(out, 2, 0) as tf.Tensor4D[];
            guided = guide(u, c, scale);
          }
          return ddim.step(guided, t, latents);
        });
        latents.dispose();
        latents = next;
        options.onStep?.({ step: i, timestep: t, total: timesteps.length, latents });
        await new Promise((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));
      }
      const image = this.decodeLatents(latents);
      return { image, latents };
    } catch (e) {
      latents.dispose();
      throw e;
    } finally {
      context.dispose();
    }
  }

  /** Frees every weight. The pipeline cannot be used afterwards. */
  dispose(): void {
    this.textEncoder.dispose();
    this.unet.dispose();
    this.vae.dispose();
  }
}
