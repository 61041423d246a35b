import { InvalidArgumentError } from './errors';
/**
 * Half-precision conversions: IEEE 754 binary16 (F16) and bfloat16 (BF16) bit patterns <-> float32.
 */

let f16Table: Float32Array | undefined;
let f16Bits: Uint32Array | undefined;

/**
 * The 65536-entry lookup table mapping every F16 bit pattern to its exact float32 value (NaN payloads
 * and the sign of zero are preserved). Built on first use (256 KB) and shared; do not modify it.
 */
export function f16Table32(): Float32Array {
  if (f16Table) return f16Table;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // zero or subnormal: mant * 2^-24, exact in float32
      table[h] = (sign ? -1 : 1) * mant * 5.960464477539063e-8;
    } else if (exp === 31) {
      bits[h] = (sign | 0x7f800000 | (mant << 13)) >>> 0; // inf / NaN (payload kept)
    } else {
      bits[h] = (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
    }
  }
  f16Table = table;
  return table;
}

/**
 * Converts F16 bit patterns to float32 values (exact).
 * @param src F16 bit patterns
 * @param out optional destination of the same length (a new array is allocated otherwise)
 * @returns `out`, filled
 */
export function f16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new InvalidArgumentError(`f16ToF32: out has length ${out.length}, expected ${src.length}`);
  // Copy bit patterns as integers: moving NaNs through float registers may canonicalize their payload.
  const t = f16Bits ?? (f16Bits = new Uint32Array(f16Table32().buffer));
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const n = src.length;
  for (let i = 0; i < n; i++) o[i] = t[src[i]];
  return out;
}

/**
 * Converts BF16 bit patterns to float32 values (exact: a bfloat16 is the top half of a float32).
 * @param src BF16 bit patterns
 * @param out optional destination of the same length (a new array is allocated otherwise)
 * @returns `out`, filled
 */
export function bf16ToF32(src: Uint16Array, out: Float32Array = new Float32Array(src.length)): Float32Array {
  if (out.length !== src.length) throw new InvalidArgumentError(`bf16ToF32: out has length ${out.length}, expected ${src.length}`);
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  const n = src.length;
  for (let i = 0; i < n; i++) o[i] = src[i] << 16;
  return out;
}

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/**
 * Rounds one float32 (or float64, first rounded to float32) value to the nearest F16 bit pattern
 * (round to nearest, ties to even; overflow → ±Infinity; NaN → a quiet NaN keeping the sign).
 */
export function f32ToF16Bits(value: number): number {
  scratchF[0] = value;
  const x = scratchU[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign; // rounds to zero (below half the smallest subnormal)
    const m = mant | 0x800000; // implicit bit
    const shift = 14 - e; // 14..24
    let r = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r; // may carry into the smallest normal, which is correct
  }
  let r = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) r++; // may carry to infinity, which is correct
  return sign | r;
}

/**
 * Rounds float32 values to F16 bit patterns (round to nearest even).
 * @param src values
 * @returns a new Uint16Array of F16 bit patterns
 */
export function f32ToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}

/**
 * Rounds float32 values to BF16 bit patterns (round to nearest even; NaN stays a quiet NaN).
 * @param src values
 * @returns a new Uint16Array of BF16 bit patterns
 */
export function f32ToBf16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    scratchF[0] = src[i];
    const x = scratchU[0];
    if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) {
      out[i] = (x >>> 16) | 0x40;
    } else {
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return out;
}
