// The one seeded pseudo-random generator of ddsjs, with seed mixing and string hashing. Plain numbers, no tensors,
// no Node modules: the browser's edit loop, the toy world's picture generator, the weight tools and the trainers all
// draw from it. Not cryptographic.

// Math functions are aliased once: under jest's vm sandbox every `Math.x` lookup in a hot loop is a slow
// global-proxy access, while a local alias runs at full speed.
const { imul, sqrt, log, cos, sin, floor, trunc, PI } = Math;

/** 2⁻³². */
const INV_2_32 = 1 / 4294967296;

/**
 * The bit generators {@link Rng} offers. Each is a fixed, documented stream (same seed → same numbers on every
 * platform), and each defines data that must not change:
 * - `'xoshiro128**'` (default): xoshiro128** with its state seeded by four SplitMix32 outputs — the random weights
 *   of `dds-weights make-random`;
 * - `'splitmix32'`: SplitMix32 on a 32-bit counter — the timesteps and per-step seeds of the DDS/SDS loops and the
 *   translator trainer's data order;
 * - `'mulberry32'`: mulberry32 — the toy world's scenes (`@ddsjs/toy-shapes`) and the toy trainer's batches.
 */
export type RngAlgorithm = 'xoshiro128**' | 'splitmix32' | 'mulberry32';

/** Every {@link RngAlgorithm}. */
export const RNG_ALGORITHMS: readonly RngAlgorithm[] = ['xoshiro128**', 'splitmix32', 'mulberry32'];

function splitmix32Step(state: number): [next: number, out: number] {
  const s = (state + 0x9e3779b9) >>> 0;
  let z = s;
  z = imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return [s, (z ^ (z >>> 16)) >>> 0];
}

/**
 * A seeded pseudo-random generator: uniform floats and integers, normal samples, picks and shuffles, on one of
 * three 32-bit bit generators ({@link RngAlgorithm}). Same seed and algorithm → same sequence on every platform.
 */
export class Rng {
  /** The bit generator. */
  readonly algorithm: RngAlgorithm;
  // xoshiro128** uses a–d; SplitMix32 and mulberry32 keep their 32-bit state in `a`.
  private a = 0;
  private b = 0;
  private c = 0;
  private d = 0;

  /**
   * @param seed any finite number; its integer part modulo 2³² seeds the stream (a RangeError otherwise).
   * @param algorithm the bit generator (default `'xoshiro128**'`).
   */
  constructor(seed: number, algorithm: RngAlgorithm = 'xoshiro128**') {
    if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new RangeError(`Rng: seed must be a finite number, got ${seed}`);
    if (!RNG_ALGORITHMS.includes(algorithm)) throw new RangeError(`Rng: algorithm must be one of ${RNG_ALGORITHMS.join(', ')}, got ${JSON.stringify(algorithm)}`);
    this.algorithm = algorithm;
    const s = trunc(seed) >>> 0;
    if (algorithm === 'xoshiro128**') {
      let st = s;
      const next = (): number => {
        const [n, out] = splitmix32Step(st);
        st = n;
        return out;
      };
      this.a = next();
      this.b = next();
      this.c = next();
      this.d = (next() | 1) >>> 0;
    } else {
      this.a = s;
    }
  }

  /** The next uniform 32-bit unsigned integer. */
  nextU32(): number {
    switch (this.algorithm) {
      case 'splitmix32': {
        const [n, out] = splitmix32Step(this.a);
        this.a = n;
        return out;
      }
      case 'mulberry32': {
        this.a = (this.a + 0x6d2b79f5) >>> 0;
        let t = this.a;
        t = imul(t ^ (t >>> 15), t | 1);
        t ^= t + imul(t ^ (t >>> 7), t | 61);
        return (t ^ (t >>> 14)) >>> 0;
      }
      default: {
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
    }
  }

  /** A float uniform in [0, 1): `nextU32() / 2³²`. */
  next(): number {
    return this.nextU32() * INV_2_32;
  }

  /** A float uniform in [lo, hi) (default [0, 1)): `lo + (hi − lo) · next()`. */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /**
   * An integer uniform in [0, n) (`int(n)`, n a positive integer) or in [low, high) (`int(low, high)`, high
   * exclusive like `torch.randint`): `low + floor(next() · (high − low))`. RangeError on an empty range.
   */
  int(lowOrN: number, high?: number): number {
    if (high === undefined) {
      if (!Number.isInteger(lowOrN) || lowOrN < 1) throw new RangeError(`Rng.int: n must be a positive integer, got ${lowOrN}`);
      return floor(this.next() * lowOrN);
    }
    if (!(high > lowOrN)) throw new RangeError(`Rng.int: empty range [${lowOrN}, ${high})`);
    return lowOrN + floor(this.next() * (high - lowOrN));
  }

  /** A uniformly chosen element of `items` (RangeError when empty). */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('Rng.pick: empty list');
    return items[this.int(items.length)];
  }

  /** Shuffles `items` in place (Fisher–Yates from the end: i = n−1 … 1 swaps with `int(0, i + 1)`) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      const x = items[i];
      items[i] = items[j];
      items[j] = x;
    }
    return items;
  }

  /** A permutation of 0 … n−1: {@link shuffle} of `[0, 1, …, n−1]`. */
  permutation(n: number): number[] {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`Rng.permutation: n must be a non-negative integer, got ${n}`);
    return this.shuffle(Array.from({ length: n }, (_, i) => i));
  }

  /** A standard normal sample (Box–Muller on u = 1 − next() and v = next(); one sample per call, two draws). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return sqrt(-2 * log(u)) * cos(2 * PI * v);
  }

  /**
   * Fills `out` with `mean + std · N(0, 1)` samples and returns it: Box–Muller on pairs of uniforms
   * `(nextU32() + 0.5) / 2³²` in (0, 1), the cosine sample then the sine sample (the last sine dropped for an odd
   * length). A tight loop with the state in locals for xoshiro128**.
   */
  fillNormal(out: Float32Array, mean = 0, std = 1): Float32Array {
    const n = out.length;
    const TWO_PI = 2 * PI;
    let i = 0;
    if (this.algorithm !== 'xoshiro128**') {
      while (i < n) {
        const u1 = (this.nextU32() + 0.5) * INV_2_32;
        const u2 = (this.nextU32() + 0.5) * INV_2_32;
        const rad = sqrt(-2 * log(u1)) * std;
        const th = TWO_PI * u2;
        out[i++] = mean + rad * cos(th);
        if (i < n) out[i++] = mean + rad * sin(th);
      }
      return out;
    }
    let a = this.a | 0;
    let b = this.b | 0;
    let c = this.c | 0;
    let d = this.d | 0;
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
      const u1 = (r1 + 0.5) * INV_2_32;
      const u2 = (r2 + 0.5) * INV_2_32;
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

/**
 * How {@link mixSeed} combines integers:
 * - `'splitmix32'` (default): h = 0x6a09e667, then for each part h = first SplitMix32 output seeded with h ^ part
 *   (the translator trainer's streams);
 * - `'fnv1a'`: h = 0x811c9dc5, then for each part h = (h ^ part) · 0x01000193, h = (h ^ h >>> 15) · 0x2c1b3c6d
 *   (the toy trainer's streams).
 */
export type SeedMixing = 'splitmix32' | 'fnv1a';

/**
 * Mixes integers (each taken modulo 2³² after truncation) into one 32-bit unsigned seed: a pure function, the
 * same on every platform, for deriving independent streams from (seed, salt, step, …). RangeError on a part that
 * is not a finite number.
 */
export function mixSeed(parts: readonly number[], mixing: SeedMixing = 'splitmix32'): number {
  for (const p of parts) if (typeof p !== 'number' || !Number.isFinite(p)) throw new RangeError(`mixSeed: parts must be finite numbers, got ${p}`);
  if (mixing === 'fnv1a') {
    let h = 0x811c9dc5;
    for (const x of parts) {
      h = imul(h ^ (trunc(x) >>> 0), 0x01000193) >>> 0;
      h = imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    }
    return h >>> 0;
  }
  if (mixing !== 'splitmix32') throw new RangeError(`mixSeed: mixing must be splitmix32 or fnv1a, got ${JSON.stringify(mixing)}`);
  let h = 0x6a09e667;
  for (const p of parts) h = splitmix32Step((h ^ (trunc(p) >>> 0)) >>> 0)[1];
  return h >>> 0;
}

/**
 * How {@link hashString} hashes: `'fnv1a'` (default) is 32-bit FNV-1a over the UTF-16 code units (per-tensor seeds
 * of the random weights); `'sha256'` is the first four bytes, little-endian, of SHA-256 over the UTF-8 bytes
 * (per-prompt seeds of the translator's generated data).
 */
export type StringHash = 'fnv1a' | 'sha256';

/** A 32-bit unsigned hash of a string, for seeds derived from names and prompts (see {@link StringHash}). */
export function hashString(s: string, hash: StringHash = 'fnv1a'): number {
  if (typeof s !== 'string') throw new TypeError(`hashString: expected a string, got ${typeof s}`);
  if (hash === 'sha256') {
    const d = sha256(new TextEncoder().encode(s));
    return (d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)) >>> 0;
  }
  if (hash !== 'fnv1a') throw new RangeError(`hashString: hash must be fnv1a or sha256, got ${JSON.stringify(hash)}`);
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = imul(h, 0x01000193);
  }
  return h >>> 0;
}

const K256 = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3,
  0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208,
  0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 of `bytes` (FIPS 180-4), 32 bytes. A plain-JS version so that this module runs in browsers too. */
function sha256(bytes: Uint8Array): Uint8Array {
  const bitLen = bytes.length * 8;
  const padded = new Uint8Array(Math.ceil((bytes.length + 9) / 64) * 64);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, floor(bitLen / 4294967296));
  view.setUint32(padded.length - 4, bitLen >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x: number, k: number) => (x >>> k) | (x << (32 - k));
  for (let off = 0; off < padded.length; off += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + 4 * i);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g;
      g = f;
      f = e;
      e = (d + t1) >>> 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) >>> 0;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += hh;
  }
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(4 * i, h[i]);
  return out;
}
