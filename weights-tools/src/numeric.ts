// Plain typed-array numerics for the weight tools: float32 → float16 rounding and a fast seeded PRNG.

// Math functions are aliased once: under jest's vm sandbox every `Math.x` lookup in a hot loop is a slow
// global-proxy access (~0.6 µs), while a local alias runs at full speed.
const { imul, sqrt, log, cos, sin, PI } = Math;

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

/** 32-bit FNV-1a hash of a string (used to derive per-tensor seeds). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * A small, fast, seeded PRNG (xoshiro128**, state seeded by splitmix32) for reproducible random weights.
 * Not cryptographic.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  /** Seeds the generator from a 32-bit integer. */
  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = imul(z ^ (z >>> 16), 0x85ebca6b);
      z = imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  /** The next uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = imul(rotl(imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** A uniform float in (0, 1). */
  uniform(): number {
    return (this.nextU32() + 0.5) / 4294967296;
  }

  /** A standard normal sample (Box–Muller, pairs cached). */
  normal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const r = sqrt(-2 * log(this.uniform()));
    const th = 2 * PI * this.uniform();
    this.spare = r * sin(th);
    return r * cos(th);
  }

  /** Fills `out` with `mean + std · N(0, 1)` samples and returns it (a tight loop with the state in locals). */
  fillNormal(out: Float32Array, mean = 0, std = 1): Float32Array {
    let a = this.a | 0;
    let b = this.b | 0;
    let c = this.c | 0;
    let d = this.d | 0;
    let i = 0;
    if (this.spare !== null && out.length > 0) {
      out[i++] = mean + std * this.spare;
      this.spare = null;
    }
    const n = out.length;
    const TWO_PI = 2 * PI;
    const INV = 1 / 4294967296;
    while (i < n) {
      // two xoshiro128** outputs → two uniforms in (0, 1)
      let r1 = imul(b, 5);
      r1 = imul((r1 << 7) | (r1 >>> 25), 9) >>> 0;
      let t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = (d << 11) | (d >>> 21);
      let r2 = imul(b, 5);
      r2 = imul((r2 << 7) | (r2 >>> 25), 9) >>> 0;
      t = b << 9;
      c ^= a;
      d ^= b;
      b ^= c;
      a ^= d;
      c ^= t;
      d = (d << 11) | (d >>> 21);
      const u1 = (r1 + 0.5) * INV;
      const u2 = (r2 + 0.5) * INV;
      const rad = sqrt(-2 * log(u1)) * std;
      const th = TWO_PI * u2;
      out[i++] = mean + rad * cos(th);
      if (i < n) out[i++] = mean + rad * sin(th);
    }
    this.a = a >>> 0;
    this.b = b >>> 0;
    this.c = c >>> 0;
    this.d = d >>> 0;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
