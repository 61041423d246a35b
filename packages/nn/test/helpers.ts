/** Test helpers for @ddsjs/nn: deterministic random data and independent reference implementations. */
import * as tf from '@tensorflow/tfjs';

/** Deterministic uniform [-1, 1) values (mulberry32). */
export function rand(n: number, seed: number, scale = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = ((((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/** Largest |a − b| / (max |b| + tiny). */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / (den + 1e-30);
}

/** Naive NHWC conv with PyTorch zero-padding semantics; w in tfjs layout [kh,kw,cin,cout]. */
export function naiveConv(
  x: Float32Array,
  [n, h, w, cin]: number[],
  wt: Float32Array,
  [kh, kw, , cout]: number[],
  bias: Float32Array | null,
  stride: number,
  [pt, pb, pl, pr]: number[],
): { data: Float64Array; shape: number[] } {
  const ho = Math.floor((h + pt + pb - kh) / stride) + 1;
  const wo = Math.floor((w + pl + pr - kw) / stride) + 1;
  const out = new Float64Array(n * ho * wo * cout);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < ho; oy++)
      for (let ox = 0; ox < wo; ox++)
        for (let co = 0; co < cout; co++) {
          let s = bias ? bias[co] : 0;
          for (let i = 0; i < kh; i++) {
            const iy = oy * stride + i - pt;
            if (iy < 0 || iy >= h) continue;
            for (let j = 0; j < kw; j++) {
              const ix = ox * stride + j - pl;
              if (ix < 0 || ix >= w) continue;
              for (let ci = 0; ci < cin; ci++) s += x[((b * h + iy) * w + ix) * cin + ci] * wt[((i * kw + j) * cin + ci) * cout + co];
            }
          }
          out[((b * ho + oy) * wo + ox) * cout + co] = s;
        }
  return { data: out, shape: [n, ho, wo, cout] };
}

/** erf by its Maclaurin series (|x| < 3) or continued fraction tail — independent of tf.erf. */
export function erf(x: number): number {
  if (Math.abs(x) > 5) return Math.sign(x);
  // Series: erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1))
  let sum = 0;
  let term = x;
  for (let k = 0; k < 200; k++) {
    const add = term / (2 * k + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    term *= (-x * x) / (k + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

/** Reads a tensor's values (tests only). */
export async function values(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}
