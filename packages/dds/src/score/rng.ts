import { InvalidArgumentError } from '@ddsjs/safetensors';
/**
 * A small deterministic pseudo-random generator (SplitMix32 mixing of a 32-bit counter). Same seed → same sequence
 * on every platform; used for timestep draws and for deriving per-step seeds in the editing loop.
 */
export class SeededRandom {
  private state: number;

  /** @param seed any finite number; its integer part modulo 2³² seeds the stream. */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new InvalidArgumentError(`SeededRandom: seed must be a finite number, got ${seed}`);
    this.state = Math.trunc(seed) >>> 0;
  }

  /** The next 32-bit unsigned integer. */
  nextUint32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0;
    let z = this.state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  }

  /** A float uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** An integer uniform in [low, high) (high exclusive, like `torch.randint`). */
  int(low: number, high: number): number {
    if (!(high > low)) throw new InvalidArgumentError(`SeededRandom.int: empty range [${low}, ${high})`);
    return low + Math.floor(this.next() * (high - low));
  }
}

/** Draws an integer uniform in [low, high) from `rng`, or from `Math.random` when `rng` is undefined. */
export function randomInt(rng: SeededRandom | undefined, low: number, high: number): number {
  if (rng) return rng.int(low, high);
  if (!(high > low)) throw new InvalidArgumentError(`randomInt: empty range [${low}, ${high})`);
  return low + Math.floor(Math.random() * (high - low));
}
