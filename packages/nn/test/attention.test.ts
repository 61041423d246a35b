import * as tf from '@tensorflow/tfjs';
import { initBackend, attention as attentionOp, attentionStrategy, AttentionOptions, causalMask, hotOps, setHotOps, PORTABLE_HOT_OPS, SMALL_HEAD_WORK } from '@ddsjs/nn';
import { rand, maxRelErr } from './helpers';
import { backendsUnderTest } from '../../../test-utils';

/** softmax(q·kᵀ/√d + mask)·v per batch and head, by plain loops. mask: [nq, nk] or null. */
function naiveAttention(
  q: Float32Array, k: Float32Array, v: Float32Array,
  b: number, nq: number, nk: number, c: number, cv: number, heads: number, mask: Float32Array | null,
): Float64Array {
  const d = c / heads;
  const dv = cv / heads;
  const out = new Float64Array(b * nq * cv);
  for (let bi = 0; bi < b; bi++) for (let h = 0; h < heads; h++) for (let i = 0; i < nq; i++) {
    const s: number[] = [];
    for (let j = 0; j < nk; j++) {
      let dot = 0;
      for (let t = 0; t < d; t++) dot += q[(bi * nq + i) * c + h * d + t] * k[(bi * nk + j) * c + h * d + t];
      s.push(dot / Math.sqrt(d) + (mask ? mask[i * nk + j] : 0));
    }
    const m = Math.max(...s);
    const e = s.map((x) => Math.exp(x - m));
    const z = e.reduce((a, x) => a + x, 0);
    for (let t = 0; t < dv; t++) {
      let acc = 0;
      for (let j = 0; j < nk; j++) acc += (e[j] / z) * v[(bi * nk + j) * cv + h * dv + t];
      out[(bi * nq + i) * cv + h * dv + t] = acc;
    }
  }
  return out;
}

// Chunking splits the query rows; with the per-head strategy on wasm and cpu each row's softmax·V is computed by
// the same per-row kernels either way, so the results are bit-identical. tensorflow's matMul (Eigen/oneDNN) blocks
// the contraction by the row count, so chunked rows differ from unchunked ones by float32 rounding.
// Measured max rel. (TF 2.21 CPU): per-head 9.8e-8, batched 6.6e-8; bound 1e-6.
const CHUNKED_TOL: Record<string, number> = { 'wasm/per-head': 0, 'cpu/per-head': 0, 'wasm/batched': 0, 'cpu/batched': 0 };

describe.each(backendsUnderTest(['wasm', 'cpu']))('attention on %s', (backend) => {
  beforeAll(async () => {
    await initBackend(backend as 'wasm' | 'cpu' | 'tensorflow');
  });

  test(`chooses its strategy in one place: ${backend === 'tensorflow' ? 'batched' : 'per-head'} on ${backend} for large heads`, () => {
    expect(attentionStrategy()).toBe(backend === 'tensorflow' ? 'batched' : 'per-head');
    expect(attentionStrategy('wasm')).toBe('per-head');
    expect(attentionStrategy('tensorflow')).toBe('batched');
    // Small heads (the toy model's) are batched on wasm, where per-op cost dominates them; cpu keeps the reference.
    expect(attentionStrategy('wasm', SMALL_HEAD_WORK)).toBe('batched');
    expect(attentionStrategy('wasm', SMALL_HEAD_WORK + 1)).toBe('per-head');
    expect(attentionStrategy('wasm', 64 * 64 * 160)).toBe('per-head'); // SD 1.5's smallest heads
    expect(attentionStrategy('tensorflow', 1)).toBe('batched');
    expect(attentionStrategy('cpu', 1)).toBe('per-head');
  });

  test('hotOps: per-backend choices, overridable with setHotOps and reset with null; bad overrides throw', () => {
    expect(hotOps()).toEqual({ attention: 'auto', groupNormStats: backend === 'tensorflow' ? 'single' : 'blocked' });
    expect(hotOps('tensorflow').groupNormStats).toBe('single');
    expect(hotOps('wasm').groupNormStats).toBe('blocked');
    try {
      setHotOps(PORTABLE_HOT_OPS);
      expect(hotOps('tensorflow')).toEqual({ attention: 'per-head', groupNormStats: 'blocked' });
      setHotOps({ attention: 'batched' });
      expect(hotOps('wasm')).toEqual({ attention: 'batched', groupNormStats: 'blocked' });
      setHotOps({ attention: undefined, groupNormStats: 'single' }); // an undefined entry keeps the backend's choice
      expect(hotOps('wasm')).toEqual({ attention: 'auto', groupNormStats: 'single' });
      expect(() => setHotOps({ attention: 'fused' as never })).toThrow(/attention must be one of auto, per-head, batched, got 'fused'/);
      expect(() => setHotOps({ softmax: 'x' } as never)).toThrow(/unknown op 'softmax'/);
    } finally {
      setHotOps(null);
    }
    expect(hotOps('wasm')).toEqual({ attention: 'auto', groupNormStats: 'blocked' });
  });

  test('the strategy forced by setHotOps is the one that runs (same values; batched has fewer kernels)', async () => {
    const [b, nq, nk, c, heads] = [2, 8, 6, 8, 4];
    const q = tf.tensor3d(rand(b * nq * c, 31), [b, nq, c]);
    const k = tf.tensor3d(rand(b * nk * c, 32), [b, nk, c]);
    const v = tf.tensor3d(rand(b * nk * c, 33), [b, nk, c]);
    const run = async (strategy: 'per-head' | 'batched') => {
      setHotOps({ attention: strategy });
      try {
        let out: Float32Array | undefined;
        const info = await tf.profile(async () => {
          const o = attentionOp(q, k, v, { heads });
          out = (await o.data()) as Float32Array;
          o.dispose();
        });
        return { out: out!, kernels: info.kernels.length };
      } finally {
        setHotOps(null);
      }
    };
    const per = await run('per-head');
    const bat = await run('batched');
    expect(maxRelErr(bat.out, per.out)).toBeLessThan(1e-6);
    expect(bat.kernels).toBeLessThan(per.kernels / 2);
    tf.dispose([q, k, v]);
  });

  test('the two strategies agree (same inputs, mask, several chunk budgets)', async () => {
    const [b, nq, nk, c, cv, heads] = [3, 9, 7, 12, 8, 4];
    const [qd, kd, vd, md] = [rand(b * nq * c, 21, 2), rand(b * nk * c, 22, 2), rand(b * nk * cv, 23), rand(b * nq * nk, 24, 3)];
    const args = () => [tf.tensor3d(qd, [b, nq, c]), tf.tensor3d(kd, [b, nk, c]), tf.tensor3d(vd, [b, nk, cv])] as const;
    for (const mask of [undefined, tf.tensor3d(md, [b, nq, nk]), tf.tensor2d(md.slice(0, nk), [1, nk])]) {
      for (const byteBudget of [undefined, 4 * nk * 2, 4 * nk * b * 4 * 3]) {
        const per = await attentionOp(...args(), { heads, mask, byteBudget, strategy: 'per-head' }).data();
        const bat = await attentionOp(...args(), { heads, mask, byteBudget, strategy: 'batched' }).data();
        expect(maxRelErr(bat, per)).toBeLessThan(1e-6);
      }
    }
    expect(() => attentionOp(...args(), { heads, strategy: 'fused' as never })).toThrow(/unknown strategy 'fused'/);
  });
});

describe.each(backendsUnderTest(['wasm', 'cpu']).flatMap((bk) => (['per-head', 'batched'] as const).map((st) => [bk, st] as const)))('attention on %s, %s', (backend, strategy) => {
  beforeAll(async () => {
    await initBackend(backend as 'wasm' | 'cpu' | 'tensorflow');
  });
  const attention = (q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, o: AttentionOptions) => attentionOp(q, k, v, { ...o, strategy });

  const [b, nq, nk, c, cv, heads] = [2, 7, 5, 8, 12, 2];
  const qd = rand(b * nq * c, 1, 2);
  const kd = rand(b * nk * c, 2, 2);
  const vd = rand(b * nk * cv, 3);
  const q = () => tf.tensor3d(qd, [b, nq, c]);
  const k = () => tf.tensor3d(kd, [b, nk, c]);
  const v = () => tf.tensor3d(vd, [b, nk, cv]);

  test('matches naive loops (cross attention, no mask)', async () => {
    const y = attention(q(), k(), v(), { heads });
    expect(y.shape).toEqual([b, nq, cv]);
    expect(maxRelErr(await y.data(), naiveAttention(qd, kd, vd, b, nq, nk, c, cv, heads, null))).toBeLessThan(1e-5);
  });

  test('chunked equals unchunked (exactly on wasm/cpu) for several byte budgets, with and without mask', async () => {
    const maskData = rand(nq * nk, 4, 3);
    const mask = tf.tensor2d(maskData, [nq, nk]);
    for (const m of [undefined, mask]) {
      const full = await attention(q(), k(), v(), { heads, mask: m }).data();
      const ref = naiveAttention(qd, kd, vd, b, nq, nk, c, cv, heads, m ? maskData : null);
      expect(maxRelErr(full, ref)).toBeLessThan(1e-5);
      for (const budget of [1, nk * 4, nk * 4 * 2, nk * 4 * 3, nk * 4 * 6]) {
        const chunked = await attention(q(), k(), v(), { heads, mask: m, byteBudget: budget }).data();
        const tol = CHUNKED_TOL[`${backend}/${strategy}`] ?? 1e-6;
        if (tol === 0) expect(Array.from(chunked)).toEqual(Array.from(full));
        else expect(maxRelErr(chunked, full)).toBeLessThan(tol);
      }
    }
  });

  test('causal self-attention (CLIP) with a [1, N, N] mask and a broadcast [1, Nk] padding mask', async () => {
    const n = 6;
    const x = rand(1 * n * c, 5);
    const xs = tf.tensor3d(x, [1, n, c]);
    const cm = causalMask(n);
    const y = await attention(xs, xs, xs, { heads, mask: cm.reshape([1, n, n]), byteBudget: n * 4 * 2 }).data();
    expect(maxRelErr(y, naiveAttention(x, x, x, 1, n, n, c, c, heads, await cm.data() as Float32Array))).toBeLessThan(1e-5);
    // Row 0 sees only key 0: output row 0 equals v row 0.
    expect(maxRelErr(y.slice(0, c), x.slice(0, c))).toBeLessThan(1e-6);
    const pad = new Float32Array(n).fill(0);
    pad[n - 1] = -3.4028234663852886e38;
    const yp = await attention(xs, xs, xs, { heads, mask: tf.tensor2d(pad, [1, n]) }).data();
    const full = new Float32Array(n * n);
    for (let i = 0; i < n; i++) full.set(pad, i * n);
    expect(maxRelErr(yp, naiveAttention(x, x, x, 1, n, n, c, c, heads, full))).toBeLessThan(1e-5);
  });

  test('rejects bad shapes clearly', () => {
    expect(() => attention(q(), k(), v(), { heads: 3 })).toThrow(/divisible by heads=3/);
    expect(() => attention(q(), k(), v(), { heads, mask: tf.zeros([nq, nk + 1]) })).toThrow(/mask \[7,6\]/);
    expect(() => attention(q(), tf.zeros([b, nk, c + 1]) as tf.Tensor3D, v(), { heads })).toThrow(/mismatched shapes/);
  });

  test('repeated calls do not grow tf.memory().numTensors', () => {
    const [tq, tk, tv] = [q(), k(), v()];
    const mask = causalMask(nq).slice([0, 0], [nq, nk]);
    attention(tq, tk, tv, { heads, mask, byteBudget: 40 }).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) attention(tq, tk, tv, { heads, mask, byteBudget: 40 }).dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([tq, tk, tv, mask]);
  });
});
