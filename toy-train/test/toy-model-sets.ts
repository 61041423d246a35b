// The shipped toy model's quality tests (toy-model.test.ts: generation and the translator; toy-model-edits.test.ts:
// DDS vs SDS edits) share these sets and bounds; two files so that jest runs them on its two workers at once.
import { initBackend } from '@ddsjs/nn';
import { type StableDiffusion, loadStableDiffusion } from '@ddsjs/sd';
import { defaultModel } from '@ddsjs/toy-shapes';

/**
 * What the shipped weights are asserted to reach. The targets are generation ≥ 0.8, DDS colour success ≥ 0.8,
 * IoU ≥ 0.7 and the background kept (edit background change < 0.04, `BACKGROUND_CHANGE_LIMIT`); measured on the
 * shipped weights (deterministic on wasm) with the sets below and `editImage`'s defaults for this model (its
 * ddsjs_defaults.json: lr 0.005): generation 0.97 (`dds generate`'s defaults with the embedded model: 50 DDIM steps,
 * guidance 3), DDS success 0.83 (25 of 30; one edit erased the shape, which is not a success — `EditCase.erased`),
 * mean IoU 0.82, edit background change 0.018. Every target is met, so the bounds are the targets (before the model's
 * foreground-channel fine-tune the IoU was 0.60 and its bound the measured value less a margin). The translator's
 * IoU and background bounds are the same targets; its colour bars are set against per-image DDS (issue 26, below).
 */
export const THRESHOLDS = {
  generation: 0.8,
  ddsSuccess: 0.8,
  ddsMeanIoU: 0.7,
  ddsEditBackgroundChange: 0.04,
  translatorMeanIoU: 0.7,
  translatorEditBackgroundChange: 0.04,
  /**
   * The multi-task translator (issue 26), per task: "each task's colour at a rate comparable to per-image DDS on the
   * same pictures" — fixed from the validation set (seed 999) before the reported set (TRANSLATOR_SET) was measured:
   * per-image DDS reached 100 / 75 / 75 / 100 % of the four tasks there (4 pictures each: one picture is 25 points),
   * so the bar is its lowest task less one picture, 0.5; the translator overall must reach DDS's 88 % less two of
   * its 16 pairs, 0.75 (`translatorTaskOverall`). The shipped translator on validation: see docs/translator.md.
   */
  translatorTaskSuccess: 0.5,
  /** See `translatorTaskSuccess`. */
  translatorTaskOverall: 0.75,
  /**
   * Every held-out picture's outputs differ across tasks by more than this (mean abs. difference /255 over the
   * picture; the three-domain translator it replaces gave 0.0006 (0.15/255) between its tasks, issue 26).
   */
  translatorMinTaskChange: 0.01,
  /** Different colours reached per picture under the 4 tasks, mean (a translator that ignores its task: 1). */
  translatorDistinctColours: 2.5,
};

/** The multi-task translator's reported set: `evaluateToyTranslator`'s 12 held-out source pictures of seed 4321 × 4 tasks (validation: seed 999). */
export const TRANSLATOR_SET = { pictures: 12, seed: 4321 };

/**
 * The measurement sets. 10 edits and 2 seeds per caption (what `dds-toy eval` does by default) proved too
 * few: one checkpoint to the next moved them by 10–20 points (docs/notes/2026-12-toy-model-log.md), so the test uses 30
 * edits and 8 seeds per held-out caption, disjoint from the validation set the shipped weights were chosen on
 * (generation seeds 2–3, edit seed 999). `dds-toy eval --gen-seed 4 --gen-seeds 8 --seed 2024 --edits 30`
 * prints the same tables.
 */
export const GENERATION_SET = { firstSeed: 4, seedsPerPrompt: 8 };
export const EDIT_SET = { n: 30, seed: 2024 };

/**
 * Registers the suite's `beforeAll` (initialise wasm, load the embedded toy model in fp16, as shipped) and `afterAll`
 * (dispose it); returns a getter for the loaded model.
 */
export function useShippedToyModel(): () => StableDiffusion {
  let sd: StableDiffusion | undefined;
  beforeAll(async () => {
    await initBackend('wasm', { quiet: true });
    const m = defaultModel();
    if (!m) throw new Error('the embedded toy model is missing from packages/toy-shapes/model');
    sd = await loadStableDiffusion(m.dir, { variant: m.variant });
  });
  afterAll(() => sd?.dispose());
  return () => {
    if (!sd) throw new Error('the toy model is not loaded (beforeAll failed)');
    return sd;
  };
}

/** Prints a line to the test output (the tables of docs/notes/2026-12-toy-model-log.md). */
export const log = (s: string): void => {
  process.stdout.write(`${s}\n`);
};
