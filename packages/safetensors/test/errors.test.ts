import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DdsError, InvalidArgumentError, isDdsError, SafetensorsError, SafetensorsFile, f16ToF32 } from '@ddsjs/safetensors';

/** The error `f` throws or rejects with (fails the test when it does not throw). */
async function caught(f: () => unknown): Promise<unknown> {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-errors-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test('a malformed file is a SafetensorsError with code SAFETENSORS_FORMAT', async () => {
  const file = path.join(dir, 'bad.safetensors');
  fs.writeFileSync(file, Buffer.from([1, 2, 3]));
  const e = await caught(() => SafetensorsFile.open(file));
  expect(e).toBeInstanceOf(SafetensorsError);
  expect(e).toBeInstanceOf(DdsError);
  expect((e as DdsError).code).toBe('SAFETENSORS_FORMAT');
});

test('a missing file is a SafetensorsError with code IO, naming the file', async () => {
  const file = path.join(dir, 'none.safetensors');
  const e = (await caught(() => SafetensorsFile.open(file))) as SafetensorsError;
  expect([e instanceof SafetensorsError, e.code, e.file]).toEqual([true, 'IO', file]);
});

test('a bad argument is an InvalidArgumentError with code INVALID_ARGUMENT', async () => {
  const e = await caught(() => f16ToF32(new Uint16Array(2), new Float32Array(3)));
  expect(e).toBeInstanceOf(InvalidArgumentError);
  expect((e as DdsError).code).toBe('INVALID_ARGUMENT');
  expect((e as Error).message).toBe('f16ToF32: out has length 3, expected 2');
});

test('isDdsError: by class, or by a known code on another copy of the class; not plain errors', () => {
  expect(isDdsError(new InvalidArgumentError('x'))).toBe(true);
  expect(isDdsError(Object.assign(new Error('x'), { code: 'MODEL_FORMAT' }))).toBe(true);
  expect(isDdsError(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBe(false);
  expect(isDdsError(new Error('x'))).toBe(false);
  expect(isDdsError(null)).toBe(false);
});
