import * as tf from '@tensorflow/tfjs';
import { initBackend, Module, Linear, Conv2d, GroupNorm, StateDictError, StateDictSource, toTorchLayout, tfSeed, residual, sequential, silu } from '@ddsjs/nn';
import { rand } from './helpers';

/** An in-memory state dict in PyTorch layout. */
class MapSource implements StateDictSource {
  constructor(readonly entries: Record<string, { shape: number[]; data: Float32Array }>) {}
  keys() {
    return Object.keys(this.entries);
  }
  shape(k: string) {
    return this.entries[k].shape;
  }
  async read(k: string) {
    return this.entries[k].data;
  }
}

class Net extends Module {
  readonly conv = this.child('conv', new Conv2d(2, 3, 3, { padding: 1 }));
  readonly blocks = this.list('blocks', [new Linear(3, 4), new Linear(4, 2, false)]);
  readonly norm = this.child('norm', new GroupNorm(1, 2));
}

const n = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function torchDict(): Record<string, { shape: number[]; data: Float32Array }> {
  const d: Record<string, { shape: number[]; data: Float32Array }> = {};
  const add = (k: string, shape: number[], seed: number) => (d[k] = { shape, data: rand(n(shape), seed) });
  add('conv.weight', [3, 2, 3, 3], 1);
  add('conv.bias', [3], 2);
  add('blocks.0.weight', [4, 3], 3);
  add('blocks.0.bias', [4], 4);
  add('blocks.1.weight', [2, 4], 5);
  add('norm.weight', [2], 6);
  add('norm.bias', [2], 7);
  return d;
}

describe('Module.loadStateDict', () => {
  beforeAll(() => initBackend('wasm'));

  test('parameter names follow the module tree', () => {
    expect(new Net().namedParameters().map(([k]) => k)).toEqual([
      'conv.weight', 'conv.bias', 'blocks.0.weight', 'blocks.0.bias', 'blocks.1.weight', 'norm.weight', 'norm.bias',
    ]);
  });

  test('converts PyTorch layouts: conv [out,in,kh,kw] → [kh,kw,in,out], linear [out,in] → [in,out]', async () => {
    const d = torchDict();
    const net = new Net();
    const seen: string[] = [];
    await net.loadStateDict(new MapSource(d), { onTensor: (k, i, total) => seen.push(`${i + 1}/${total} ${k}`) });
    expect(seen).toHaveLength(7);
    expect(seen[6]).toBe('7/7 norm.bias');
    const cw = await net.conv.weight.value.data();
    expect(net.conv.weight.value.shape).toEqual([3, 3, 2, 3]);
    const src = d['conv.weight'].data;
    for (let o = 0; o < 3; o++) for (let i = 0; i < 2; i++) for (let y = 0; y < 3; y++) for (let x = 0; x < 3; x++) {
      expect(cw[((y * 3 + x) * 2 + i) * 3 + o]).toBe(src[((o * 2 + i) * 3 + y) * 3 + x]);
    }
    const lw = await net.blocks[0].weight.value.data();
    expect(net.blocks[0].weight.value.shape).toEqual([3, 4]);
    const ls = d['blocks.0.weight'].data;
    for (let o = 0; o < 4; o++) for (let i = 0; i < 3; i++) expect(lw[i * 4 + o]).toBe(ls[o * 3 + i]);
    expect(Array.from(await net.norm.bias!.value.data())).toEqual(Array.from(d['norm.bias'].data));
    // Round trip back to PyTorch layout.
    const back = await toTorchLayout(net.conv.weight.value, 'conv').data();
    expect(Array.from(back)).toEqual(Array.from(src));
    net.dispose();
  });

  test('strict mode lists every missing, unexpected and mis-shaped key in one error and loads nothing', async () => {
    const d = torchDict();
    delete d['conv.bias'];
    delete d['blocks.1.weight'];
    d['extra.weight'] = { shape: [1], data: new Float32Array(1) };
    d['blocks.0.weight'] = { shape: [3, 4], data: rand(12, 9) };
    d['norm.weight'] = { shape: [3], data: rand(3, 9) };
    const net = new Net();
    let err: StateDictError | undefined;
    try {
      await net.loadStateDict(new MapSource(d));
    } catch (e) {
      err = e as StateDictError;
    }
    expect(err).toBeInstanceOf(StateDictError);
    expect(err!.missing).toEqual(['conv.bias', 'blocks.1.weight']);
    expect(err!.unexpected).toEqual(['extra.weight']);
    expect(err!.misShaped).toEqual([
      { key: 'blocks.0.weight', expected: [4, 3], got: [3, 4] },
      { key: 'norm.weight', expected: [2], got: [3] },
    ]);
    for (const k of ['conv.bias', 'blocks.1.weight', 'extra.weight', 'blocks.0.weight expected [4,3] got [3,4]', 'norm.weight expected [2] got [3]']) {
      expect(err!.message).toContain(k);
    }
    expect(net.namedParameters().every(([, p]) => !p.isSet)).toBe(true);
  });

  test('non-strict mode ignores unexpected keys and keeps missing parameters, but mis-shapes still throw', async () => {
    const d = torchDict();
    delete d['norm.bias'];
    d['extra.weight'] = { shape: [1], data: new Float32Array(1) };
    const net = new Net();
    await net.loadStateDict(new MapSource(d), { strict: false });
    expect(net.norm.bias!.isSet).toBe(false);
    expect(net.conv.weight.isSet).toBe(true);
    net.initialize();
    expect(Array.from(await net.norm.bias!.value.data())).toEqual([0, 0]);
    d['conv.bias'] = { shape: [4], data: rand(4, 1) };
    await expect(net.loadStateDict(new MapSource(d), { strict: false })).rejects.toThrow(/conv\.bias expected \[3\] got \[4\]/);
    net.dispose();
  });

  test('initialize: norm scales 1 and biases 0 whatever the name, weights bounded by 1/√fan_in', async () => {
    class Odd extends Module {
      readonly gn = this.child('gn', new GroupNorm(1, 2));
      readonly fc = this.child('fc', new Linear(16, 3));
    }
    const m = new Odd().initialize(3);
    expect(Array.from(await m.gn.weight!.value.data())).toEqual([1, 1]);
    expect(Array.from(await m.gn.bias!.value.data())).toEqual([0, 0]);
    expect(Array.from(await m.fc.bias!.value.data())).toEqual([0, 0, 0]);
    const w = await m.fc.weight.value.data();
    expect(w.every((v) => Math.abs(v) <= 0.25)).toBe(true);
    expect(w.some((v) => v !== 0)).toBe(true);
    expect(m.trainableVariables()).toHaveLength(4);
    m.setTrainable(false);
    expect(m.trainableVariables()).toHaveLength(0);
    m.dispose();
  });

  test('loading does not leak tensors and replaces values in place', async () => {
    const net = new Net();
    await net.loadStateDict(new MapSource(torchDict()));
    const before = tf.memory().numTensors;
    await net.loadStateDict(new MapSource(torchDict()));
    expect(tf.memory().numTensors).toBe(before);
    net.dispose();
  });
});

describe('tfSeed', () => {
  it('makes seed 0 a real seed (tfjs treats a falsy seed as none) and leaves others unchanged', () => {
    const draw = (seed: number) => Array.from(tf.randomNormal([8], 0, 1, 'float32', tfSeed(seed)).dataSync());
    expect(draw(0)).toEqual(draw(0));
    expect(draw(7)).toEqual(Array.from(tf.randomNormal([8], 0, 1, 'float32', 7).dataSync()));
    expect(draw(0)).not.toEqual(draw(7));
    expect(tfSeed(3)).toBe(3);
    expect(() => tfSeed(NaN)).toThrow(/finite/);
  });
});

/** `norm → silu → conv`, written with the composition helpers. */
class Block extends Module {
  readonly norm = this.child('norm', new GroupNorm(1, 2));
  readonly conv = this.child('conv', new Conv2d(2, 2, 3, { padding: 1 }));
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return residual(x, [this.norm, silu, this.conv]);
  }
}

describe('Module.call, sequential and residual', () => {
  beforeAll(() => initBackend('wasm'));
  const x = () => tf.tensor4d(rand(2 * 4 * 4 * 2, 3), [2, 4, 4, 2]);

  test('call runs forward in tf.tidy: only the result survives, equal to forward', async () => {
    const b = new Block().initialize(1);
    const input = x();
    const ref = tf.tidy(() => b.forward(input));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const y = b.call(input);
      expect(tf.memory().numTensors).toBe(before + 1);
      expect(Array.from(await y.data())).toEqual(Array.from(await ref.data()));
      y.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([input, ref]);
    b.dispose();
  });

  test('sequential applies the steps in order, frees each intermediate, keeps x; falsy steps are skipped', async () => {
    const input = tf.tensor1d([1, 2, 3]);
    const before = tf.memory().numTensors;
    const seen: tf.Tensor[] = [];
    const y = sequential(
      input,
      (t) => (seen.push(t), tf.add(t, 1)),
      null,
      (t) => (seen.push(t), tf.mul(t, 2)),
      false,
      (t) => (seen.push(t), t), // returned unchanged: not disposed
      undefined,
      (t) => (seen.push(t), tf.sub(t, 3)),
    );
    expect(Array.from(await y.data())).toEqual([1, 3, 5]); // (x + 1)·2 − 3
    expect(input.isDisposed).toBe(false);
    expect(seen[0]).toBe(input);
    expect(seen[1].isDisposed).toBe(true); // x + 1
    expect(seen[2]).toBe(seen[3]); // the identity step got (and returned) the same tensor
    expect(seen[3].isDisposed).toBe(true); // (x + 1)·2, freed after the last step
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose([input, y]);
  });

  test('residual is shortcut(x) + f(x); f may be a list; only the sum survives', async () => {
    const input = tf.tensor1d([1, -2, 3]);
    const before = tf.memory().numTensors;
    const a = residual(input, (t) => tf.mul(t, 10));
    expect(Array.from(await a.data())).toEqual([11, -22, 33]);
    const b = residual(input, [(t) => tf.mul(t, 10), tf.abs], (t) => tf.neg(t));
    expect(Array.from(await b.data())).toEqual([9, 22, 27]); // −x + |10x|
    expect(input.isDisposed).toBe(false);
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([input, a, b]);
  });

  test('sequential keeps about two activations alive where one tidy keeps them all', async () => {
    const input = tf.ones([3]); // 12 bytes
    const steps = [1, 2, 3, 4].map((k) => (t: tf.Tensor) => tf.add(t, k));
    const peakAbove = async (f: () => tf.Tensor): Promise<number> => {
      const base = tf.memory().numBytes;
      const p = await tf.profile(f);
      expect(Array.from(await (p.result as tf.Tensor).data())).toEqual([11, 11, 11]);
      (p.result as tf.Tensor).dispose();
      return p.peakBytes - base;
    };
    const plain = await peakAbove(() => tf.tidy(() => steps.reduce((h, f) => f(h), input)));
    const seq = await peakAbove(() => tf.tidy(() => sequential(input, ...steps)));
    expect(plain - seq).toBe(2 * 12); // 4 live intermediates against 2
    input.dispose();
  });

  test('a module written with the helpers gives the values and gradients of the plain composition', async () => {
    const b = new Block().initialize(2);
    const input = x();
    const plain = (t: tf.Tensor4D) => tf.add(t, b.conv.forward(silu(b.norm.forward(t)))) as tf.Tensor4D;
    const pPlain = await tf.profile(() => tf.tidy(() => plain(input)));
    const pCall = await tf.profile(() => b.call(input));
    expect(Array.from(await (pCall.result as tf.Tensor).data())).toEqual(Array.from(await (pPlain.result as tf.Tensor).data()));
    expect(pCall.newTensors).toBe(1);
    expect(pCall.peakBytes).toBeLessThanOrEqual(pPlain.peakBytes);
    const gRef = tf.grad((t: tf.Tensor) => tf.sum(tf.square(plain(t as tf.Tensor4D))))(input);
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.square(b.call(t as tf.Tensor4D))))(input);
    expect(Array.from(await g.data())).toEqual(Array.from(await gRef.data()));
    tf.dispose([input, pPlain.result as tf.Tensor, pCall.result as tf.Tensor, gRef, g]);
    b.dispose();
  });
});
