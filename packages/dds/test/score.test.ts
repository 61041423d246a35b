import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { relErr } from '../../../test-utils';
import { addNoise, alphaSigma } from '@ddsjs/sd';
import { bridgeGrad, csdGrad, ddsGrad, nfsdGrad, pdsGrad, scoreGrad, scoreLoss, sdsGrad } from '../src';
import { SeededRandom, stopGradient } from '../src/internals';
import type { TextEmbeddings } from '../src';
import type { ScoreResult } from '../src/internals';
import { fakeModel, fakeUnetRow, FakeCall } from './fakes';

const B = 2;
const H = 3;
const W = 2;
const C = 4;
const L = 3;
const D = 2;

let zS: tf.Tensor4D;
let zT: tf.Tensor4D;
let eps: tf.Tensor4D;
let source: TextEmbeddings;
let target: TextEmbeddings;

/** Mean of each row of an embedding [N, L, D] (the fake UNet's context statistic). */
async function rowMeans(e: tf.Tensor3D): Promise<number[]> {
  const d = await e.data();
  const n = L * D;
  return Array.from({ length: e.shape[0] }, (_, i) => Array.from(d.slice(i * n, (i + 1) * n)).reduce((a, v) => a + v, 0) / n);
}

async function rows(x: tf.Tensor4D): Promise<number[][]> {
  const d = Array.from(await x.data());
  const n = H * W * C;
  return Array.from({ length: x.shape[0] }, (_, i) => d.slice(i * n, (i + 1) * n));
}

/** Plain-JS reference of the guided ε̂ of one branch (fake UNet, epsilon prediction, float64). */
function guidedRef(ztRow: number[], uMean: number, cMean: number, t: number, s: number): number[] {
  const u = fakeUnetRow(ztRow, uMean, t, C);
  const c = fakeUnetRow(ztRow, cMean, t, C);
  return u.map((v, i) => v + s * (c[i] - v));
}

beforeAll(async () => {
  await initBackend('cpu');
  zS = tf.randomNormal([B, H, W, C], 0, 1, 'float32', 1) as tf.Tensor4D;
  zT = tf.randomNormal([B, H, W, C], 0, 1, 'float32', 2) as tf.Tensor4D;
  eps = tf.randomNormal([B, H, W, C], 0, 1, 'float32', 3) as tf.Tensor4D;
  source = {
    cond: tf.randomNormal([B, L, D], 0, 1, 'float32', 4) as tf.Tensor3D,
    uncond: tf.randomNormal([1, L, D], 0, 1, 'float32', 5) as tf.Tensor3D,
  };
  target = {
    cond: tf.randomNormal([1, L, D], 0, 1, 'float32', 6) as tf.Tensor3D,
    uncond: tf.randomNormal([1, L, D], 0, 1, 'float32', 7) as tf.Tensor3D,
  };
});

afterAll(() => {
  tf.dispose([zS, zT, eps, source.cond, source.uncond, target.cond, target.uncond]);
});

describe('ddsGrad (fake UNet)', () => {
  it('matches a hand-computed reference: shared t and ε, row order, broadcast embeddings, per-sample t', async () => {
    const sd = fakeModel();
    const ts = [100, 700];
    const s = 5;
    const r = ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { timestep: ts, noise: eps, guidanceScale: s, intermediates: true });
    try {
      expect(r.timestep).toEqual(ts);
      expect(sd.calls).toEqual([{ rows: 4 * B, timestep: [...ts, ...ts, ...ts, ...ts] }]);
      const ac = sd.schedule.alphasCumprod;
      const [zs, zt, e] = [await rows(zS), await rows(zT), await rows(eps)];
      const [mSc, mSu, mTc, mTu] = [await rowMeans(source.cond), await rowMeans(source.uncond), await rowMeans(target.cond), await rowMeans(target.uncond)];
      const refZtS: number[][] = [];
      const refZtT: number[][] = [];
      const refGrad: number[] = [];
      const refRaw: number[][] = [[], [], [], []].map(() => []);
      for (let i = 0; i < B; i++) {
        const a = Math.sqrt(ac[ts[i]]);
        const sg = Math.sqrt(1 - ac[ts[i]]);
        const xs = zs[i].map((v, j) => a * v + sg * e[i][j]);
        const xt = zt[i].map((v, j) => a * v + sg * e[i][j]);
        refZtS.push(xs);
        refZtT.push(xt);
        refRaw[0].push(...fakeUnetRow(xs, mSu[0], ts[i], C)); // uncond, source
        refRaw[1].push(...fakeUnetRow(xt, mTu[0], ts[i], C)); // uncond, target
        refRaw[2].push(...fakeUnetRow(xs, mSc[i], ts[i], C)); // cond, source
        refRaw[3].push(...fakeUnetRow(xt, mTc[0], ts[i], C)); // cond, target
        const gs = guidedRef(xs, mSu[0], mSc[i], ts[i], s);
        const gt = guidedRef(xt, mTu[0], mTc[0], ts[i], s);
        refGrad.push(...gt.map((v, j) => v - gs[j]));
      }
      const inter = r.intermediates!;
      expect(relErr(await inter.zt[0].data(), refZtS.flat())).toBeLessThan(1e-6);
      expect(relErr(await inter.zt[1].data(), refZtT.flat())).toBeLessThan(1e-6);
      expect(relErr(await inter.unetRaw.data(), refRaw.flat())).toBeLessThan(1e-6);
      expect(relErr(await r.grad.data(), refGrad)).toBeLessThan(1e-5);
      expect(relErr(await r.noise.data(), await eps.data())).toBe(0);
      const norm = Math.hypot(...refGrad);
      expect(Math.abs((await r.gradNorm()) - norm) / norm).toBeLessThan(1e-5);
    } finally {
      r.dispose();
    }
  });

  it('gives identical results when the UNet batch is split (unetBatch)', async () => {
    const full = ddsGrad(fakeModel(), { zSource: zS, zTarget: zT, source, target }, { seed: 11 });
    for (const unetBatch of [1, 3, 5]) {
      const calls: FakeCall[] = [];
      const split = ddsGrad(fakeModel({ calls }), { zSource: zS, zTarget: zT, source, target }, { seed: 11, unetBatch });
      try {
        expect(calls.length).toBe(Math.ceil((4 * B) / unetBatch));
        expect(calls.every((c) => c.rows <= unetBatch)).toBe(true);
        expect(split.timestep).toEqual(full.timestep);
        expect(Array.from(await split.grad.data())).toEqual(Array.from(await full.grad.data()));
      } finally {
        split.dispose();
      }
    }
    full.dispose();
  });

  it('is reproducible: same seed → identical t, ε and grad; another seed differs', async () => {
    const sd = fakeModel();
    const a = ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: 42 });
    const b = ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: 42 });
    const c = ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: 43 });
    try {
      expect(b.timestep).toEqual(a.timestep);
      expect(Array.from(await b.noise.data())).toEqual(Array.from(await a.noise.data()));
      expect(Array.from(await b.grad.data())).toEqual(Array.from(await a.grad.data()));
      expect(Array.from(await c.noise.data())).not.toEqual(Array.from(await a.noise.data()));
      // The noise for a seed does not depend on whether the timestep is fixed.
      const d = ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: 42, timestep: 500 });
      expect(d.timestep).toEqual([500, 500]);
      expect(Array.from(await d.noise.data())).toEqual(Array.from(await a.noise.data()));
      d.dispose();
      for (const t of [...a.timestep, ...c.timestep]) {
        expect(t).toBeGreaterThanOrEqual(50);
        expect(t).toBeLessThanOrEqual(948);
      }
    } finally {
      [a, b, c].forEach((r) => r.dispose());
    }
  });

  it('draws timesteps like torch.randint(tMin, min(tMax, T) - 1): every value of the range and nothing else', () => {
    const sd = fakeModel();
    const seen = new Set<number>();
    const z1 = tf.zeros([1, 1, 1, C]) as tf.Tensor4D;
    const e1 = { cond: tf.zeros([1, 1, 1]) as tf.Tensor3D, uncond: tf.zeros([1, 1, 1]) as tf.Tensor3D };
    const rng = new SeededRandom(5);
    for (let i = 0; i < 200; i++) {
      const r = ddsGrad(sd, { zSource: z1, zTarget: z1, source: e1, target: e1 }, { tRange: [10, 15], seed: rng.nextUint32() });
      seen.add(r.timestep[0]);
      r.dispose();
    }
    expect([...seen].sort()).toEqual([10, 11, 12, 13]);
    // tMax beyond the schedule is clamped to T, as the notebook's min(t_max, 1000) does.
    const r = ddsGrad(sd, { zSource: z1, zTarget: z1, source: e1, target: e1 }, { tRange: [998, 5000], seed: 1 });
    expect(r.timestep[0]).toBe(998);
    r.dispose();
    tf.dispose([z1, e1.cond, e1.uncond]);
  });

  it('does not leak over 500 consecutive calls', () => {
    const sd = fakeModel();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 500; i++) {
      const r = ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: i, weighting: 'sds', mask: tf.scalar(1) });
      r.dispose();
    }
    // The mask scalars are the caller's: 500 of them stay alive until disposed here.
    expect(tf.memory().numTensors).toBe(before + 500);
    tf.disposeVariables();
  });

  it('rejects bad inputs with errors naming the argument', () => {
    const sd = fakeModel();
    const z3 = tf.zeros([B, H, W + 1, C]) as tf.Tensor4D;
    const badMask = tf.ones([1, 5, 1, 1]);
    const bad3 = tf.zeros([3, L, D]) as tf.Tensor3D;
    const before = tf.memory().numTensors;
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: z3, source, target })).toThrow(/zTarget shape \[2,3,3,4\] differs from zSource/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { timestep: 1000 })).toThrow(/timestep\[0\] must be an integer in \[0, 1000\)/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { timestep: [1, 2, 3] })).toThrow(/3 entries for a batch of 2/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { tRange: [500, 400] })).toThrow(/tRange \[500, 400\] is empty/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { unetBatch: 0 })).toThrow(/unetBatch/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { noise: z3 })).toThrow(/noise must be a tensor of the latents' shape/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { mask: badMask })).toThrow(/mask shape \[1,5,1,1\] does not broadcast/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target: { cond: bad3, uncond: target.uncond } })).toThrow(/target\.cond must be \[1, L, D\] or \[2, L, D\]/);
    expect(() => ddsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { weighting: () => NaN })).toThrow(/weighting\(\d+\) returned NaN/);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([z3, badMask, bad3]);
  });
});

describe('sdsGrad (fake UNet)', () => {
  it('matches a hand-computed reference (grad = ε̂ − ε), with per-sample timesteps', async () => {
    const calls: FakeCall[] = [];
    const sd = fakeModel({ calls });
    const ts = [300, 51];
    const r = sdsGrad(sd, { z: zT, text: source }, { timestep: ts, noise: eps });
    try {
      expect(calls).toEqual([{ rows: 2 * B, timestep: [...ts, ...ts] }]);
      const ac = sd.schedule.alphasCumprod;
      const [z, e] = [await rows(zT), await rows(eps)];
      const [mc, mu] = [await rowMeans(source.cond), await rowMeans(source.uncond)];
      const ref: number[] = [];
      for (let i = 0; i < B; i++) {
        const a = Math.sqrt(ac[ts[i]]);
        const sg = Math.sqrt(1 - ac[ts[i]]);
        const x = z[i].map((v, j) => a * v + sg * e[i][j]);
        const g = guidedRef(x, mu[0], mc[i], ts[i], 7.5);
        ref.push(...g.map((v, j) => v - e[i][j]));
      }
      expect(relErr(await r.grad.data(), ref)).toBeLessThan(1e-5);
    } finally {
      r.dispose();
    }
  });

  it("applies the 'sds' weighting w(t) = 1 − ᾱ_t and custom weightings per sample", async () => {
    const sd = fakeModel();
    const ts = [200, 800];
    const base = sdsGrad(sd, { z: zT, text: source }, { timestep: ts, noise: eps });
    const wSds = sdsGrad(sd, { z: zT, text: source }, { timestep: ts, noise: eps, weighting: 'sds' });
    const wFn = sdsGrad(sd, { z: zT, text: source }, { timestep: ts, noise: eps, weighting: (t) => t / 100 });
    try {
      const ac = sd.schedule.alphasCumprod;
      const g = await rows(base.grad);
      const refSds = g.flatMap((row, i) => row.map((v) => v * (1 - ac[ts[i]])));
      const refFn = g.flatMap((row, i) => row.map((v) => (v * ts[i]) / 100));
      expect(relErr(await wSds.grad.data(), refSds)).toBeLessThan(1e-6);
      expect(relErr(await wFn.grad.data(), refFn)).toBeLessThan(1e-6);
    } finally {
      [base, wSds, wFn].forEach((r) => r.dispose());
    }
  });

  it('multiplies the gradient by a broadcast mask', async () => {
    const sd = fakeModel();
    const mask = tf.tensor4d([1, 0, 0, 1, 1, 0], [1, H, W, 1]);
    const base = sdsGrad(sd, { z: zT, text: source }, { seed: 3 });
    const masked = sdsGrad(sd, { z: zT, text: source }, { seed: 3, mask });
    try {
      const ref = tf.tidy(() => tf.mul(base.grad, mask));
      expect(Array.from(await masked.grad.data())).toEqual(Array.from(await ref.data()));
      ref.dispose();
    } finally {
      [base, masked].forEach((r) => r.dispose());
      mask.dispose();
    }
  });

  it('resizes an image-resolution mask ([H, W] = 8·[h, w]) to the latents by 8×8 averages', async () => {
    const sd = fakeModel();
    // Image mask: left image column block (latent column 0) white, right black; one 8×8 cell half white.
    const img = tf.tidy(() => {
      const m = tf.buffer([H * 8, W * 8]);
      for (let y = 0; y < H * 8; y++) for (let x = 0; x < W * 8; x++) m.set(x < 8 ? 1 : y < 4 ? 1 : 0, y, x);
      return m.toTensor();
    });
    const latentMask = tf.tensor4d([1, 0.5, 1, 0, 1, 0], [1, H, W, 1]);
    const a = sdsGrad(sd, { z: zT, text: source }, { seed: 3, mask: img });
    const b = sdsGrad(sd, { z: zT, text: source }, { seed: 3, mask: latentMask });
    try {
      expect(Array.from(await a.grad.data())).toEqual(Array.from(await b.grad.data()));
      const bad = tf.zeros([H * 8, W * 8 + 1]);
      expect(() => sdsGrad(sd, { z: zT, text: source }, { mask: bad })).toThrow(/is not an image-resolution mask/);
      bad.dispose();
    } finally {
      [a, b].forEach((r) => r.dispose());
      tf.dispose([img, latentMask]);
    }
  });

  it.each([NaN, Infinity, -Infinity])('zeroes non-finite entries (UNet returns %p)', async (poison) => {
    const sd = fakeModel({ poison });
    const clean = sdsGrad(fakeModel(), { z: zT, text: source }, { seed: 9 });
    const r = sdsGrad(sd, { z: zT, text: source }, { seed: 9 });
    try {
      const g = Array.from(await r.grad.data());
      const ref = Array.from(await clean.grad.data());
      expect(g.every(Number.isFinite)).toBe(true);
      const n = H * W * C;
      for (let i = 0; i < g.length; i++) {
        if (i % n === 0) expect(g[i]).toBe(0);
        else expect(g[i]).toBe(ref[i]);
      }
    } finally {
      [clean, r].forEach((x) => x.dispose());
    }
  });

  it('converts v-prediction to ε before guidance (ε = α_t·v + σ_t·z_t)', async () => {
    const sd = fakeModel({ predictionType: 'v_prediction' });
    const ts = [400, 900];
    const r = sdsGrad(sd, { z: zT, text: source }, { timestep: ts, noise: eps, guidanceScale: 3 });
    try {
      const ac = sd.schedule.alphasCumprod;
      const [z, e] = [await rows(zT), await rows(eps)];
      const [mc, mu] = [await rowMeans(source.cond), await rowMeans(source.uncond)];
      const ref: number[] = [];
      for (let i = 0; i < B; i++) {
        const a = Math.sqrt(ac[ts[i]]);
        const sg = Math.sqrt(1 - ac[ts[i]]);
        const x = z[i].map((v, j) => a * v + sg * e[i][j]);
        const toEps = (v: number[]) => v.map((vv, j) => a * vv + sg * x[j]);
        const u = toEps(fakeUnetRow(x, mu[0], ts[i], C));
        const c = toEps(fakeUnetRow(x, mc[i], ts[i], C));
        ref.push(...u.map((uu, j) => uu + 3 * (c[j] - uu) - e[i][j]));
      }
      expect(relErr(await r.grad.data(), ref)).toBeLessThan(1e-5);
    } finally {
      r.dispose();
    }
  });
});

describe('addNoise / alphaSigma', () => {
  it('computes z_t = α_t·z + σ_t·ε per sample', async () => {
    const sd = fakeModel();
    const { alpha, sigma } = alphaSigma(sd.schedule, [0, 999]);
    expect(alpha[0]).toBeCloseTo(Math.sqrt(sd.schedule.alphasCumprod[0]), 7);
    expect(sigma[1]).toBeCloseTo(Math.sqrt(1 - sd.schedule.alphasCumprod[999]), 7);
    const zt = addNoise(sd.schedule, zS, eps, [0, 999]);
    const [z, e] = [await rows(zS), await rows(eps)];
    const ref = [0, 1].flatMap((i) => z[i].map((v, j) => alpha[i] * v + sigma[i] * e[i][j]));
    expect(relErr(await zt.data(), ref)).toBeLessThan(1e-6);
    zt.dispose();
    expect(() => alphaSigma(sd.schedule, [1.5])).toThrow(/integer in \[0, 999\]/);
  });
});

describe('scoreLoss', () => {
  it('has gradient grad/(h·w) with respect to z and none into grad', async () => {
    const g = tf.randomNormal([B, H, W, C], 0, 1, 'float32', 21) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const [dz, dg] = tf.grads((z: tf.Tensor, gg: tf.Tensor) => scoreLoss(z, gg))([zT, g]);
    const ref = tf.div(g, H * W);
    expect(relErr(await dz.data(), await ref.data())).toBeLessThan(1e-7);
    expect(Array.from(await dg.data()).every((v) => v === 0)).toBe(true);
    const loss = scoreLoss(zT, g);
    const z = Array.from(await zT.data());
    const gv = Array.from(await g.data());
    const refLoss = z.reduce((a, v, i) => a + v * gv[i], 0) / (H * W);
    expect(Math.abs((await loss.data())[0] - refLoss)).toBeLessThan(1e-5 * Math.abs(refLoss) + 1e-6);
    tf.dispose([dz, dg, ref, loss]);
    expect(tf.memory().numTensors).toBe(before);
    // Composed: d(2000·scoreLoss)/dz through a function producing z.
    const x = tf.randomNormal([B, H, W, C], 0, 1, 'float32', 22);
    const dx = tf.grad((xx: tf.Tensor) => tf.mul(scoreLoss(tf.mul(xx, 3), g), 2000) as tf.Scalar)(x);
    const refDx = tf.mul(g, (3 * 2000) / (H * W));
    expect(relErr(await dx.data(), await refDx.data())).toBeLessThan(1e-6);
    tf.dispose([g, x, dx, refDx]);
    expect(() => scoreLoss(zT, zS.slice([0], [1]))).toThrow(/grad shape \[1,3,2,4\] differs from z's \[2,3,2,4\]/);
  });

  it('stopGradient is the identity forward and blocks gradients', async () => {
    const x = tf.tensor1d([1, 2, 3]);
    const y = stopGradient(x);
    expect(Array.from(await y.data())).toEqual([1, 2, 3]);
    const d = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(stopGradient(v), v)))(x);
    expect(Array.from(await d.data())).toEqual([1, 2, 3]);
    tf.dispose([x, y, d]);
  });
});

/** Keeps the type import used (ScoreResult is part of the public surface the tests exercise). */
export type _R = ScoreResult;

describe('scoreGrad (the general score)', () => {
  it('computes each distinct (latent, embedding) row once and sums weighted terms, latent and noise terms', async () => {
    const calls: FakeCall[] = [];
    const sd = fakeModel({ calls });
    const spec = {
      latents: { a: zS, b: zT },
      terms: [
        { latent: 'a', cond: source.cond, uncond: source.uncond, guidanceScale: 2, coef: 0.5 },
        { latent: 'a', cond: source.uncond, coef: -1 }, // the same row as the guided term's ∅: computed once
        { latent: 'b', cond: target.cond, coef: (t: number) => t / 1000 },
      ],
      latentTerms: [{ latent: 'b', coef: 3 }],
      noiseCoef: -2,
    };
    const before = tf.memory().numTensors;
    const r = scoreGrad(sd, spec, { timestep: [100, 700], noise: eps, intermediates: true });
    try {
      expect(calls.map((c) => c.rows)).toEqual([6]); // 3 distinct blocks × B = 2
      const [za, zb, e] = [await rows(zS), await rows(zT), await rows(eps)];
      const sm = await rowMeans(source.cond);
      const [su] = await rowMeans(source.uncond);
      const [tc] = await rowMeans(target.cond);
      const { alpha, sigma } = alphaSigma(sd.schedule, [100, 700]);
      const ref = [0, 1].flatMap((i) => {
        const t = [100, 700][i];
        const zta = za[i].map((v, j) => alpha[i] * v + sigma[i] * e[i][j]);
        const ztb = zb[i].map((v, j) => alpha[i] * v + sigma[i] * e[i][j]);
        const g = guidedRef(zta, su, sm[i], t, 2);
        const u = fakeUnetRow(zta, su, t, C);
        const c = fakeUnetRow(ztb, tc, t, C);
        return g.map((v, j) => 0.5 * v - u[j] + (t / 1000) * c[j] + 3 * zb[i][j] - 2 * e[i][j]);
      });
      expect(relErr(await r.grad.data(), ref)).toBeLessThan(1e-5);
      expect(r.intermediates!.epsPred).toHaveLength(3);
    } finally {
      r.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(() => scoreGrad(sd, { latents: { a: zS }, terms: [{ latent: 'x', cond: source.cond }] })).toThrow(/names latent 'x'/);
  });

  it('the family: repeated calls leave no tensor; ε′ is reproducible from the seed; PDS needs t_prev ≥ 0', async () => {
    const sd = fakeModel();
    const neg = source.uncond;
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const results = [
        nfsdGrad(sd, { z: zT, text: { cond: target.cond, uncond: target.uncond, negative: neg } }, { seed: i }),
        csdGrad(sd, { z: zT, text: { cond: target.cond, uncond: target.uncond, negative: neg } }, { seed: i, scales: { negative: -0.5 } }),
        bridgeGrad(sd, { z: zT, source: source.cond, target: target.cond }, { seed: i }),
        pdsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: i }),
      ];
      results.forEach((r) => r.dispose());
    }
    const p1 = pdsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: 5 });
    const p2 = pdsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { seed: 5 });
    try {
      expect(Array.from(await p1.noisePrev!.data())).toEqual(Array.from(await p2.noisePrev!.data()));
      expect(Array.from(await p1.grad.data())).toEqual(Array.from(await p2.grad.data()));
      expect(p1.prevTimestep).toEqual(p1.timestep.map((t) => t - 2));
    } finally {
      p1.dispose();
      p2.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(() => csdGrad(sd, { z: zT, text: { cond: target.cond, uncond: target.uncond } }, { scales: { negative: 1 } })).toThrow(/text.negative is missing/);
    expect(() => pdsGrad(sd, { zSource: zS, zTarget: zT, source, target }, { timestep: 10, prevTimestep: 1000 })).toThrow(/prevTimestep\[0\] must be an integer/);
  });
});
