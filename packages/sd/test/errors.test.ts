import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '@ddsjs/nn';
import { alphaSigma, checkOutputPath, DdsError, InvalidArgumentError, loadStableDiffusion, ModelFormatError, OutputPathError } from '@ddsjs/sd';
import { IoError, parseUNetConfig } from '@ddsjs/sd/internals';

beforeAll(async () => {
  await initBackend('cpu');
});

async function caught(f: () => unknown): Promise<DdsError> {
  try {
    await f();
  } catch (e) {
    return e as DdsError;
  }
  throw new Error('expected a throw');
}

test('a model path that does not exist: IoError, code IO', async () => {
  const e = await caught(() => loadStableDiffusion(path.join(os.tmpdir(), 'ddsjs-no-such-model')));
  expect([e instanceof IoError, e.code]).toEqual([true, 'IO']);
  expect(e.message).toMatch(/^model not found: /);
});

test('a malformed config: ModelFormatError, code MODEL_FORMAT, naming the file', async () => {
  const e = await caught(() => parseUNetConfig([], 'unet/config.json'));
  expect([e instanceof ModelFormatError, e.code, e.message]).toEqual([true, 'MODEL_FORMAT', 'unet/config.json: not a JSON object']);
});

test('a timestep out of range: InvalidArgumentError, code INVALID_ARGUMENT', async () => {
  const e = await caught(() => alphaSigma({ alphasCumprod: new Float32Array(10) }, 10));
  expect([e instanceof InvalidArgumentError, e.code]).toEqual([true, 'INVALID_ARGUMENT']);
});

test('an output that exists without force: OutputPathError, code OUTPUT_PATH', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-errors-'));
  try {
    const file = path.join(dir, 'out.png');
    fs.writeFileSync(file, '');
    const e = await caught(() => checkOutputPath(file, { extensions: ['.png'] }));
    expect([e instanceof OutputPathError, e instanceof DdsError, e.code]).toEqual([true, true, 'OUTPUT_PATH']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
