import * as fs from 'node:fs';
import * as path from 'node:path';

/** Folder of the embedded toy model (diffusers layout) inside this package. */
export const MODEL_DIR = path.resolve(__dirname, '..', 'model');

/**
 * The embedded default model's folder, or `null` when its weights are not present (the model is trained by
 * `dds-weights train-toy`; until it ships, the CLI asks for `--model`).
 */
export function defaultModelDir(): string | null {
  return fs.existsSync(path.join(MODEL_DIR, 'model_index.json')) ? MODEL_DIR : null;
}
