import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { DdsError, InvalidArgumentError, readTranslatorMeta, scoreLoss, TranslatorDivergedError } from '@ddsjs/dds';
import { IoError } from '@ddsjs/dds/internals';

beforeAll(async () => {
  await initBackend('cpu');
});

function caught(f: () => unknown): DdsError {
  try {
    f();
  } catch (e) {
    return e as DdsError;
  }
  throw new Error('expected a throw');
}

test('a bad argument to a score: InvalidArgumentError, code INVALID_ARGUMENT, message unchanged', () => {
  const z = tf.zeros([1, 2, 2, 4]);
  const g = tf.zeros([1, 2, 2, 3]);
  const e = caught(() => scoreLoss(z, g));
  tf.dispose([z, g]);
  expect([e instanceof InvalidArgumentError, e.code]).toEqual([true, 'INVALID_ARGUMENT']);
  expect(e.message).toBe('scoreLoss: grad shape [1,2,2,3] differs from z\'s [1,2,2,4]');
});

test('a translator folder that does not exist: IoError, code IO', () => {
  const dir = path.join(os.tmpdir(), 'ddsjs-no-such-translator');
  const e = caught(() => readTranslatorMeta(dir));
  expect([e instanceof IoError, e.code, e.message]).toEqual([true, 'IO', `loadTranslator: no such folder: ${dir}`]);
});

test('a diverged training run: TranslatorDivergedError, code DIVERGED', () => {
  const e = new TranslatorDivergedError('trainTranslator: diverged', 3, null);
  expect([e instanceof DdsError, e.code, e.step]).toEqual([true, 'DIVERGED', 3]);
});
