import * as tf from '@tensorflow/tfjs';
import {
  initBackend,
  conv2dOp,
  conv2dFilterGrad,
  conv2dInputGrad,
  gatherAxis,
  Module,
  Conv2d,
  Linear,
  GroupNorm,
  LayerNorm,
  Embedding,
  GEGLU,
  silu,
  gelu,
  quickGelu,
  upsampleNearest,
  attention,
  causalMask,
  Padding4,
  GradientMode,
  globalNorm,
} from '@ddsjs/nn';
import { rand, maxRelErr } from './helpers';
import { backendUnderTest } from '../../../test-utils';

/**
 * The backend whose gradients these suites check against cpu's native kernels: wasm (which lacks
 * Conv2DBackpropFilter/Input and UnsortedSegmentSum, so ddsjs composes them), or DDSJS_BACKEND's in its tier (there
 * every initBackend call, 'cpu' included, gives that backend).
 */
const UNDER_TEST = backendUnderTest<'wasm' | 'cpu' | 'tensorflow'>('wasm');

type Case = { k: number; stride: number; pad: Padding4; h: number; w: number };
const cases: Case[] = [
  { k: 3, stride: 1, pad: [1, 1, 1, 1], h: 6, w: 5 },
  { k: 3, stride: 2, pad: [1, 1, 1, 1], h: 6, w: 6 },
  { k: 3, stride: 2, pad: [0, 1, 0, 1], h: 6, w: 6 },
  { k: 3, stride: 2, pad: [1, 1, 1, 1], h: 7, w: 5 },
  { k: 1, stride: 1, pad: [0, 0, 0, 0], h: 4, w: 3 },
  { k: 1, stride: 2, pad: [0, 0, 0, 0], h: 5, w: 4 },
  { k: 3, stride: 1, pad: [0, 2, 1, 0], h: 5, w: 5 },
];

/** dx, dW, db of sum(conv(x, w, b) · r) on the active backend. */
async function convGrads(c: Case, mode: GradientMode): Promise<Float32Array[]> {
  const xs = [2, c.h, c.w, 3] as [number, number, number, number];
  const ws = [c.k, c.k, 3, 4] as [number, number, number, number];
  const x = tf.tensor4d(rand(xs.reduce((a, b) => a * b), 1), xs);
  const w = tf.tensor4d(rand(ws.reduce((a, b) => a * b), 2), ws);
  const b = tf.tensor1d(rand(4, 3));
  const yShape = conv2dOp(x, w, b, { stride: c.stride, padding: c.pad }).shape;
  const r = tf.tensor(rand(yShape.reduce((a, v) => a * v, 1), 4), yShape);
  const f = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.sum(tf.mul(conv2dOp(xx as tf.Tensor4D, ww as tf.Tensor4D, bb as tf.Tensor1D, { stride: c.stride, padding: c.pad, gradient: mode }), r));
  const g = tf.grads(f)([x, w, b]);
  const out = await Promise.all(g.map((t) => t.data() as Promise<Float32Array>));
  tf.dispose([x, w, b, r, ...g]);
  return out;
}

describe(`conv2dOp gradients: ${UNDER_TEST} (auto) vs cpu native Conv2DBackpropFilter/Input`, () => {
  test.each(cases)('k=$k stride=$stride pad=$pad on $h×$w', async (c) => {
    await initBackend('cpu');
    const native = await convGrads(c, 'native');
    const composedCpu = await convGrads(c, 'composed');
    await initBackend('wasm');
    const wasm = await convGrads(c, 'auto');
    for (let i = 0; i < 3; i++) {
      expect(maxRelErr(composedCpu[i], native[i])).toBeLessThan(1e-5);
      expect(maxRelErr(wasm[i], native[i])).toBeLessThan(1e-5);
    }
  });

  test(`the native gradient fails where the kernel is missing (wasm: so the composed path is needed), else matches it (${UNDER_TEST})`, async () => {
    await initBackend(UNDER_TEST);
    if (tf.getKernel('Conv2DBackpropFilter', UNDER_TEST) === undefined) {
      await expect(convGrads(cases[0], 'native')).rejects.toThrow(/Conv2DBackpropFilter/);
    } else {
      const [native, composed] = [await convGrads(cases[0], 'native'), await convGrads(cases[0], 'composed')];
      for (let i = 0; i < 3; i++) expect(maxRelErr(composed[i], native[i])).toBeLessThan(1e-5);
    }
  });

  test('conv2dFilterGrad / conv2dInputGrad equal tfjs kernels on cpu', async () => {
    await initBackend('cpu');
    const xp = tf.tensor4d(rand(1 * 9 * 8 * 3, 5), [1, 9, 8, 3]);
    const w = tf.tensor4d(rand(3 * 3 * 3 * 2, 6), [3, 3, 3, 2]);
    const dy = tf.tensor4d(rand(1 * 4 * 3 * 2, 7), [1, 4, 3, 2]);
    const a = await (
      tf.engine().runKernel('Conv2DBackpropFilter', { x: xp, dy }, {
        strides: 2,
        pad: 'valid',
        dataFormat: 'NHWC',
        filterShape: [3, 3, 3, 2],
      }) as tf.Tensor
    ).data();
    const b = await conv2dFilterGrad(xp, dy, [3, 3, 3, 2], 2).data();
    expect(maxRelErr(b, a)).toBeLessThan(1e-6);
    const c = await tf.conv2dTranspose(dy, w, [1, 9, 8, 3], 2, 'valid').data();
    const d = await conv2dInputGrad(dy, w, [1, 9, 8, 3], 2).data();
    expect(maxRelErr(d, c)).toBeLessThan(1e-6);
    tf.dispose([xp, w, dy]);
  });

  test.each([
    { what: 'wide stride-1 (per-tap matMuls)', n: 2, h: 7, w: 6, cin: 80, cout: 72, stride: 1 },
    { what: 'narrow stride-1 (one batch-as-channels conv)', n: 3, h: 9, w: 7, cin: 5, cout: 4, stride: 1 },
    { what: 'wide stride-2 (one dilated conv, unreached rows sliced off)', n: 2, h: 10, w: 9, cin: 72, cout: 80, stride: 2 },
  ])('conv2dFilterGrad equals Conv2DBackpropFilter (cpu), and on wasm: $what', async ({ n, h, w, cin, cout, stride }) => {
    const ho = Math.floor((h - 3) / stride) + 1;
    const wo = Math.floor((w - 3) / stride) + 1;
    const xs = rand(n * h * w * cin, 11);
    const dys = rand(n * ho * wo * cout, 12);
    await initBackend('cpu');
    const refT = tf.tidy(() =>
      tf.engine().runKernel('Conv2DBackpropFilter', { x: tf.tensor4d(xs, [n, h, w, cin]), dy: tf.tensor4d(dys, [n, ho, wo, cout]) }, {
        strides: stride,
        pad: 'valid',
        dataFormat: 'NHWC',
        filterShape: [3, 3, cin, cout],
      }) as tf.Tensor,
    );
    const ref = await refT.data();
    refT.dispose();
    for (const backend of ['cpu', 'wasm'] as const) {
      await initBackend(backend);
      const before = tf.memory().numTensors;
      const t = tf.tidy(() => conv2dFilterGrad(tf.tensor4d(xs, [n, h, w, cin]), tf.tensor4d(dys, [n, ho, wo, cout]), [3, 3, cin, cout], stride));
      const got = await t.data();
      t.dispose();
      expect(tf.memory().numTensors).toBe(before);
      expect(maxRelErr(got, ref)).toBeLessThan(1e-5);
    }
  });

  test('gatherAxis gradient sums repeated indices (wasm composed = cpu native)', async () => {
    const run = async (mode: GradientMode) => {
      const x = tf.tensor3d(rand(2 * 3 * 4, 9), [2, 3, 4]);
      const r = tf.tensor3d(rand(2 * 5 * 4, 10), [2, 5, 4]);
      const g = tf.grad((xx: tf.Tensor) => tf.sum(tf.mul(gatherAxis(xx, [2, 0, 2, 1, 2], 1, mode), r)))(x);
      const out = (await g.data()) as Float32Array;
      tf.dispose([x, r, g]);
      return out;
    };
    await initBackend('cpu');
    const native = await run('native');
    await initBackend('wasm');
    expect(maxRelErr(await run('auto'), native)).toBeLessThan(1e-6);
  });
});

/** A tiny model that uses every layer and op of @ddsjs/nn. */
class Tiny extends Module {
  readonly emb = this.child('emb', new Embedding(7, 8));
  readonly ln = this.child('ln', new LayerNorm(8));
  readonly geglu = this.child('ff', new GEGLU(8, 8));
  readonly conv = this.child('conv', new Conv2d(4, 8, 3, { padding: 1 }));
  readonly down = this.child('down', new Conv2d(8, 8, 3, { stride: 2, padding: [0, 1, 0, 1] }));
  readonly norm = this.child('norm', new GroupNorm(2, 8, 1e-6));
  readonly q = this.child('q', new Linear(8, 8, false));
  readonly out = this.child('out', new Conv2d(8, 4, 1));

  forward(x: tf.Tensor4D, ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const ctx = this.geglu.forward(this.ln.forward(this.emb.forward(ids))) as tf.Tensor3D; // [1, 5, 8]
      const text = attention(ctx, ctx, ctx, { heads: 2, mask: causalMask(5) });
      let h = silu(this.conv.forward(x)); // [1, 6, 6, 8]
      h = this.down.forward(this.norm.forward(h)); // [1, 3, 3, 8]
      h = upsampleNearest(upsampleNearest(h), [7, 5]); // [1, 7, 5, 8]
      const seq = h.reshape([1, 35, 8]) as tf.Tensor3D;
      const a = attention(this.q.forward(seq) as tf.Tensor3D, text, quickGelu(text), { heads: 2, byteBudget: 64 });
      const y = this.out.forward(gelu(a).reshape([1, 7, 5, 8]) as tf.Tensor4D);
      return tf.sum(tf.mul(y, y));
    });
  }
}

describe('every layer is differentiable on wasm (variableGrads, wasm vs cpu)', () => {
  async function run(backend: 'wasm' | 'cpu') {
    await initBackend(backend);
    const m = new Tiny();
    let s = 100;
    m.initialize(0, (_, p) => tf.tensor(rand(p.shape.reduce((a, b) => a * b, 1), s++, 0.5), [...p.shape]));
    const x = tf.variable(tf.tensor4d(rand(6 * 6 * 4, 1), [1, 6, 6, 4]));
    const ids = tf.tensor2d([[1, 6, 3, 3, 0]], [1, 5], 'int32');
    const { value, grads } = tf.variableGrads(() => m.forward(x, ids) as tf.Scalar, [...m.trainableVariables(), x]);
    const names = [...m.namedParameters().map(([n]) => n), 'input'];
    const out: Record<string, Float32Array> = {};
    const vars = [...m.trainableVariables(), x];
    for (let i = 0; i < vars.length; i++) out[names[i]] = (await grads[vars[i].name].data()) as Float32Array;
    const loss = (await value.data())[0];
    tf.dispose([value, ...Object.values(grads), x, ids]);
    m.dispose();
    return { loss, out };
  }

  test('gradients w.r.t. all parameters and the input agree', async () => {
    const cpu = await run('cpu');
    const wasm = await run('wasm');
    expect(Math.abs(wasm.loss - cpu.loss) / Math.abs(cpu.loss)).toBeLessThan(1e-5);
    expect(Object.keys(wasm.out).length).toBe(15);
    for (const [name, g] of Object.entries(cpu.out)) {
      expect(g.some((v) => v !== 0)).toBe(true);
      const err = maxRelErr(wasm.out[name], g);
      if (err >= 1e-4) throw new Error(`${name}: wasm vs cpu gradient rel err ${err}`);
    }
  });

  test('repeated gradient steps do not grow tf.memory().numTensors', async () => {
    await initBackend('wasm');
    const conv = new Conv2d(3, 3, 3, { stride: 2, padding: 1 }).initialize(1);
    const x = tf.randomNormal([1, 6, 6, 3]) as tf.Tensor4D;
    const step = () => {
      const { value, grads } = tf.variableGrads(() => tf.sum(conv.forward(x)) as tf.Scalar, conv.trainableVariables());
      tf.dispose([value, ...Object.values(grads)]);
    };
    step();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) step();
    expect(tf.memory().numTensors).toBe(before);
    conv.dispose();
    x.dispose();
  });
});

describe('globalNorm', () => {
  test('equals sqrt(Σ t²) over 700 tensors of mixed shapes, leaks nothing, and refuses an empty list', async () => {
    await initBackend('wasm');
    const ts = Array.from({ length: 700 }, (_, i) => tf.tensor(rand(1 + (i % 5), 10 + i), [1 + (i % 5)]));
    let want = 0;
    for (const t of ts) for (const v of await t.data()) want += v * v;
    const before = tf.memory().numTensors;
    const n = globalNorm(ts);
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(Math.abs((await n.data())[0] - Math.sqrt(want)) / Math.sqrt(want)).toBeLessThan(1e-6);
    n.dispose();
    expect(() => globalNorm([])).toThrow(/globalNorm: no tensors/);
    tf.dispose(ts);
  });
});
