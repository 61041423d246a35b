// Saving a translator in float16: half the bytes of float32, and the pictures unchanged to within one 8-bit level.
// The shipped toy translator is itself stored in float16 (saveTranslator's fp16 option).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { SafetensorsFile } from '@ddsjs/safetensors';
import { loadImageForEdit, loadStableDiffusion, StableDiffusion } from '@ddsjs/sd';
import { defaultModel, defaultTranslatorDir } from '@ddsjs/toy-shapes';
import { loadTranslator, readTranslatorMeta, saveTranslator, Translator } from '../src';

const RED_CIRCLE = path.resolve(__dirname, '..', '..', '..', 'examples', 'assets', 'red-circle.png');
let tmp: string;
let sd: StableDiffusion;

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-tr-fp16-'));
  const toy = defaultModel();
  if (!toy) throw new Error('the embedded toy model is not installed');
  sd = await loadStableDiffusion(toy.dir, { variant: toy.variant });
});
afterAll(() => {
  sd?.dispose();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function dtypes(file: string): Promise<Set<string>> {
  const f = await SafetensorsFile.open(file);
  const out = new Set(f.keys().map((k) => f.info(k).dtype));
  await f.close();
  return out;
}

test('saveTranslator({ fp16: true }) halves the weights file; the toy translator pictures move by less than one 8-bit level', async () => {
  const shipped = defaultTranslatorDir();
  if (!shipped) throw new Error('the toy translator is not installed');
  const weights = 'diffusion_pytorch_model.safetensors';
  expect(await dtypes(path.join(shipped, weights))).toEqual(new Set(['F16']));
  const fp32 = await loadTranslator(shipped, sd);
  const dir = path.join(tmp, 'fp16');
  const dir32 = path.join(tmp, 'fp32');
  let fp16: Translator | null = null;
  const input = await loadImageForEdit(RED_CIRCLE, { model: sd });
  try {
    await saveTranslator(fp32, dir, { fp16: true });
    await saveTranslator(fp32, dir32);
    expect(await dtypes(path.join(dir, weights))).toEqual(new Set(['F16']));
    expect(await dtypes(path.join(dir32, weights))).toEqual(new Set(['F32']));
    const ratio = fs.statSync(path.join(dir, weights)).size / fs.statSync(path.join(dir32, weights)).size;
    expect(ratio).toBeLessThan(0.51);
    expect(readTranslatorMeta(dir).tasks).toEqual(readTranslatorMeta(shipped).tasks);
    fp16 = await loadTranslator(dir, sd);
    for (const task of readTranslatorMeta(shipped).tasks) {
      const a = fp32.translateImage(input, task.target);
      const b = fp16.translateImage(input, task.target);
      const diff = tf.tidy(() => tf.abs(tf.sub(a.image, b.image)));
      const [mean, max] = await Promise.all([tf.mean(diff).data(), tf.max(diff).data()]);
      // Under the 8-bit step (1/255 ≈ 3.9e-3): a written PNG changes by at most one level. (On the earlier float32
      // toy translator the fp16 copy moved pictures by mean |Δ| 1.0–1.2e-5, max 0.9–1.0e-4.)
      expect(mean[0]).toBeLessThan(1e-4);
      expect(max[0]).toBeLessThan(1 / 255);
      tf.dispose([a.image, a.latent, b.image, b.latent, diff]);
    }
  } finally {
    input.dispose();
    fp32.dispose();
    fp16?.dispose();
  }
});
