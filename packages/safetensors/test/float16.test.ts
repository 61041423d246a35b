import { promises as fsp } from 'fs';
import * as path from 'path';
import { SafetensorsFile, bf16ToF32, f16ToF32, f32ToF16, writeSafetensors } from '@ddsjs/safetensors';
import { f16Table32, f32ToBf16, f32ToF16Bits } from '@ddsjs/safetensors/internals';
import { tmpDir } from './helpers';

// Reference decoders written arithmetically (not by bit assembly like the library).
const { pow, fround } = Math;
function refF16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 0) return s * pow(2, -14) * (m / 1024);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * pow(2, e - 15) * (1 + m / 1024);
}
function refBf16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 7) & 255;
  const m = h & 127;
  if (e === 0) return s * pow(2, -126) * (m / 128);
  if (e === 255) return m ? NaN : s * Infinity;
  return s * pow(2, e - 127) * (1 + m / 128);
}
const ALL = Uint16Array.from({ length: 65536 }, (_, i) => i);

function mismatches(got: Float32Array, ref: (h: number) => number, mantShift: number): number[] {
  const bits = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const bad: number[] = [];
  for (let h = 0; h < 65536; h++) {
    const want = ref(h);
    if (want !== want) {
      // NaN: sign and payload preserved (payload moved to the top of the float32 mantissa)
      const ok = got[h] !== got[h] && bits[h] >>> 31 === h >>> 15 && ((bits[h] >>> mantShift) & (mantShift === 13 ? 1023 : 127)) === (h & (mantShift === 13 ? 1023 : 127));
      if (!ok) bad.push(h);
    } else if (!Object.is(got[h], fround(want)) || want !== fround(want)) {
      bad.push(h);
    }
  }
  return bad;
}

describe('F16/BF16 conversions', () => {
  test('all 65536 F16 bit patterns decode exactly (incl. subnormals, ±0, ±inf, NaN payloads)', () => {
    expect(mismatches(f16ToF32(ALL), refF16, 13)).toEqual([]);
    expect(mismatches(f16Table32(), refF16, 13)).toEqual([]);
    const d = f16ToF32(new Uint16Array([0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0x8001]));
    expect(Array.from(d)).toEqual([2 ** -24, 1023 * 2 ** -24, 2 ** -14, 1, 65504, -(2 ** -24)]);
  });

  test('all 65536 BF16 bit patterns decode exactly', () => {
    expect(mismatches(bf16ToF32(ALL), refBf16, 16)).toEqual([]);
    expect(Array.from(bf16ToF32(new Uint16Array([0x3f80, 0x4049, 0x0001])))).toEqual([1, 3.140625, 2 ** -133]);
  });

  test('f32ToF16 inverts f16ToF32 and rounds every midpoint to even (exhaustive over adjacent pairs)', () => {
    const vals = f16ToF32(ALL);
    const bad: number[] = [];
    for (let h = 0; h < 65536; h++) {
      const e = (h >> 10) & 31;
      if (e === 31 && h & 1023) {
        const back = f32ToF16Bits(vals[h]);
        if (((back >> 10) & 31) !== 31 || !(back & 1023) || (back & 0x8000) !== (h & 0x8000)) bad.push(h); // stays a NaN with its sign
        continue;
      }
      if (f32ToF16Bits(vals[h]) !== h) bad.push(h);
      // midpoint between h and the next pattern of larger magnitude (same sign); exact in float32
      const next = h + 1;
      if ((h & 0x7fff) >= 0x7c00) continue; // inf has no successor
      const lo = vals[h], hi = (next & 0x7fff) === 0x7c00 ? (h & 0x8000 ? -65536 : 65536) : vals[next];
      const mid = (lo + hi) / 2;
      if (fround(mid) !== mid) bad.push(-h - 200000); // the midpoint must be exact in float32
      const even = h & 1 ? next : h;
      if (f32ToF16Bits(mid) !== even) bad.push(-h - 1);
      // just above / below the midpoint go to the nearer neighbour
      const up = mid + (hi - lo) / 4, down = mid - (hi - lo) / 4;
      if (f32ToF16Bits(up) !== next || f32ToF16Bits(down) !== h) bad.push(-h - 100000);
    }
    expect(bad).toEqual([]);
    expect(Array.from(f32ToF16([65519.99, 65520, 1e-8, -2.9802322387695312e-8, 2.98023223876953125e-8 * 1.0001]))).toEqual([0x7bff, 0x7c00, 0, 0x8000, 0x0001]);
  });

  test('f32ToBf16 rounds to nearest even and inverts bf16ToF32', () => {
    const vals = bf16ToF32(ALL);
    const back = f32ToBf16(vals);
    let bad = 0;
    for (let h = 0; h < 65536; h++) {
      const isNaN16 = (h & 0x7f80) === 0x7f80 && h & 0x7f;
      if (isNaN16 ? !((back[h] & 0x7f80) === 0x7f80 && back[h] & 0x7f) : back[h] !== h) bad++;
    }
    expect(bad).toBe(0);
    // 1 + 2^-8 is exactly between 1 (0x3f80, even) and 1 + 2^-7 (0x3f81): ties to even
    expect(Array.from(f32ToBf16([1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20]))).toEqual([0x3f80, 0x3f82, 0x3f81]);
  });

  test('F16 and BF16 tensors of all patterns survive a file round trip bit-exactly', async () => {
    const dir = await tmpDir();
    try {
      const p = path.join(dir, 'all16.safetensors');
      await writeSafetensors(p, { h: { dtype: 'F16', shape: [256, 256], data: ALL }, b: { dtype: 'BF16', shape: [65536], data: ALL } });
      const f = await SafetensorsFile.open(p);
      expect(Buffer.from((await f.read('h')).buffer).equals(Buffer.from(ALL.buffer))).toBe(true);
      const h32 = await f.readFloat32('h');
      const b32 = await f.readFloat32('b');
      await f.close();
      expect(mismatches(h32, refF16, 13)).toEqual([]);
      expect(mismatches(b32, refBf16, 16)).toEqual([]);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
