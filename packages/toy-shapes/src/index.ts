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
 * `dds-weights train-toy`). Load it with `variant: MODEL_VARIANT` (see {@link defaultModel}).
 */
export function defaultModelDir(): string | null {
  return fs.existsSync(path.join(MODEL_DIR, 'model_index.json')) ? MODEL_DIR : null;
}

/**
 * The classifier-free guidance scale `dds generate` uses with the embedded model when `--guidance` is not given
 * (other models: diffusers' 7.5). Chosen on a validation set of held-out-caption generations (noise seeds 12–27,
 * 192 pictures, disjoint from the reported seeds 4–11): both colours right in 76 / 92 / 91 / 89 / 89 / 84 / 81 % of
 * them at guidance 1 / 2 / 3 / 4 / 5 / 6 / 7.5 (docs/notes/2026-12-toy-model-log.md). Above ≈ 4 the guided prediction
 * overshoots this small model's colours into neighbouring palette entries; 1 (no guidance) mixes captions. Editing
 * (`editImage`, DDS/SDS) keeps the paper's 7.5. Recorded in the model folder's `ddsjs_defaults.json`
 * (`generate.guidance_scale`), which is what `StableDiffusion.generate` reads; this constant states the same number.
 */
export const GENERATION_GUIDANCE_SCALE = 3;

/**
 * The SGD learning rate of the DDS/SDS editing loop (`editImage`/`editLatent` of @ddsjs/dds) for the embedded
 * model, in place of the notebook's 0.1 — recorded in the model folder's `ddsjs_defaults.json` (`edit.lr`), from
 * which `loadStableDiffusion` makes it `editImage`'s default for this model; this constant states the same number.
 * Why: this model's DDS scores are far larger per latent element than Stable Diffusion's (its captions fix most of
 * the picture), so at 0.1 the 200-step loop reaches the true edit within ≈ 10 steps and then runs on past it,
 * growing and smearing the shape. Chosen on a validation set (`editTasks(30, 999)`, disjoint from the reported
 * `editTasks(30, 2024)`): lr 0.005 / 0.0075 / 0.01 / 0.015 / 0.02 / 0.1, the highest mean IoU among those reaching
 * the target colour in ≥ 80 % (docs/notes/2026-12-toy-model-log.md). It was 0.01 until the measurement stopped counting
 * an erased shape as a colour success (`EditCase.erased` in weights-tools); re-measured, 0.01 reached 73 %; then
 * 0.015 until the model's foreground-channel fine-tune, on which 0.005 keeps the shape best (validation IoU 0.82,
 * colour 87 %).
 */
export const EDIT_LEARNING_RATE = 0.005;

/**
 * The embedded default model as loader arguments: `{ dir, variant: 'fp16', generationGuidanceScale }` — `dir` and
 * `variant` for `loadStableDiffusion(dir, { variant })`, `generationGuidanceScale` the guidance to generate with
 * ({@link GENERATION_GUIDANCE_SCALE}) — or `null` when it is not present.
 */
export function defaultModel(): { dir: string; variant: typeof MODEL_VARIANT; generationGuidanceScale: number } | null {
  const dir = defaultModelDir();
  return dir ? { dir, variant: MODEL_VARIANT, generationGuidanceScale: GENERATION_GUIDANCE_SCALE } : null;
}

/** Folder of the translation network shipped with the embedded model (trained by `dds-weights train-toy-translator`). */
export const TRANSLATOR_DIR = path.resolve(__dirname, '..', 'translator');

/**
 * The shipped toy translator's folder (for `loadTranslator(dir, sd)` of `@ddsjs/dds`, with the embedded model as
 * the teacher), or `null` when it is not present.
 */
export function defaultTranslatorDir(): string | null {
  return fs.existsSync(path.join(TRANSLATOR_DIR, 'translator.json')) ? TRANSLATOR_DIR : null;
}
