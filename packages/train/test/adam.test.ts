import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { globalNorm, initBackend, Parameter } from '@ddsjs/nn';
import { writeSafetensors } from '@ddsjs/safetensors';
import { Adam, ADAM_STATE_FORMAT, clipScale, gradNorm } from '../src';

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu', { quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-adam-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function param(shape: number[], values: number[]): Parameter {
  const p = new Parameter(shape, 'linear');
  p.set(tf.tensor(values, shape));
  return p;
}

/** The update both trainers wrote before the toolkit (translator-train.ts and train-toy.ts), step for step. */
function oldAdamStep(params: [string, Parameter][], m: Map<string, tf.Tensor>, v: Map<string, tf.Tensor>, grads: Map<string, tf.Tensor>, t: number, lr: number, scale: number): void {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const lrT = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
  for (const [n, p] of params) {
    const g = tf.mul(grads.get(n)!, scale);
    const m1 = tf.add(tf.mul(m.get(n)!, b1), tf.mul(g, 1 - b1));
    const v1 = tf.add(tf.mul(v.get(n)!, b2), tf.mul(tf.square(g), 1 - b2));
    p.value.assign(tf.sub(p.value, tf.mul(lrT, tf.div(m1, tf.add(tf.sqrt(v1), eps)))));
    m.get(n)!.dispose();
    v.get(n)!.dispose();
    m.set(n, tf.keep(m1));
    v.set(n, tf.keep(v1));
  }
}

describe('Adam', () => {
  it('takes bit-identical steps to the trainers’ former implementations, clipping included', async () => {
    const init = { w: [0.5, -1, 2, 0.25], b: [0.1, -0.2] };
    const mk = (): [string, Parameter][] => [['w', param([2, 2], init.w)], ['b', param([2], init.b)]];
    const ours = mk();
    const ref = mk();
    const adam = new Adam(ours);
    const m = new Map(ref.map(([n, p]) => [n, tf.zerosLike(p.value)] as [string, tf.Tensor]));
    const v = new Map(ref.map(([n, p]) => [n, tf.zerosLike(p.value)] as [string, tf.Tensor]));
    for (let t = 1; t <= 4; t++) {
      const grads = new Map<string, tf.Tensor>([['w', tf.tensor([t, -2 * t, 0.5, 3], [2, 2])], ['b', tf.tensor([-t, 0.25])]]);
      const norm = await gradNorm([...grads.values()]);
      const refNormT = globalNorm([...grads.values()]);
      expect(norm).toBe((await refNormT.data())[0]);
      refNormT.dispose();
      const scale = clipScale(norm, 2);
      adam.apply(grads, 1e-2, scale);
      tf.tidy(() => oldAdamStep(ref, m, v, grads, t, 1e-2, scale));
      tf.dispose([...grads.values()]);
    }
    expect(adam.step).toBe(4);
    for (let i = 0; i < ours.length; i++) expect(Array.from(await ours[i][1].value.data())).toEqual(Array.from(await ref[i][1].value.data()));
    adam.dispose();
    tf.dispose([...m.values(), ...v.values()]);
    for (const [, p] of [...ours, ...ref]) p.dispose();
  });

  it('counts a missing gradient as zero and does not grow tf.memory().numTensors over repeated steps', async () => {
    const p = param([3], [1, 2, 3]);
    const q = param([1], [5]);
    const adam = new Adam([['p', p], ['q', q]]);
    const g = tf.tensor([1, 1, 1]);
    adam.apply({ p: g }, 0.1);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) adam.apply({ p: g }, 0.1, 0.5);
    await adam.state();
    expect(tf.memory().numTensors).toBe(before);
    expect(Array.from(await q.value.data())).toEqual([5]);
    expect((await p.value.data())[0]).toBeLessThan(1);
    g.dispose();
    adam.dispose();
    p.dispose();
    q.dispose();
  });

  it('saves its state to one safetensors file and restores it exactly (the next steps equal)', async () => {
    const file = path.join(tmp, 'adam.safetensors');
    const a = param([2], [1, -1]);
    const adam = new Adam([['a', a]], { beta1: 0.8 });
    const g = tf.tensor([0.3, -0.7]);
    adam.apply({ a: g }, 0.05);
    adam.apply({ a: g }, 0.05);
    await adam.save(file, { checkpoint_id: 'abc' });
    const b = param([2], Array.from(await a.value.data()));
    const back = new Adam([['a', b]], { beta1: 0.8 });
    const before = tf.memory().numTensors;
    await back.load(file, { checkpoint_id: 'abc' });
    expect(tf.memory().numTensors).toBe(before);
    expect(back.step).toBe(2);
    adam.apply({ a: g }, 0.05);
    back.apply({ a: g }, 0.05);
    expect(Array.from(await b.value.data())).toEqual(Array.from(await a.value.data()));
    const st = await back.state();
    expect(st.metadata).toMatchObject({ format: ADAM_STATE_FORMAT, step: '3', beta1: '0.8', beta2: '0.999', eps: '1e-8' });
    expect(Object.keys(st.tensors).sort()).toEqual(['m.a', 'v.a']);

    await expect(back.load(file, { checkpoint_id: 'xyz' })).rejects.toThrow(/its checkpoint_id is "abc", expected "xyz"/);
    const other = new Adam([['a', b]]);
    await expect(other.load(file)).rejects.toThrow(/saved with beta1 0\.8, this optimiser has 0\.9/);
    const wrong = param([3], [0, 0, 0]);
    const shaped = new Adam([['a', wrong]], { beta1: 0.8 });
    await expect(shaped.load(file)).rejects.toThrow(/'m\.a' is \[2\], expected \[3\]/);
    const missing = new Adam([['c', wrong]], { beta1: 0.8 });
    await expect(missing.load(file)).rejects.toThrow(/missing optimiser tensors \(2\): m\.c, v\.c/);
    const old = path.join(tmp, 'old.safetensors');
    await writeSafetensors(old, { 'm.a': { dtype: 'F32', shape: [2], data: new Float32Array(2) }, 'v.a': { dtype: 'F32', shape: [2], data: new Float32Array(2) } }, { adam_step: '4' });
    await expect(back.load(old)).rejects.toThrow(/not a ddsjs-adam-v1 optimiser state .*start the run afresh/);
    expect(back.step).toBe(3);
    for (const x of [adam, back, other, shaped, missing]) x.dispose();
    for (const x of [a, b, wrong]) x.dispose();
    g.dispose();
  });

  it('rejects bad hyper-parameters and learning rates naming them', () => {
    const p = param([1], [0]);
    expect(() => new Adam([['p', p]], { beta1: 1 })).toThrow(/Adam: beta1 must be in \[0, 1\), got 1/);
    expect(() => new Adam([['p', p]], { eps: -1 })).toThrow(/Adam: eps must be a non-negative finite number/);
    expect(() => new Adam([['p', p], ['p', p]])).toThrow(/'p' appears twice/);
    const adam = new Adam([['p', p]]);
    expect(() => adam.apply({}, 0)).toThrow(/Adam.apply: lr must be a positive finite number, got 0/);
    adam.dispose();
    p.dispose();
  });

  it('clipScale clips only above the limit', () => {
    expect(clipScale(4, 2)).toBe(0.5);
    expect(clipScale(1, 2)).toBe(1);
    expect(clipScale(1e9, Infinity)).toBe(1);
  });
});
