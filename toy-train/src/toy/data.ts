// The toy trainer's data: every picture, caption draw, timestep and noise seed is a function of (seed, phase, step),
// so a resumed run sees the batches an uninterrupted one would.
import * as tf from '@tensorflow/tfjs';
import { mixSeed } from '@ddsjs/nn';
import type { AutoencoderKL } from '@ddsjs/sd';
import { BACKGROUND_NAMES, type BackgroundName, Rng, type SceneSpec, renderScene, sampleScene } from '@ddsjs/toy-shapes';

/** Salts of the two phases' streams. */
export const PHASE_SALT = { vae: 0x5eed_0001, unet: 0x5eed_0002 } as const;

/** The toy trainer's seed mixing (`mixSeed(parts, 'fnv1a')`): every batch, pool picture and noise is drawn from it. */
export function mix(...xs: number[]): number {
  return mixSeed(xs, 'fnv1a');
}

/**
 * One scene of the UNet's training pool: `sampleScene(rng, { split: 'train', size })`, redrawn until accepted with
 * probability weight / max weight of its background (see {@link TrainToyOptions.poolBackgroundWeights}); without
 * weights exactly `sampleScene`'s draw.
 */
export function poolScene(rng: Rng, size: number, weights: Partial<Record<BackgroundName, number>> | undefined): SceneSpec {
  let spec = sampleScene(rng, { split: 'train', size });
  if (weights === undefined) return spec;
  const w = (b: BackgroundName) => weights[b] ?? 1;
  const max = Math.max(...BACKGROUND_NAMES.map(w));
  while (rng.next() * max >= w(spec.background)) spec = sampleScene(rng, { split: 'train', size });
  return spec;
}

/** A batch of world pictures as `[B,H,W,3]` in [−1, 1] and their caption indices, drawn deterministically. */
export function makeBatch(seed: number, phase: 'vae', step: number, batch: number, size: number, table: Map<string, number>, dropout: number, emptyIndex: number) {
  const rng = new Rng(mix(seed, PHASE_SALT[phase], step));
  const pixels = new Float32Array(batch * size * size * 3);
  const masks = new Float32Array(batch * size * size);
  const ctx: number[] = [];
  const timesteps: number[] = [];
  for (let b = 0; b < batch; b++) {
    const spec = sampleScene(rng, { split: 'train', size });
    const r = renderScene(spec);
    for (let i = 0; i < r.image.length; i++) pixels[b * r.image.length + i] = r.image[i] / 127.5 - 1;
    masks.set(r.mask, b * r.mask.length);
    const idx = table.get(r.caption);
    if (idx === undefined) throw new Error(`train-toy: caption '${r.caption}' missing from the text table`);
    ctx.push(rng.next() < dropout ? emptyIndex : idx);
    timesteps.push(rng.int(1000));
  }
  return { pixels, masks, ctx, timesteps, noiseSeed: mix(seed, PHASE_SALT[phase], step, 7) };
}

/** The UNet phase's picture pool, encoded once by the frozen VAE: posterior means and stds `[N, h, w, C]`, caption indices. */
export interface LatentPool {
  /** Posterior means (the caller owns them). */
  mean: tf.Tensor4D;
  /** Posterior standard deviations (the caller owns them). */
  std: tf.Tensor4D;
  /** Each picture's caption index in the text table. */
  captions: number[];
}

/**
 * Renders pool picture i = 0 … `poolSize`−1 from `Rng(mix(seed, PHASE_SALT.unet, i))` (see {@link poolScene}) and
 * encodes them with `vae` in chunks of 32, yielding to the event loop between chunks. The caller owns the tensors.
 */
export async function encodePool(
  vae: AutoencoderKL,
  seed: number,
  poolSize: number,
  size: number,
  weights: Partial<Record<BackgroundName, number>> | undefined,
  table: Map<string, number>,
): Promise<LatentPool> {
  const means: tf.Tensor4D[] = [];
  const stds: tf.Tensor4D[] = [];
  const captions: number[] = [];
  const chunk = 32;
  try {
    for (let i = 0; i < poolSize; i += chunk) {
      const n = Math.min(chunk, poolSize - i);
      const pixels = new Float32Array(n * size * size * 3);
      for (let j = 0; j < n; j++) {
        const r = renderScene(poolScene(new Rng(mix(seed, PHASE_SALT.unet, i + j)), size, weights));
        for (let k = 0; k < r.image.length; k++) pixels[j * r.image.length + k] = r.image[k] / 127.5 - 1;
        captions.push(table.get(r.caption) as number);
      }
      const x = tf.tensor4d(pixels, [n, size, size, 3]);
      const { mean, std, logvar } = vae.encode(x);
      tf.dispose([x, logvar]);
      means.push(mean);
      stds.push(std);
      await new Promise((r) => setImmediate(r));
    }
    return { mean: tf.concat(means, 0), std: tf.concat(stds, 0), captions };
  } finally {
    tf.dispose([...means, ...stds]);
  }
}

/**
 * The draws of UNet step `step` (or of step 0 every time with `fixedBatch`): per sample a pool index, a caption
 * index (`emptyIndex` with probability `dropout`) and a timestep, from `Rng(mix(seed, PHASE_SALT.unet, 0x7fffffff,
 * step))`, and the step's noise seed `mix(seed, PHASE_SALT.unet, step, 7)`.
 */
export function unetDraws(seed: number, step: number, batch: number, poolCaptions: readonly number[], dropout: number, emptyIndex: number, numTimesteps: number) {
  const rng = new Rng(mix(seed, PHASE_SALT.unet, 0x7fff_ffff, step));
  const idx: number[] = [];
  const ctxIdx: number[] = [];
  const timesteps: number[] = [];
  for (let b = 0; b < batch; b++) {
    const k = rng.int(poolCaptions.length);
    idx.push(k);
    ctxIdx.push(rng.next() < dropout ? emptyIndex : poolCaptions[k]);
    timesteps.push(rng.int(numTimesteps));
  }
  return { idx, ctxIdx, timesteps, noiseSeed: mix(seed, PHASE_SALT.unet, step, 7) };
}
