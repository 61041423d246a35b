// The diffusion core of @ddsjs/sd: α/σ for one or many timesteps, noising, model output → ε / x̂₀, guidance, the
// latent codec, the native size and the defaults resolver.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { relErr } from '../../../test-utils';
import {
  addNoise,
  alphaSigma,
  guide,
  imageToLatents,
  latentsToImage,
  modelOutputToEps,
  nativeImageSize,
  resolveDefaults,
  resolveGenerateDefaults,
} from '@ddsjs/sd';
import { LIBRARY_GENERATE_DEFAULTS, modelOutputToX0 } from '@ddsjs/sd/internals';

const ac = Float32Array.from({ length: 1000 }, (_, i) => Math.fround(1 - (i + 1) / 1001));
const eps = { alphasCumprod: ac, predictionType: 'epsilon' as const };
const vpred = { alphasCumprod: ac, predictionType: 'v_prediction' as const };

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
});

describe('alphaSigma', () => {
  test('one timestep gives numbers, a list gives arrays of the same float32 values', () => {
    const one = alphaSigma(eps, 300);
    const many = alphaSigma(eps, [300, 10]);
    expect(many.alpha[0]).toBe(one.alpha);
    expect(many.sigma[0]).toBe(one.sigma);
    expect(one.alpha).toBe(Math.fround(Math.sqrt(ac[300])));
    expect(many.sigma[1]).toBe(Math.fround(Math.sqrt(Math.fround(1 - ac[10]))));
    expect(() => alphaSigma(eps, [3, 1000])).toThrow(/alphaSigma: timestep must be an integer in \[0, 999\], got 1000/);
  });
});

describe('noising, ε and x̂₀ per row', () => {
  test('per-row timesteps equal one call per row; x̂₀ inverts the noising for ε and v models', async () => {
    const z = tf.randomNormal([2, 3, 2, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
    const n = tf.randomNormal([2, 3, 2, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
    const ts = [700, 40];
    const before = tf.memory().numTensors;
    const zt = addNoise(eps, z, n, ts);
    const joined = tf.tidy(() =>
      tf.concat([0, 1].map((i) => addNoise(eps, tf.slice(z, [i], [1]) as tf.Tensor4D, tf.slice(n, [i], [1]) as tf.Tensor4D, ts[i])), 0),
    );
    expect(Array.from(await zt.data())).toEqual(Array.from(await joined.data()));
    // ε model: the true noise as the output gives back z; v model: v = α·ε − σ·z gives back z and ε.
    const x0 = modelOutputToX0(eps, n, zt, ts);
    expect(relErr(await x0.data(), await z.data())).toBeLessThan(1e-5);
    const { alpha, sigma } = alphaSigma(eps, ts);
    const a = tf.tensor4d(alpha, [2, 1, 1, 1]);
    const s = tf.tensor4d(sigma, [2, 1, 1, 1]);
    const v = tf.tidy(() => tf.sub(tf.mul(a, n), tf.mul(s, z)) as tf.Tensor4D);
    const x0v = modelOutputToX0(vpred, v, zt, ts);
    const epsV = modelOutputToEps(vpred, v, zt, ts);
    const epsE = modelOutputToEps(eps, n, zt, ts);
    expect(relErr(await x0v.data(), await z.data())).toBeLessThan(1e-5);
    expect(relErr(await epsV.data(), await n.data())).toBeLessThan(1e-5);
    expect(Array.from(await epsE.data())).toEqual(Array.from(await n.data()));
    tf.dispose([zt, joined, x0, a, s, v, x0v, epsV, epsE]);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => addNoise(eps, z, n, [1, 2, 3])).toThrow(/addNoise: 3 timesteps for a batch of 2/);
    expect(() => modelOutputToX0({ alphasCumprod: ac, predictionType: 'sample' as never }, n, z, 1)).toThrow(/unsupported predictionType/);
    tf.dispose([z, n]);
  });

  test('guide = ε_u + s·(ε_c − ε_u)', async () => {
    const u = tf.tensor1d([1, 2]);
    const c = tf.tensor1d([3, -2]);
    const g = guide(u, c, 7.5);
    expect(Array.from(await g.data())).toEqual([16, -28]);
    expect(() => guide(u, c, NaN)).toThrow(/guidance scale must be a finite number/);
    tf.dispose([u, c, g]);
  });
});

describe('latent codec and native size', () => {
  test('image → mean × scaling; latent → decode(z / scaling)/2 + 0.5 clamped to [0, 1]', async () => {
    const vae = {
      encode: (x: tf.Tensor4D) => ({ mean: tf.mul(x, 2) as tf.Tensor4D }),
      decode: (z: tf.Tensor4D) => tf.sub(z, 0.5) as tf.Tensor4D,
    };
    const model = { vae, schedule: { scalingFactor: 0.5 } };
    const img = tf.tensor4d([0.25, -1, 1, 3], [1, 1, 1, 4]);
    const before = tf.memory().numTensors;
    const z = imageToLatents(model, img);
    expect(Array.from(await z.data())).toEqual([0.25, -1, 1, 3]);
    const x = latentsToImage(model, z);
    expect(Array.from(await x.data())).toEqual([0.5, 0, 1, 1]);
    tf.dispose([z, x]);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => imageToLatents({ vae, schedule: { scalingFactor: 0 } }, img)).toThrow(/scalingFactor must be a positive number/);
    img.dispose();
    expect(nativeImageSize({ configs: { unet: { sampleSize: 64 } }, vaeScaleFactor: 8 })).toBe(512);
    expect(nativeImageSize({ configs: { unet: { sampleSize: null } }, vaeScaleFactor: 4 })).toBe(256);
  });
});

describe('resolveDefaults', () => {
  test('option, else model, else library — each with its source', () => {
    const r = resolveDefaults({ a: 1, b: undefined, c: undefined }, { b: 2 }, { a: 10, b: 20, c: 30 });
    expect(r).toEqual({ a: { value: 1, source: 'option' }, b: { value: 2, source: 'model' }, c: { value: 30, source: 'library' } });
    expect(resolveGenerateDefaults({}, {})).toEqual({
      steps: { value: LIBRARY_GENERATE_DEFAULTS.steps, source: 'library' },
      guidanceScale: { value: 7.5, source: 'library' },
    });
    expect(resolveGenerateDefaults({ generate: { guidanceScale: 3 } }, { steps: 4 })).toEqual({
      steps: { value: 4, source: 'option' },
      guidanceScale: { value: 3, source: 'model' },
    });
  });
});
