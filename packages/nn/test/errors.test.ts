import * as tf from '@tensorflow/tfjs';
import { conv2dOp, DdsError, initBackend, InvalidArgumentError, Linear, StateDictError, StateDictSource } from '@ddsjs/nn';

beforeAll(async () => {
  await initBackend('cpu');
});

/** A state dict of the given PyTorch shapes, filled with zeros. */
function source(shapes: Record<string, number[]>): StateDictSource {
  return {
    keys: () => Object.keys(shapes),
    shape: (k: string) => shapes[k],
    read: async (k: string) => new Float32Array(shapes[k].reduce((a, b) => a * b, 1)),
  };
}

async function loadError(shapes: Record<string, number[]>): Promise<StateDictError> {
  const m = new Linear(3, 2);
  try {
    await m.loadStateDict(source(shapes));
  } catch (e) {
    return e as StateDictError;
  } finally {
    m.dispose();
  }
  throw new Error('expected loadStateDict to throw');
}

test('a missing weight is a StateDictError with code MISSING_WEIGHT', async () => {
  const e = await loadError({ weight: [2, 3] });
  expect([e instanceof StateDictError, e instanceof DdsError, e.code, e.missing]).toEqual([true, true, 'MISSING_WEIGHT', ['bias']]);
});

test('a mis-shaped weight is a StateDictError with code SHAPE_MISMATCH', async () => {
  const e = await loadError({ weight: [3, 2], bias: [2] });
  expect([e instanceof StateDictError, e.code, e.misShaped.map((m) => m.key)]).toEqual([true, 'SHAPE_MISMATCH', ['weight']]);
});

test('a bad argument to an op is an InvalidArgumentError, message unchanged', () => {
  const x = tf.zeros([1, 4, 4]) as unknown as tf.Tensor4D;
  const w = tf.zeros([3, 3, 2, 1]) as tf.Tensor4D;
  let e: unknown;
  try {
    conv2dOp(x, w, undefined);
  } catch (err) {
    e = err;
  }
  tf.dispose([x, w]);
  expect(e).toBeInstanceOf(InvalidArgumentError);
  expect((e as DdsError).code).toBe('INVALID_ARGUMENT');
  expect((e as Error).message).toBe('conv2dOp: x must be NHWC rank 4, got [1,4,4]');
});
