// Reading and writing the toy model's components: weights files of a diffusers folder and the configs of `--init`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Module, toTorchLayout } from '@ddsjs/nn';
import { safetensorsSource } from '@ddsjs/sd/internals';
import { SafetensorsFile, TensorData, f32ToF16, writeSafetensors } from '@ddsjs/safetensors';
import type { RawComponentConfigs } from '@ddsjs/weights-tools';

/** Writes `module`'s parameters (PyTorch layout) to `file` as float32, or float16 with `fp16`. */
export async function writeComponent(file: string, module: Module, fp16: boolean): Promise<void> {
  const tensors: Record<string, TensorData> = {};
  for (const [key, p] of module.namedParameters()) {
    const t = toTorchLayout(p.value, p.layout);
    const data = (await t.data()) as Float32Array;
    tensors[key] = fp16 ? { dtype: 'F16', shape: t.shape, data: f32ToF16(data) } : { dtype: 'F32', shape: t.shape, data };
    t.dispose();
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await writeSafetensors(file, tensors, { format: 'pt' });
}

/** Loads `file` into `module` by parameter name. */
export async function loadComponent(file: string, module: Module): Promise<void> {
  const f = await SafetensorsFile.open(file);
  try {
    await module.loadStateDict(safetensorsSource(f, { name: file }));
  } finally {
    await f.close();
  }
}

/** The component configs of a diffusers folder `dir` (for `initFrom`); throws naming the file that is missing or bad. */
export function readInitConfigs(dir: string): RawComponentConfigs {
  const read = (rel: string): Record<string, unknown> => {
    const f = path.join(dir, rel);
    let v: unknown;
    try {
      v = JSON.parse(fs.readFileSync(f, 'utf8'));
    } catch (e) {
      throw new Error(`train-toy: --init ${dir}: cannot read ${rel}: ${(e as Error).message}`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`train-toy: --init ${dir}: ${rel} is not a JSON object`);
    return v as Record<string, unknown>;
  };
  return {
    unet: read('unet/config.json'),
    vae: read('vae/config.json'),
    textEncoder: read('text_encoder/config.json'),
    scheduler: read('scheduler/scheduler_config.json'),
  };
}

/** The weights file of each component inside a diffusers folder. */
export const FILES = {
  unet: 'unet/diffusion_pytorch_model.safetensors',
  vae: 'vae/diffusion_pytorch_model.safetensors',
  textEncoder: 'text_encoder/model.safetensors',
} as const;

/** The fp16 variant's name of a weights file. */
export function fp16Name(f: string): string {
  return f.replace(/\.safetensors$/, '.fp16.safetensors');
}
