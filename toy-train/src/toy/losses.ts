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
 * Weighted reconstruction MSE of `y` against `x` (both NHWC, same shape): each pixel weighs `shapeWeight` where
 * `masks` `[B, H, W, 1]` is 1 and 1 where it is 0, normalised by the mean weight so the weights average 1. A scalar
 * the caller owns.
 */
export function weightedReconstruction(y: tf.Tensor4D, x: tf.Tensor4D, masks: tf.Tensor4D, shapeWeight: number): tf.Scalar {
  return tf.tidy(() => {
    const pixelWeight = tf.add(1, tf.mul(masks, shapeWeight - 1));
    return tf.div(tf.mean(tf.mul(tf.squaredDifference(y, x), pixelWeight)), tf.mean(pixelWeight)) as tf.Scalar;
  });
}

/** Mean over elements of KL(N(mean, exp(logvar)) ‖ N(0, 1)) = ½ (mean² + exp(logvar) − logvar − 1). A scalar the caller owns. */
export function klToStandardNormal(mean: tf.Tensor4D, logvar: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.mul(0.5, tf.mean(tf.sub(tf.add(tf.square(mean), tf.exp(logvar)), tf.add(logvar, 1)))) as tf.Scalar);
}

/**
 * MSE between latent channels 0–2 of `mean` `[B, h, w, C ≥ 3]` and 2 × the mean RGB of each latent cell's pixels of
 * `x` `[B, H, W, 3]` (H / h pixels a side): ties the latent to the pictures' colours. A scalar the caller owns.
 */
export function latentColourTerm(mean: tf.Tensor4D, x: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => {
    const [batch, lh, lw] = mean.shape;
    const cells = blockMean(x, x.shape[1] / lh);
    const first3 = tf.slice(mean, [0, 0, 0, 0], [batch, lh, lw, 3]);
    return tf.mean(tf.squaredDifference(first3, tf.mul(cells, 2))) as tf.Scalar;
  });
}

/**
 * MSE between latent channel 3 of `mean` `[B, h, w, C ≥ 4]` and `level` · (2 · coverage − 1), the coverage being the
 * share of each latent cell's pixels that `masks` `[B, H, W, 1]` marks as shape: +level on the shape, −level on the
 * background. A scalar the caller owns.
 */
export function latentMaskTerm(mean: tf.Tensor4D, masks: tf.Tensor4D, level: number): tf.Scalar {
  return tf.tidy(() => {
    const [batch, lh, lw] = mean.shape;
    const cov = blockMean(masks, masks.shape[1] / lh);
    const ch3 = tf.slice(mean, [0, 0, 0, 3], [batch, lh, lw, 1]);
    const want = tf.mul(tf.sub(tf.mul(cov, 2), 1), level);
    return tf.mean(tf.squaredDifference(ch3, want)) as tf.Scalar;
  });
}

/** MSE of the 4×4-pixel block means of `y` and `x` (NHWC, sides divisible by 4): the pictures' flat colours. A scalar the caller owns. */
export function lowFrequencyTerm(y: tf.Tensor4D, x: tf.Tensor4D): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(blockMean(y, 4), blockMean(x, 4))) as tf.Scalar);
}

/**
 * The VAE training loss of pictures `x` `[B, H, W, 3]` in [−1, 1] with shape masks `masks` `[B, H, W, 1]`, the
 * posterior sample drawn with `noiseSeed`:
 * - {@link weightedReconstruction}: MSE with shape pixels weighing `shapeWeight` times the background's (the shape is
 *   ~10% of the picture, and its colour is what edits change);
 * - `klWeight` · {@link klToStandardNormal};
 * - `vaeLatentColourWeight` · {@link latentColourTerm}: without it the encoder collapsed colours to ~2 dims
 *   (red ≈ orange, blue ≈ green latents);
 * - `vaeLatentMaskWeight` · {@link latentMaskTerm} (level `vaeLatentMaskLevel`);
 * - `vaeLowFreqWeight` · {@link lowFrequencyTerm}: flat colours are what this world is made of, and per-pixel MSE
 *   learned them slowly.
 * A scalar the caller owns (intermediates are freed when called inside `tf.variableGrads` or `tf.tidy`).
 */
export function vaeLoss(vae: AutoencoderKL, x: tf.Tensor4D, masks: tf.Tensor4D, noiseSeed: number, w: VaeLossWeights): tf.Scalar {
  const { mean, std, logvar } = vae.encode(x);
  const z = tf.add(mean, tf.mul(std, tf.randomNormal(mean.shape, 0, 1, 'float32', tfSeed(noiseSeed)))) as tf.Tensor4D;
  const y = vae.decode(z);
  let loss = tf.add(weightedReconstruction(y, x, masks, w.shapeWeight), tf.mul(klToStandardNormal(mean, logvar), w.klWeight));
  if (w.vaeLatentColourWeight > 0) loss = tf.add(loss, tf.mul(latentColourTerm(mean, x), w.vaeLatentColourWeight));
  if (w.vaeLatentMaskWeight > 0) loss = tf.add(loss, tf.mul(latentMaskTerm(mean, masks, w.vaeLatentMaskLevel), w.vaeLatentMaskWeight));
  if (w.vaeLowFreqWeight > 0) loss = tf.add(loss, tf.mul(lowFrequencyTerm(y, x), w.vaeLowFreqWeight));
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
