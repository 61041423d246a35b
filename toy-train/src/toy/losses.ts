// The toy model's training losses: the VAE's reconstruction, KL and colour / latent terms, and the UNet's
// ε-prediction loss on a pool batch.
import * as tf from '@tensorflow/tfjs';
import { tfSeed } from '@ddsjs/nn';
import { addNoise, type AutoencoderKL, type NoiseSchedule, type UNet2DConditionModel } from '@ddsjs/sd';

/** Means of `f×f` pixel blocks of NHWC `t` (by reshape: wasm has no AvgPool gradient). */
export function blockMean(t: tf.Tensor4D, f: number): tf.Tensor4D {
  const [n, h, w, c] = t.shape;
  return tf.mean(t.reshape([n, h / f, f, w / f, f, c]), [2, 4]) as tf.Tensor4D;
}

/** The weights of the VAE loss terms (see {@link vaeLoss}). */
export interface VaeLossWeights {
  /** Weight of shape pixels relative to background pixels in the reconstruction term. */
  shapeWeight: number;
  /** Weight of the mean per-element KL term. */
  klWeight: number;
  /** Weight of the 4×4 block-mean colour term (0: off). */
  vaeLowFreqWeight: number;
  /** Weight of the latent colour term (0: off). */
  vaeLatentColourWeight: number;
  /** Weight of the latent foreground term (0: off). */
  vaeLatentMaskWeight: number;
  /** The latent foreground term's level. */
  vaeLatentMaskLevel: number;
}

/**
 * The VAE training loss of pictures `x` `[B, H, W, 3]` in [−1, 1] with shape masks `masks` `[B, H, W, 1]`, the
 * posterior sample drawn with `noiseSeed`:
 * - reconstruction: MSE with shape pixels weighing `shapeWeight` times the background's, normalised so the weights
 *   average 1 (the shape is ~10% of the picture, and its colour is what edits change);
 * - `klWeight` · mean KL(q(z|x) ‖ N(0, 1));
 * - `vaeLatentColourWeight` · MSE(latent channels 0–2 of the mean, 2 × each latent cell's mean RGB): without it the
 *   encoder collapsed colours to ~2 dims (red ≈ orange, blue ≈ green latents);
 * - `vaeLatentMaskWeight` · MSE(latent channel 3 of the mean, `vaeLatentMaskLevel` · (2·coverage − 1));
 * - `vaeLowFreqWeight` · MSE of 4×4-pixel block means of reconstruction and picture: flat colours are what this world
 *   is made of, and per-pixel MSE learned them slowly.
 * A scalar the caller owns (intermediates are freed when called inside `tf.variableGrads` or `tf.tidy`).
 */
export function vaeLoss(vae: AutoencoderKL, x: tf.Tensor4D, masks: tf.Tensor4D, noiseSeed: number, w: VaeLossWeights): tf.Scalar {
  const [batch, size] = x.shape;
  const { mean, std, logvar } = vae.encode(x);
  const z = tf.add(mean, tf.mul(std, tf.randomNormal(mean.shape, 0, 1, 'float32', tfSeed(noiseSeed)))) as tf.Tensor4D;
  const y = vae.decode(z);
  const pixelWeight = tf.add(1, tf.mul(masks, w.shapeWeight - 1));
  const rec = tf.div(tf.mean(tf.mul(tf.squaredDifference(y, x), pixelWeight)), tf.mean(pixelWeight));
  const kl = tf.mul(0.5, tf.mean(tf.sub(tf.add(tf.square(mean), tf.exp(logvar)), tf.add(logvar, 1))));
  let loss = tf.add(rec, tf.mul(kl, w.klWeight));
  if (w.vaeLatentColourWeight > 0) {
    const cells = blockMean(x, size / mean.shape[1]);
    const first3 = tf.slice(mean, [0, 0, 0, 0], [batch, mean.shape[1], mean.shape[2], 3]);
    loss = tf.add(loss, tf.mul(tf.mean(tf.squaredDifference(first3, tf.mul(cells, 2))), w.vaeLatentColourWeight));
  }
  if (w.vaeLatentMaskWeight > 0) {
    const [, lh, lw] = mean.shape;
    const cov = blockMean(masks, size / lh);
    const ch3 = tf.slice(mean, [0, 0, 0, 3], [batch, lh, lw, 1]);
    const want = tf.mul(tf.sub(tf.mul(cov, 2), 1), w.vaeLatentMaskLevel);
    loss = tf.add(loss, tf.mul(tf.mean(tf.squaredDifference(ch3, want)), w.vaeLatentMaskWeight));
  }
  if (w.vaeLowFreqWeight > 0) {
    loss = tf.add(loss, tf.mul(tf.mean(tf.squaredDifference(blockMean(y, 4), blockMean(x, 4))), w.vaeLowFreqWeight));
  }
  return loss as tf.Scalar;
}

/**
 * The UNet's inputs for one step from the encoded pool: z₀ = `scalingFactor` · (mean + std · n) of the pool pictures
 * `idx`, ε ~ N(0, 1) (plus `noiseOffset` · a per-sample, per-channel N(0, 1) when > 0), z_t = the schedule's noising
 * of z₀ at `timesteps`, and the text-table rows `ctxIdx`. Noise seeds: `noiseSeed + 1` (posterior), `noiseSeed` (ε),
 * `noiseSeed + 2` (offset). The caller owns the tensors.
 */
export function unetInputs(
  pool: { mean: tf.Tensor4D; std: tf.Tensor4D },
  ctxTable: tf.Tensor3D,
  schedule: NoiseSchedule,
  draws: { idx: number[]; ctxIdx: number[]; timesteps: number[]; noiseSeed: number },
  scalingFactor: number,
  noiseOffset: number,
): { zt: tf.Tensor4D; eps: tf.Tensor4D; ctx: tf.Tensor3D } {
  return tf.tidy(() => {
    const ids = tf.tensor1d(draws.idx, 'int32');
    const mean = tf.gather(pool.mean, ids);
    const std = tf.gather(pool.std, ids);
    const z0 = tf.mul(tf.add(mean, tf.mul(std, tf.randomNormal(mean.shape, 0, 1, 'float32', tfSeed(draws.noiseSeed + 1)))), scalingFactor);
    let eps = tf.randomNormal(z0.shape, 0, 1, 'float32', tfSeed(draws.noiseSeed));
    if (noiseOffset > 0) {
      const [B, , , C] = z0.shape;
      eps = tf.add(eps, tf.mul(tf.randomNormal([B, 1, 1, C], 0, 1, 'float32', tfSeed(draws.noiseSeed + 2)), noiseOffset));
    }
    const zt = addNoise(schedule, z0 as tf.Tensor4D, eps as tf.Tensor4D, draws.timesteps);
    const ctx = tf.gather(ctxTable, tf.tensor1d(draws.ctxIdx, 'int32')) as tf.Tensor3D;
    return { zt, eps: eps as tf.Tensor4D, ctx };
  });
}

/** The ε-prediction loss `mean((unet(z_t, t, ctx) − ε)²)`, a scalar the caller owns. */
export function unetLoss(unet: UNet2DConditionModel, inputs: { zt: tf.Tensor4D; eps: tf.Tensor4D; ctx: tf.Tensor3D }, timesteps: number[]): tf.Scalar {
  const pred = unet.forward(inputs.zt, timesteps, inputs.ctx);
  return tf.mean(tf.squaredDifference(pred, inputs.eps)) as tf.Scalar;
}
