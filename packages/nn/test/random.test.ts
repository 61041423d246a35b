import { createHash } from 'node:crypto';
import { Rng, RNG_ALGORITHMS, hashString, mixSeed } from '../src';

// Values printed by the generators this one replaced (dds' SeededRandom, weights-tools' xoshiro128** Rng, the toy
// world's mulberry32 Rng, the translator's mixSeed / sha256 hashString, the toy trainer's FNV mix): the streams
// define data (random weights, toy pictures, training batches) and must not change.
describe('Rng', () => {
  it('reproduces the splitmix32 stream of the DDS loops', () => {
    const r = new Rng(12345, 'splitmix32');
    expect([r.nextU32(), r.next(), r.int(3, 17), r.nextU32()]).toEqual([1200724404, 0.1904723544139415, 6, 2397394836]);
  });

  it('reproduces the xoshiro128** stream of the random weights, fillNormal included', () => {
    const r = new Rng(7);
    expect(r.algorithm).toBe('xoshiro128**');
    expect([r.nextU32(), r.nextU32()]).toEqual([1004282400, 2200021487]);
    const want = [2.6177968978881836, -3.942897319793701, 2.0047059059143066, -2.6738028526306152, -0.08938689529895782];
    expect(Array.from(new Rng(99).fillNormal(new Float32Array(5), 0.5, 2))).toEqual(want);
  });

  it('reproduces the mulberry32 stream of the toy world', () => {
    const r = new Rng(42, 'mulberry32');
    expect([r.next(), r.uniform(2, 5), r.int(10), r.normal(), r.pick(['a', 'b', 'c'])]).toEqual([0.6011037519201636, 3.344871676992625, 8, 0.6773277072041898, 'b']);
  });

  it('fillNormal on the generic path equals pairs of nextU32 uniforms, and every algorithm has mean ≈ 0, std ≈ 1', () => {
    for (const alg of RNG_ALGORITHMS) {
      const xs = new Rng(3, alg).fillNormal(new Float32Array(20001));
      const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
      const std = Math.sqrt(xs.reduce((s, v) => s + (v - mean) ** 2, 0) / xs.length);
      expect(Math.abs(mean)).toBeLessThan(0.03);
      expect(Math.abs(std - 1)).toBeLessThan(0.03);
    }
    const r = new Rng(5, 'mulberry32');
    const [u1, u2] = [(r.nextU32() + 0.5) / 2 ** 32, (r.nextU32() + 0.5) / 2 ** 32];
    const got = new Rng(5, 'mulberry32').fillNormal(new Float32Array(1));
    expect(got[0]).toBe(Math.fround(Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2)));
  });

  it('shuffles and permutes reproducibly (Fisher–Yates from the end)', () => {
    const p = new Rng(8, 'splitmix32').permutation(10);
    expect([...p].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const r = new Rng(8, 'splitmix32');
    const ref = Array.from({ length: 10 }, (_, i) => i);
    for (let i = 9; i > 0; i--) {
      const j = r.int(0, i + 1);
      [ref[i], ref[j]] = [ref[j], ref[i]];
    }
    expect(p).toEqual(ref);
    expect(new Rng(8, 'splitmix32').shuffle(['a', 'b', 'c'])).toEqual(new Rng(8, 'splitmix32').shuffle(['a', 'b', 'c']));
    expect(new Rng(1).permutation(0)).toEqual([]);
  });

  it('rejects bad seeds, algorithms and ranges with one-line errors', () => {
    expect(() => new Rng(NaN)).toThrow(/Rng: seed must be a finite number, got NaN/);
    expect(() => new Rng(1, 'pcg' as never)).toThrow(/algorithm must be one of/);
    expect(() => new Rng(1).int(0)).toThrow(/n must be a positive integer/);
    expect(() => new Rng(1).int(3, 3)).toThrow(/empty range \[3, 3\)/);
    expect(() => new Rng(1).pick([])).toThrow(/empty list/);
  });
});

describe('mixSeed and hashString', () => {
  it('reproduce the translator trainer (splitmix32, sha256) and the toy trainer (fnv1a) seeds', () => {
    expect([mixSeed([0, 1, 2]), mixSeed([7, 3, 123456789]), mixSeed([-5, 2.7])]).toEqual([4048986829, 1358155143, 872630684]);
    expect([mixSeed([0, 1, 2], 'fnv1a'), mixSeed([7, 0x5eed0002, 0x7fffffff, 5], 'fnv1a'), mixSeed([3, 1], 'fnv1a')]).toEqual([2784642828, 802942444, 1839092363]);
    expect(['', 'a red circle on a gray background', 'héllo ✓'].map((s) => hashString(s, 'sha256'))).toEqual([1120186595, 3693644488, 4023211862]);
    expect([hashString(''), hashString('down_blocks.0.resnets.0.conv1.weight')]).toEqual([2166136261, 1621070195]);
  });

  it('hashes like node:crypto sha256 on multi-block inputs', () => {
    for (const s of ['x'.repeat(55), 'y'.repeat(56), 'z'.repeat(64), 'ünïcödé '.repeat(40)]) {
      expect(hashString(s, 'sha256')).toBe(createHash('sha256').update(s).digest().readUInt32LE(0));
    }
  });

  it('rejects non-finite parts and unknown schemes', () => {
    expect(() => mixSeed([1, NaN])).toThrow(/mixSeed: parts must be finite numbers, got NaN/);
    expect(() => mixSeed([1], 'md5' as never)).toThrow(/mixing must be/);
    expect(() => hashString('a', 'md5' as never)).toThrow(/hash must be/);
  });
});
