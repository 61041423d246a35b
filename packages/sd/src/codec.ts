import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/**
 * What the latent codec needs of a pipeline: the VAE (NHWC; images in [−1, 1]; latents unscaled) and the latent
 * scaling factor. {@link StableDiffusion} satisfies it; so does any structural stand-in (tests, a translator's
 * teacher).
 */
export interface LatentCodecModel {
  readonly vae: {
    encode(image: tf.Tensor4D): { mean: tf.Tensor4D; std?: tf.Tensor4D };
    decode(latents: tf.Tensor4D): tf.Tensor4D;
  };
  readonly schedule: { readonly scalingFactor: number };
}

function scalingOf(model: LatentCodecModel, who: string): number {
  const s = model?.schedule?.scalingFactor;
  if (typeof s !== 'number' || !Number.isFinite(s) || s <= 0) {
    throw new InvalidArgumentError(`${who}: schedule.scalingFactor must be a positive number, got ${s}`);
  }
  return s;
}

/**
 * Image → scaled latent: `vae.encode(image).mean × scalingFactor` (the deterministic encoding of the DDS notebook).
 * `image` is `[B, H, W, 3]` in [−1, 1]; the result `[B, H/8, W/8, C]`. Every loop that encodes pictures (editing,
 * translation, training data) uses this one. The caller owns the result.
 */
export function imageToLatents(model: LatentCodecModel, image: tf.Tensor4D): tf.Tensor4D {
  const s = scalingOf(model, 'imageToLatents');
  return tf.tidy(() => {
    const { mean } = model.vae.encode(image);
    return tf.mul(mean, s) as tf.Tensor4D;
  });
}

/**
 * Scaled latent → image in [0, 1]: `vae.decode(latents / scalingFactor)`, mapped by `x/2 + 0.5` and clamped.
 * `latents` is `[B, h, w, C]`; the result `[B, 8h, 8w, 3]`. The caller owns the result.
 */
export function latentsToImage(model: LatentCodecModel, latents: tf.Tensor4D): tf.Tensor4D {
  const s = scalingOf(model, 'latentsToImage');
  return tf.tidy(() => {
    const x = model.vae.decode(tf.div(latents, s) as tf.Tensor4D);
    return tf.clipByValue(tf.add(tf.mul(x, 0.5), 0.5), 0, 1) as tf.Tensor4D;
  });
}

/**
 * A pipeline's native picture size in pixels, diffusers' default: the UNet's `sample_size` (64 when absent) × the
 * VAE's downscale factor — 512 for SD 1.x, 64 for the embedded toy model.
 */
export function nativeImageSize(model: { readonly configs: { readonly unet: { readonly sampleSize: number | null } }; readonly vaeScaleFactor: number }): number {
  return (model.configs.unet.sampleSize ?? 64) * model.vaeScaleFactor;
}
