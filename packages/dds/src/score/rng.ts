import { Rng } from '@ddsjs/nn';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/**
 * The seeded stream of the DDS/SDS loops: `@ddsjs/nn`'s {@link Rng} on its SplitMix32 algorithm (SplitMix32 mixing
 * of a 32-bit counter). Same seed → same sequence on every platform; used for timestep draws and for deriving
 * per-step seeds in the editing loop. `next()` is uniform in [0, 1), `int(low, high)` in [low, high).
 */
export class SeededRandom extends Rng {
  /** @param seed any finite number; its integer part modulo 2³² seeds the stream. */
  constructor(seed: number) {
    if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new InvalidArgumentError(`SeededRandom: seed must be a finite number, got ${seed}`);
    super(seed, 'splitmix32');
  }

  /** The next 32-bit unsigned integer (= `nextU32()`). */
  nextUint32(): number {
    return this.nextU32();
  }
}

/** Draws an integer uniform in [low, high) from `rng`, or from `Math.random` when `rng` is undefined. */
export function randomInt(rng: Rng | undefined, low: number, high: number): number {
  if (rng) return rng.int(low, high);
  if (!(high > low)) throw new InvalidArgumentError(`randomInt: empty range [${low}, ${high})`);
  return low + Math.floor(Math.random() * (high - low));
}
