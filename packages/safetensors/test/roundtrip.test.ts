import { promises as fsp } from 'fs';
import * as path from 'path';
import {
  SafetensorsError,
  SafetensorsFile,
  TensorData,
  f16ToF32,
  bf16ToF32,
  writeSafetensors,
} from '@ddsjs/safetensors';
import { tmpDir } from './helpers';

const FIXTURES = path.join(__dirname, '../../../fixtures/tiny-sd15');

let dir: string;
beforeAll(async () => {
  dir = await tmpDir();
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

function allTensors(): Record<string, TensorData> {
  const f16 = new Uint16Array([0x0000, 0x8000, 0x3c00, 0xbc00, 0x7c00, 0xfc00, 0x7e01, 0x0001, 0x03ff, 0x7bff, 0x3555, 0xc248]);
  const bf16 = new Uint16Array([0x0000, 0x8000, 0x3f80, 0xbf80, 0x7f80, 0xff80, 0x7fc1, 0x0001, 0x4049, 0xc2f7]);
  return {
    f64: { dtype: 'F64', shape: [2, 3], data: new Float64Array([0, -0, 1e300, -1.5, Math.PI, 1 / 3]) },
    f32: { dtype: 'F32', shape: [3, 1], data: new Float32Array([1.5, -2.25, 3.4e38]) },
    f16: { dtype: 'F16', shape: [3, 4], data: f16 },
    bf16: { dtype: 'BF16', shape: [10], data: bf16 },
    i64: { dtype: 'I64', shape: [4], data: new BigInt64Array([0n, -1n, 9007199254740993n, -(2n ** 63n)]) },
    u64: { dtype: 'U64', shape: [3], data: new BigUint64Array([0n, 2n ** 64n - 1n, 12345678901234567890n]) },
    i32: { dtype: 'I32', shape: [2, 2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, -7]) },
    u32: { dtype: 'U32', shape: [2], data: new Uint32Array([2 ** 32 - 1, 17]) },
    i16: { dtype: 'I16', shape: [3], data: new Int16Array([-32768, 32767, -2]) },
    u16: { dtype: 'U16', shape: [3], data: new Uint16Array([65535, 0, 300]) },
    i8: { dtype: 'I8', shape: [1, 3], data: new Int8Array([-128, 127, -1]) },
    u8: { dtype: 'U8', shape: [5], data: new Uint8Array([0, 1, 128, 254, 255]) },
    bool: { dtype: 'BOOL', shape: [2, 2], data: new Uint8Array([1, 0, 0, 1]) },
    scalar: { dtype: 'F32', shape: [], data: new Float32Array([42]) },
    empty: { dtype: 'F32', shape: [0, 5], data: new Float32Array(0) },
    'ünïcode ✓ key': { dtype: 'I32', shape: [1], data: new Int32Array([5]) },
  };
}

describe('round trip', () => {
  test('every dtype writes and reads back bit-exactly, with metadata', async () => {
    const p = path.join(dir, 'all.safetensors');
    const tensors = allTensors();
    await writeSafetensors(p, tensors, { format: 'pt', note: 'héllo "quoted"' });
    const f = await SafetensorsFile.open(p);
    try {
      expect(f.metadata).toEqual({ format: 'pt', note: 'héllo "quoted"' });
      expect(f.keys()).toEqual(Object.keys(tensors).sort());
      const ctorName: Record<string, string> = {
        F64: 'Float64Array', F32: 'Float32Array', F16: 'Uint16Array', BF16: 'Uint16Array', I64: 'BigInt64Array',
        U64: 'BigUint64Array', I32: 'Int32Array', U32: 'Uint32Array', I16: 'Int16Array', U16: 'Uint16Array',
        I8: 'Int8Array', U8: 'Uint8Array', BOOL: 'Uint8Array',
      };
      for (const [key, t] of Object.entries(tensors)) {
        const info = f.info(key);
        expect(info.dtype).toBe(t.dtype);
        expect(info.shape).toEqual([...t.shape]);
        expect(info.byteLength).toBe(t.data.byteLength);
        const got = await f.read(key);
        expect(Object.prototype.toString.call(got)).toBe(`[object ${ctorName[t.dtype]}]`);
        expect(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))).toBe(true);
        // readFloat32 converts by value
        const f32 = await f.readFloat32(key);
        expect(f32).toBeInstanceOf(Float32Array);
        expect(f32.length).toBe(t.data.length);
        let expected: Float32Array;
        if (t.dtype === 'F16') expected = f16ToF32(t.data);
        else if (t.dtype === 'BF16') expected = bf16ToF32(t.data);
        else expected = Float32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
        for (let i = 0; i < expected.length; i++) expect(Object.is(f32[i], expected[i]) || (isNaN(f32[i]) && isNaN(expected[i]))).toBe(true);
      }
      // spot values
      expect(Array.from(await f.readFloat32('f16')).slice(0, 6)).toEqual([0, -0, 1, -1, Infinity, -Infinity]);
      expect(Array.from(await f.readFloat32('bf16')).slice(0, 6)).toEqual([0, -0, 1, -1, Infinity, -Infinity]);
      expect(Array.from(await f.readFloat32('i64'))).toEqual([0, -1, 9007199254740992, -(2 ** 63)]);
      expect(Array.from(await f.readFloat32('bool'))).toEqual([1, 0, 0, 1]);
      expect((await f.read<'I64'>('i64'))[2]).toBe(9007199254740993n);
      // concurrent reads on one handle
      const all = await Promise.all(f.keys().map((k) => f.read(k)));
      expect(all.map((a) => a.length)).toEqual(f.keys().map((k) => tensors[k].data.length));
    } finally {
      await f.close();
    }
  });

  test('layout matches the Rust library: dtype-descending then name order, 8-aligned space-padded header', async () => {
    const p = path.join(dir, 'layout.safetensors');
    await writeSafetensors(p, {
      b: { dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 3]) },
      a: { dtype: 'U8', shape: [1], data: new Uint8Array([9]) },
      z: { dtype: 'F64', shape: [1], data: new Float64Array([1]) },
      c: { dtype: 'F16', shape: [1], data: new Uint16Array([0x3c00]) },
      d: { dtype: 'I64', shape: [1], data: new BigInt64Array([1n]) },
    });
    const buf = await fsp.readFile(p);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = buf.subarray(8, 8 + n).toString('utf8');
    const json =
      '{"d":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"z":{"dtype":"F64","shape":[1],"data_offsets":[8,16]},' +
      '"c":{"dtype":"F16","shape":[1],"data_offsets":[16,18]},"a":{"dtype":"U8","shape":[1],"data_offsets":[18,19]},' +
      '"b":{"dtype":"U8","shape":[3],"data_offsets":[19,22]}}';
    expect(n).toBe(Math.ceil(json.length / 8) * 8);
    expect(header).toBe(json.padEnd(n, ' '));
    expect(buf.length).toBe(8 + n + 22);
  });

  test('fixtures re-written by writeSafetensors are byte-identical to the Python-written originals', async () => {
    const files = [
      'text_encoder/model.safetensors',
      'text_encoder/model.fp16.safetensors',
      'golden/tokenizer.safetensors',
      'golden/unet.safetensors',
      'vae/diffusion_pytorch_model.fp16.safetensors',
    ];
    for (const rel of files) {
      const src = path.join(FIXTURES, rel);
      const f = await SafetensorsFile.open(src);
      const t: Record<string, TensorData> = {};
      for (const k of f.keys()) {
        const i = f.info(k);
        t[k] = { dtype: i.dtype, shape: i.shape, data: await f.read(k) } as TensorData;
      }
      await f.close();
      const out = path.join(dir, 'copy.safetensors');
      await writeSafetensors(out, t, Object.keys(f.metadata).length ? f.metadata : undefined, { fsync: false });
      expect({ rel, same: (await fsp.readFile(out)).equals(await fsp.readFile(src)) }).toEqual({ rel, same: true });
    }
  });

  test('accepts a Map and subarray views (byteOffset respected)', async () => {
    const p = path.join(dir, 'map.safetensors');
    const backing = new Float32Array([9, 9, 1, 2, 3, 9]);
    await writeSafetensors(p, new Map<string, TensorData>([['x', { dtype: 'F32', shape: [3], data: backing.subarray(2, 5) }]]));
    const f = await SafetensorsFile.open(p);
    expect(Array.from(await f.read<'F32'>('x'))).toEqual([1, 2, 3]);
    expect(f.metadata).toEqual({});
    await f.close();
  });

  test('readFloat32 converts large F16/BF16 tensors across chunk boundaries', async () => {
    const p = path.join(dir, 'big16.safetensors');
    const n = 8_400_001; // > 16 MB of F16, odd length
    const h = new Uint16Array(n);
    for (let i = 0; i < n; i++) h[i] = (i * 2654435761) >>> 16;
    await writeSafetensors(p, { h: { dtype: 'F16', shape: [n], data: h }, b: { dtype: 'BF16', shape: [n], data: h } }, undefined, { fsync: false });
    const f = await SafetensorsFile.open(p);
    const [a, b] = [await f.readFloat32('h'), await f.readFloat32('b')];
    await f.close();
    const ea = f16ToF32(h);
    const eb = bf16ToF32(h);
    const ba = new Uint32Array(a.buffer), bea = new Uint32Array(ea.buffer);
    const bb = new Uint32Array(b.buffer), beb = new Uint32Array(eb.buffer);
    let bad = 0;
    for (let i = 0; i < n; i++) if (ba[i] !== bea[i] || bb[i] !== beb[i]) bad++;
    expect(bad).toBe(0);
  });

  test('reads fail cleanly after close; close is idempotent; unknown key and F8 dtype errors', async () => {
    const p = path.join(dir, 'closed.safetensors');
    await writeSafetensors(p, { x: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    const f = await SafetensorsFile.open(p);
    await expect(f.read('nope')).rejects.toThrow(/no tensor named "nope" in safetensors file .*closed\.safetensors/);
    expect(() => f.info('nope')).toThrow(SafetensorsError);
    await f.close();
    await f.close();
    expect(f.info('x').shape).toEqual([1]);
    await expect(f.read('x')).rejects.toThrow(/cannot read tensor "x": safetensors file .* is closed/);
  });
});

describe('read failures', () => {
  test('a file truncated after open gives a SafetensorsError naming file and key', async () => {
    const p = path.join(dir, 'shrink.safetensors');
    await writeSafetensors(p, {
      a: { dtype: 'F64', shape: [4], data: new Float64Array(4) },
      b: { dtype: 'F16', shape: [4], data: new Uint16Array(4) },
    });
    const f = await SafetensorsFile.open(p);
    const size = (await fsp.stat(p)).size;
    await fsp.truncate(p, size - 4); // cuts into "b" (F16 sorts after F64)
    try {
      expect((await f.read('a')).length).toBe(4);
      for (const fn of [() => f.read('b'), () => f.readFloat32('b')]) {
        const err = await fn().catch((e) => e);
        expect(err).toBeInstanceOf(SafetensorsError);
        expect(err.message).toMatch(/unexpected end of safetensors file .*shrink\.safetensors at offset \d+ while reading tensor "b"/);
        expect(err.key).toBe('b');
      }
    } finally {
      await f.close();
    }
  });
});

describe('writer validation and atomicity', () => {
  test('rejects bad input with errors naming the tensor', async () => {
    const p = path.join(dir, 'bad.safetensors');
    const cases: [unknown, RegExp][] = [
      [{ x: { dtype: 'F32', shape: [2], data: new Float64Array(2) } }, /data of tensor "x" \(dtype F32\) must be a Float32Array, got Float64Array/],
      [{ x: { dtype: 'F16', shape: [2], data: new Float32Array(2) } }, /data of tensor "x" \(dtype F16\) must be a Uint16Array/],
      [{ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }, /tensor "x" has shape \[3\] \(3 elements\) but its data has 2/],
      [{ x: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }, /shape of tensor "x" is not an array of non-negative integers/],
      [{ x: { dtype: 'F8_E4M3', shape: [1], data: new Uint8Array(1) } }, /unsupported dtype F8_E4M3 for key "x"/],
      [{ x: { dtype: 'Q4', shape: [1], data: new Uint8Array(1) } }, /unknown dtype "Q4" for tensor "x"/],
      [{ __metadata__: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } }, /"__metadata__" is reserved/],
      [{ x: null }, /tensor "x" is not an object/],
    ];
    for (const [t, re] of cases) {
      const err = await writeSafetensors(p, t as Record<string, TensorData>).catch((e) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
      expect(err.message).toMatch(re);
      expect(err.message).toContain(p);
    }
    await expect(writeSafetensors(p, {}, { n: 1 } as unknown as Record<string, string>)).rejects.toThrow(/metadata value for "n" is not a string/);
    await expect(fsp.access(p)).rejects.toThrow();
    expect(await fsp.readdir(dir)).not.toContain('bad.safetensors');
  });

  test('no temporary file is left behind; a failed write does not clobber the existing file', async () => {
    const sub = path.join(dir, 'atomic');
    await fsp.mkdir(sub);
    const p = path.join(sub, 'w.safetensors');
    await writeSafetensors(p, { x: { dtype: 'I32', shape: [2], data: new Int32Array([1, 2]) } });
    expect(await fsp.readdir(sub)).toEqual(['w.safetensors']);
    const before = await fsp.readFile(p);

    // invalid input: nothing touched
    await expect(writeSafetensors(p, { x: { dtype: 'I32', shape: [3], data: new Int32Array([1, 2]) } })).rejects.toThrow(SafetensorsError);
    // I/O failure at the final rename: temp file removed, original intact
    const fs = await import('fs');
    const spy = jest.spyOn(fs.promises, 'rename').mockImplementationOnce(async (from) => {
      expect(path.dirname(String(from))).toBe(sub); // temp file lives in the same directory
      expect((await fsp.readdir(sub)).length).toBe(2);
      throw new Error('simulated rename failure');
    });
    const err = await writeSafetensors(p, { y: { dtype: 'F32', shape: [1], data: new Float32Array([5]) } }).catch((e) => e);
    spy.mockRestore();
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err.message).toMatch(/cannot write safetensors file .*w\.safetensors: simulated rename failure/);
    expect(await fsp.readdir(sub)).toEqual(['w.safetensors']);
    expect((await fsp.readFile(p)).equals(before)).toBe(true);

    // destination is a directory: rename fails for real, temp file removed
    const asDir = path.join(sub, 'isdir.safetensors');
    await fsp.mkdir(asDir);
    await fsp.writeFile(path.join(asDir, 'keep'), 'x');
    await expect(writeSafetensors(asDir, { x: { dtype: 'U8', shape: [1], data: new Uint8Array(1) } })).rejects.toThrow(SafetensorsError);
    expect((await fsp.readdir(sub)).sort()).toEqual(['isdir.safetensors', 'w.safetensors']);

    // overwrite succeeds and replaces content
    await writeSafetensors(p, { y: { dtype: 'F32', shape: [1], data: new Float32Array([5]) } });
    const f = await SafetensorsFile.open(p);
    expect(f.keys()).toEqual(['y']);
    await f.close();
    expect(await fsp.readdir(sub)).toHaveLength(2);
  });
});
