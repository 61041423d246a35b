// `dds-weights average`: checkpoint averaging (toy-train/test/keep-checkpoints.test.ts: the checkpoints
// `dds-toy train --keep-checkpoints` keeps, averaged).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsFile, writeSafetensors, f32ToF16 } from '@ddsjs/safetensors';
import { averageCheckpoints } from '../src/average';
import { main } from '../src/main';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dds-average-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const file = async (name: string, tensors: Record<string, { dtype: 'F32' | 'F16' | 'I64'; shape: number[]; data: Float32Array | Uint16Array | BigInt64Array }>) => {
  const p = path.join(tmp, name);
  await writeSafetensors(p, tensors);
  return p;
};

describe('averageCheckpoints', () => {
  it('writes the element-wise mean in float32, of float32 and float16 inputs alike', async () => {
    const a = await file('a.safetensors', { w: { dtype: 'F32', shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }, b: { dtype: 'F32', shape: [1], data: Float32Array.from([-1]) } });
    const b = await file('b.safetensors', { w: { dtype: 'F32', shape: [2, 2], data: Float32Array.from([3, 2, 1, 0]) }, b: { dtype: 'F32', shape: [1], data: Float32Array.from([2]) } });
    const c = await file('c.safetensors', { w: { dtype: 'F16', shape: [2, 2], data: f32ToF16(Float32Array.from([2, 5, 8, 0.5])) }, b: { dtype: 'F16', shape: [1], data: f32ToF16(Float32Array.from([2])) } });
    const out = path.join(tmp, 'mean.safetensors');
    const seen: number[] = [];
    const r = await averageCheckpoints(out, [a, b, c], { onProgress: (d) => seen.push(d) });
    expect(r).toEqual({ output: out, inputs: 3, tensors: 2 });
    expect(seen).toEqual([1, 2]);
    const f = await SafetensorsFile.open(out);
    expect(f.info('w')).toMatchObject({ dtype: 'F32', shape: [2, 2] });
    expect(Array.from(await f.readFloat32('w'))).toEqual([2, 3, 4, 1.5]);
    expect(Array.from(await f.readFloat32('b'))).toEqual([1]);
    await f.close();
    await expect(averageCheckpoints(out, [a, b])).rejects.toThrow(/exists; pass --force/);
    await averageCheckpoints(out, [a, b], { force: true });
  });

  it('refuses checkpoints that do not match, naming the file and tensor', async () => {
    const a = await file('m1.safetensors', { w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
    const shape = await file('m2.safetensors', { w: { dtype: 'F32', shape: [1, 2], data: Float32Array.from([1, 2]) } });
    const other = await file('m3.safetensors', { v: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
    const extra = await file('m4.safetensors', { w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) }, x: { dtype: 'F32', shape: [1], data: Float32Array.from([0]) } });
    const ints = await file('m5.safetensors', { w: { dtype: 'I64', shape: [2], data: BigInt64Array.from([1n, 2n]) } });
    const out = path.join(tmp, 'bad.safetensors');
    await expect(averageCheckpoints(out, [a])).rejects.toThrow(/at least two checkpoints/);
    await expect(averageCheckpoints(out, [a, shape])).rejects.toThrow(/tensor 'w' has shape \[1, 2\] in .*m2.safetensors but \[2\] in .*m1.safetensors/);
    await expect(averageCheckpoints(out, [a, other])).rejects.toThrow(/m3.safetensors has no tensor 'w'/);
    await expect(averageCheckpoints(out, [a, extra])).rejects.toThrow(/m4.safetensors has a tensor 'x' that .*m1.safetensors lacks/);
    await expect(averageCheckpoints(out, [ints, ints])).rejects.toThrow(/dtype I64; only float tensors/);
    await expect(averageCheckpoints(a, [a, a])).rejects.toThrow(/is also an input/);
    await expect(averageCheckpoints(out, [a, path.join(tmp, 'missing.safetensors')])).rejects.toThrow(/missing.safetensors/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('dds-weights average: usage errors and output', async () => {
    await expect(main(['average', 'out.safetensors', 'one.safetensors'])).rejects.toThrow(/expected <output.safetensors> and at least two checkpoints/);
    const a = await file('c1.safetensors', { w: { dtype: 'F32', shape: [1], data: Float32Array.from([1]) } });
    const b = await file('c2.safetensors', { w: { dtype: 'F32', shape: [1], data: Float32Array.from([2]) } });
    const lines: string[] = [];
    expect(await main(['average', path.join(tmp, 'cmean.safetensors'), a, b], (s) => lines.push(s))).toBe(0);
    expect(lines[0]).toMatch(/^averaged 2 checkpoints \(1 tensors\) → /);
  });
});

describe('dds-weights average (the built bin): the output is never one of the inputs (issue 25, item 2)', () => {
  const BIN = path.resolve(__dirname, '..', 'dist', 'bin.js');
  const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: tmp, encoding: 'utf8' });

  it('refuses ./a.safetensors given with a.safetensors, a symbolic or hard link to an input, and leaves the input intact', async () => {
    if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build`);
    const a = await file('self-a.safetensors', { w: { dtype: 'F32', shape: [2], data: Float32Array.from([1, 2]) } });
    await file('self-b.safetensors', { w: { dtype: 'F32', shape: [2], data: Float32Array.from([3, 4]) } });
    fs.symlinkSync(a, path.join(tmp, 'self-sym.safetensors'));
    fs.linkSync(a, path.join(tmp, 'self-hard.safetensors'));
    const before = fs.readFileSync(a);
    for (const out of ['./self-a.safetensors', 'self-sym.safetensors', 'self-hard.safetensors']) {
      const r = run('average', out, 'self-a.safetensors', 'self-b.safetensors', '--force');
      expect(r.status).toBe(1);
      expect(r.stderr.trim()).toBe(`dds-weights: output ${out} is also an input (self-a.safetensors); choose another output`);
    }
    expect(fs.readFileSync(a).equals(before)).toBe(true);
    const ok = run('average', 'self-mean.safetensors', 'self-a.safetensors', 'self-b.safetensors');
    expect(ok.status).toBe(0);
    const bad = run('average', '/sys/mean.safetensors', 'self-a.safetensors', 'self-b.safetensors');
    expect(bad.stderr).toMatch(/^dds-weights: cannot write to output folder \/sys: /);
  });
});
