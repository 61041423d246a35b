/**
 * @packageDocumentation
 * `@ddsjs/toy-shapes`: the embedded default model of `dds` (a small Stable-Diffusion-structured model trained on a
 * synthetic world) and that world's deterministic picture generator with its measurement helpers.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export * from './world';

/** Folder of the embedded toy model (diffusers layout) inside this package. */
export const MODEL_DIR = path.resolve(__dirname, '..', 'model');

/**
 * The embedded default model's folder, or `null` when its weights are not present (the model is trained by
 * `dds-weights train-toy`; until it ships, the CLI asks for `--model`).
 */
export function defaultModelDir(): string | null {
  return fs.existsSync(path.join(MODEL_DIR, 'model_index.json')) ? MODEL_DIR : null;
}
