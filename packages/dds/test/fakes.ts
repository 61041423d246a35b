// Cheap fake models for the @ddsjs/dds unit tests (not a test file: no `.test.ts`).
import * as tf from '@tensorflow/tfjs';
import type { EditModel, ScoreModel } from '../src';

/** SD 1.x `scaled_linear` ᾱ_t (0.00085 → 0.012, 1000 steps), computed in float64 and stored as float32. */
export function sd15AlphasCumprod(T = 1000): Float32Array {
  const out = new Float32Array(T);
  const a = Math.sqrt(0.00085);
  const b = Math.sqrt(0.012);
  let prod = 1;
  for (let i = 0; i < T; i++) {
    const beta = (a + ((b - a) * i) / (T - 1)) ** 2;
    prod *= 1 - beta;
    out[i] = prod;
  }
  return out;
}

/** One UNet call the fake recorded. */
export interface FakeCall {
  rows: number;
  timestep: number[];
}

/**
 * A fake UNet: out[r] = 0.5·x[r] + mean(context[r]) + t[r]/1000 (+ 0.01·channel index), with optional NaN/Inf
 * injection. Easy to compute by hand, and every input (row order, context, timestep) shows in the output.
 */
export function fakeModel(
  options: { predictionType?: 'epsilon' | 'v_prediction'; poison?: number; calls?: FakeCall[] } = {},
): ScoreModel & { calls: FakeCall[] } {
  const calls = options.calls ?? [];
  return {
    calls,
    schedule: {
      alphasCumprod: sd15AlphasCumprod(),
      predictionType: options.predictionType ?? 'epsilon',
      scalingFactor: 0.18215,
    },
    unet: {
      forward(x: tf.Tensor4D, t: number | tf.Tensor1D, c: tf.Tensor3D): tf.Tensor4D {
        const b = x.shape[0];
        const ts = typeof t === 'number' ? new Array<number>(b).fill(t) : Array.from(t.dataSync());
        calls.push({ rows: b, timestep: ts });
        return tf.tidy(() => {
          const ctx = tf.reshape(tf.mean(c, [1, 2]), [b, 1, 1, 1]);
          const tt = tf.reshape(tf.tensor1d(ts), [b, 1, 1, 1]);
          const ch = tf.reshape(tf.range(0, x.shape[3]), [1, 1, 1, x.shape[3]]);
          let y = tf.add(tf.add(tf.mul(x, 0.5), ctx), tf.add(tf.div(tt, 1000), tf.mul(ch, 0.01)));
          if (options.poison !== undefined) {
            // Put `poison` (NaN or ±Infinity) at the first element of every row.
            const m = tf.buffer([1, x.shape[1], x.shape[2], x.shape[3]]);
            m.set(1, 0, 0, 0, 0);
            const where = tf.cast(tf.broadcastTo(m.toTensor(), x.shape), 'bool');
            y = tf.where(where, tf.fill(x.shape, options.poison), y);
          }
          return y as tf.Tensor4D;
        });
      },
    },
  };
}

/** The fake UNet's output for one row, computed in plain JS (float64). */
export function fakeUnetRow(x: number[], ctxMean: number, t: number, channels: number): number[] {
  return x.map((v, i) => 0.5 * v + ctxMean + t / 1000 + 0.01 * (i % channels));
}

/**
 * A fake editing model: the fake UNet plus a "VAE" that average-pools 8×8 blocks into 4 channels (encode) and
 * repeats latent channels 0..2 over 8×8 blocks (decode), and a prompt encoder that maps a prompt to a constant
 * embedding [1, 77, 8] whose value depends on the prompt's length.
 */
export function fakeEditModel(): EditModel & { calls: FakeCall[] } {
  const base = fakeModel();
  return {
    ...base,
    vae: {
      encode(image: tf.Tensor4D) {
        return tf.tidy(() => {
          const p = tf.avgPool(image, 8, 8, 'valid') as tf.Tensor4D; // [B, h, w, 3]
          const mean = tf.concat([p, tf.mean(p, 3, true)], 3) as tf.Tensor4D;
          return { mean, std: tf.onesLike(mean) };
        });
      },
      decode(latents: tf.Tensor4D) {
        return tf.tidy(() => {
          const [, h, w] = latents.shape;
          const rgb = tf.slice(latents, [0, 0, 0, 0], [-1, -1, -1, 3]) as tf.Tensor4D;
          return tf.image.resizeNearestNeighbor(rgb, [h * 8, w * 8]);
        });
      },
    },
    encodePrompt(prompt: string): tf.Tensor3D {
      return tf.fill([1, 77, 8], prompt.length / 10) as tf.Tensor3D;
    },
  };
}
