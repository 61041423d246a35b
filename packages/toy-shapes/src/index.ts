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

/** The weights variant the embedded model ships as: float16 `*.fp16.safetensors` files (diffusers' `variant="fp16"`). */
export const MODEL_VARIANT = 'fp16' as const;

/**
 * The embedded default model's folder, or `null` when its weights are not present (the model is trained by
 * `dds-toy train`). Load it with `variant: MODEL_VARIANT` (see {@link defaultModel}).
 */
export function defaultModelDir(): string | null {
  return fs.existsSync(path.join(MODEL_DIR, 'model_index.json')) ? MODEL_DIR : null;
}

/**
 * The embedded default model as loader arguments: `{ dir, variant: 'fp16' }` for `loadStableDiffusion(dir,
 * { variant })`, or `null` when it is not present. Its loop defaults (editing lr, generation guidance) live in the
 * folder's `ddsjs_defaults.json`, which the loader reads.
 */
export function defaultModel(): { dir: string; variant: typeof MODEL_VARIANT } | null {
  const dir = defaultModelDir();
  return dir ? { dir, variant: MODEL_VARIANT } : null;
}

/** Folder of the translation network shipped with the embedded model (trained by `dds-toy train-translator`). */
export const TRANSLATOR_DIR = path.resolve(__dirname, '..', 'translator');

/**
 * The shipped toy translator's folder (for `loadTranslator(dir, sd)` of `@ddsjs/dds`, with the embedded model as
 * the teacher), or `null` when it is not present.
 */
export function defaultTranslatorDir(): string | null {
  return fs.existsSync(path.join(TRANSLATOR_DIR, 'translator.json')) ? TRANSLATOR_DIR : null;
}
