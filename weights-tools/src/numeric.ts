// Plain typed-array numerics for the weight tools: float32 → float16 rounding (the seeded PRNG is @ddsjs/nn's Rng).

/** Result of {@link f32ArrayToF16}. */
export interface F16Conversion {
  /** F16 bit patterns. */
  bits: Uint16Array;
  /** How many finite inputs overflowed to ±Infinity (|x| ≥ 65520, as torch's `.half()` does). */
  overflow: number;
}

/**
 * Rounds float32 values to float16 bit patterns with round-to-nearest-even, exactly as PyTorch's `.half()`:
 * subnormals kept, values beyond the float16 range become ±Infinity (counted in `overflow`), NaN stays NaN.
 * Bit-identical to `f32ToF16Bits` of @ddsjs/safetensors, but a tight loop over the whole array.
 */
export function f32ArrayToF16(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): F16Conversion {
  if (out.length !== src.length) throw new Error(`f32ArrayToF16: output has ${out.length} elements, input ${src.length}`);
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  let overflow = 0;
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    let r: number;
    if (exp === 0xff) {
      r = sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
    } else {
      const e = exp - 112; // exp - 127 + 15
      if (e >= 31) {
        r = sign | 0x7c00;
        overflow++;
      } else if (e <= 0) {
        if (e < -10) r = sign;
        else {
          const m = mant | 0x800000;
          const shift = 14 - e;
          let q = m >>> shift;
          const rem = m & ((1 << shift) - 1);
          const half = 1 << (shift - 1);
          if (rem > half || (rem === half && q & 1)) q++;
          r = sign | q;
        }
      } else {
        let q = (e << 10) | (mant >>> 13);
        const rem = mant & 0x1fff;
        if (rem > 0x1000 || (rem === 0x1000 && q & 1)) q++;
        if ((q & 0x7fff) === 0x7c00) overflow++;
        r = sign | q;
      }
    }
    out[i] = r;
  }
  return { bits: out, overflow };
}
