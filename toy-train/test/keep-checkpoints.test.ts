// `dds-toy train --keep-checkpoints`: every checkpoint's weights are kept, and `dds-weights average` averages them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsFile } from '@ddsjs/safetensors';
import { initBackend } from '@ddsjs/nn';
import { averageCheckpoints } from '@ddsjs/weights-tools';
import { trainToy } from '../src/train-toy';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dds-keep-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('dds-toy train --keep-checkpoints', () => {
  it('keeps every checkpoint of each phase, which average into a loadable component', async () => {
    await initBackend('wasm', { quiet: true });
    const out = path.join(tmp, 'keep');
    await trainToy({ outdir: out, preset: 'micro', seed: 2, vaeSteps: 2, unetSteps: 2, vaeBatch: 2, unetBatch: 2, poolSize: 8, checkpointEvery: 1, keepCheckpoints: true, fp16: false });
    const dir = path.join(out, 'train', 'checkpoints');
    expect(fs.readdirSync(dir).sort()).toEqual(['unet-1.safetensors', 'unet-2.safetensors', 'vae-1.safetensors', 'vae-2.safetensors']);
    // The last kept checkpoint is the folder's weights.
    expect(fs.readFileSync(path.join(dir, 'unet-2.safetensors')).equals(fs.readFileSync(path.join(out, 'unet', 'diffusion_pytorch_model.safetensors')))).toBe(true);
    const avg = path.join(tmp, 'unet-avg.safetensors');
    await averageCheckpoints(avg, [path.join(dir, 'unet-1.safetensors'), path.join(dir, 'unet-2.safetensors')]);
    const [f1, f2, fa] = await Promise.all(['unet-1', 'unet-2'].map((n) => SafetensorsFile.open(path.join(dir, `${n}.safetensors`))).concat([SafetensorsFile.open(avg)]));
    const key = 'conv_in.weight';
    const [x1, x2, xa] = await Promise.all([f1, f2, fa].map((f) => f.readFloat32(key)));
    expect(Array.from(xa)).toEqual(Array.from(x1, (v, i) => Math.fround((v + x2[i]) / 2)));
    expect(Array.from(x1)).not.toEqual(Array.from(x2));
    await Promise.all([f1, f2, fa].map((f) => f.close()));
  });
});
