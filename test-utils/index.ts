// Shared helpers for the test suites (not a published package).
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { SafetensorsFile } from '@ddsjs/safetensors';

/** Root of the fixtures copied into the repo. */
export const FIXTURES = path.resolve(__dirname, '..', 'fixtures');
/** The tiny SD 1.5-structured model folder. */
export const TINY_SD15 = path.join(FIXTURES, 'tiny-sd15');

/** A golden tensor: float32 values (integers converted) in the stored (NCHW) layout. */
export interface Golden {
  shape: number[];
  data: Float32Array;
}

/** Reads every tensor of `tiny-sd15/golden/<name>.safetensors` as float32. */
export async function readGoldens(name: string): Promise<Record<string, Golden>> {
  const f = await SafetensorsFile.open(path.join(TINY_SD15, 'golden', `${name}.safetensors`));
  try {
    const out: Record<string, Golden> = {};
    for (const k of f.keys()) out[k] = { shape: [...f.info(k).shape], data: await f.readFloat32(k) };
    return out;
  } finally {
    await f.close();
  }
}

/** A golden as a tfjs tensor, NCHW → NHWC when `nhwc` is set and the rank is 4 (or 5, leading step axis). Caller owns it. */
export function goldenTensor(g: Golden, nhwc = false): tf.Tensor {
  return tf.tidy(() => {
    const t = tf.tensor(g.data, g.shape, 'float32');
    if (nhwc && g.shape.length === 4) return tf.transpose(t, [0, 2, 3, 1]);
    if (nhwc && g.shape.length === 5) return tf.transpose(t, [0, 1, 3, 4, 2]);
    return t;
  });
}

/** max|a − b| / max|b|, the fixtures' relative error measure. */
export function relErr(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) throw new Error(`length mismatch: ${actual.length} vs ${expected.length}`);
  // Globals looked up inside hot loops are very slow under jest's module wrapper: hoist them.
  const { abs } = Math;
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = abs(actual[i] - expected[i]);
    if (!(d <= maxDiff)) maxDiff = d !== d ? Infinity : d;
    const r = abs(expected[i]);
    if (r > maxRef) maxRef = r;
  }
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/**
 * Asserts that `actual` (a tensor, NHWC when the golden is an NCHW image/latent and `nhwc` is set)
 * matches golden `g` within relative tolerance `tol`; returns the measured error.
 */
export async function expectGolden(actual: tf.Tensor, g: Golden, tol: number, name: string, nhwc = true): Promise<number> {
  const ref = goldenTensor(g, nhwc);
  try {
    expect({ name, shape: actual.shape }).toEqual({ name, shape: ref.shape });
    const err = relErr(await actual.data(), await ref.data());
    if (!(err <= tol)) throw new Error(`${name}: relative error ${err.toExponential(2)} exceeds ${tol}`);
    return err;
  } finally {
    ref.dispose();
  }
}

/**
 * The backends a backend-parameterised suite runs on: the one named by DDSJS_BACKEND (the tier's backend, e.g.
 * `npm run test:tensorflow`) when set, else `defaults`. Tests name the backend in their title and, where a property
 * holds on one backend only, say which.
 */
export function backendsUnderTest<T extends string>(defaults: readonly T[]): T[] {
  const env = process.env.DDSJS_BACKEND?.trim();
  return env ? [env as T] : [...defaults];
}

/** The backend a single-backend suite runs on: DDSJS_BACKEND when set, else `fallback`. */
export function backendUnderTest<T extends string>(fallback: T): T {
  return backendsUnderTest([fallback])[0];
}
