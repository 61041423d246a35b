// Shared helpers of the golden parity tests (not a test file).
import * as tf from '@tensorflow/tfjs';
import { Golden, relErr } from '../../../test-utils';
import { nhwc } from './tiny';
import type { ScoreModel } from '../src';
import type { ScoreSchedule } from '../src/internals';

/** Measured errors, printed by {@link printErrors}. */
export const errors: Record<string, number> = {};

/** Asserts a golden within `tol` and records the measured error. */
export async function check(actual: tf.Tensor, g: Golden, tol: number, name: string): Promise<number> {
  const ref = nhwc(g);
  try {
    expect({ name, shape: actual.shape }).toEqual({ name, shape: ref.shape });
    const err = relErr(await actual.data(), await ref.data());
    errors[name] = err;
    if (!(err <= tol)) throw new Error(`${name}: relative error ${err.toExponential(2)} exceeds ${tol}`);
    return err;
  } finally {
    ref.dispose();
  }
}

/** Asserts a scalar golden within `tol` and records the measured error. */
export function checkScalar(actual: number, g: Golden | number, tol: number, name: string): number {
  const ref = typeof g === 'number' ? [g] : g.data;
  const err = relErr([actual], ref);
  errors[name] = err;
  if (!(err <= tol)) throw new Error(`${name}: relative error ${err.toExponential(2)} exceeds ${tol}`);
  return err;
}

/** Prints every recorded error (for the report). */
export function printErrors(title: string): void {
  const lines = Object.entries(errors).map(([k, v]) => `  ${k.padEnd(30)} ${v.toExponential(2)}`);
  console.log(`${title}: max|ours − golden| / max|golden|\n${lines.join('\n')}`);
}

/** One UNet call seen by a replay model. */
export interface ReplayCall {
  timestep: number[];
  sample: Float32Array;
}

/**
 * A model whose UNet replays stored gradients: for step i it returns zeros except the last conditional row
 * (DDS: cond/target; SDS: cond) = (grads[i] + offset[i]) / s, so that CFG with scale s gives back exactly the stored
 * gradient (plus the offset SDS subtracts again). Records what the UNet was fed.
 */
export function replayModel(
  schedule: ScoreSchedule,
  rowsPerCall: number,
  condRow: (step: number) => tf.Tensor4D,
  calls: ReplayCall[],
): ScoreModel {
  return {
    schedule,
    unet: {
      forward(x: tf.Tensor4D, t: number | tf.Tensor1D) {
        if (x.shape[0] !== rowsPerCall) throw new Error(`replay UNet: expected ${rowsPerCall} rows, got ${x.shape[0]}`);
        const step = calls.length;
        calls.push({ timestep: typeof t === 'number' ? [t] : Array.from(t.dataSync()), sample: x.dataSync() as Float32Array });
        return tf.tidy(() => {
          const c = condRow(step);
          const zeros = tf.zeros([rowsPerCall - 1, ...x.shape.slice(1)]);
          return tf.concat([zeros, c], 0) as tf.Tensor4D;
        });
      },
    },
  };
}

/** relErr of row `row` of an NHWC batch (flat data) against `expected`. */
export function rowErr(flat: Float32Array, row: number, expected: ArrayLike<number>): number {
  const n = expected.length;
  return relErr(flat.subarray(row * n, (row + 1) * n), expected);
}
