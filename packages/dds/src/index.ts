/**
 * @ddsjs/dds — Score Distillation Sampling (SDS) and Delta Denoising Score (DDS) on TensorFlow.js.
 *
 * The score functions depend only on the small structural interfaces in `types.ts` ({@link ScoreModel},
 * {@link EditModel}), which the object returned by `@ddsjs/sd`'s `loadStableDiffusion` satisfies.
 * @packageDocumentation
 */
export * from './types';
export { SeededRandom } from './rng';
export {
  DEFAULT_GUIDANCE_SCALE,
  DEFAULT_T_RANGE,
  addNoise,
  alphaSigma,
  ddsGrad,
  scoreLoss,
  sdsGrad,
  stopGradient,
} from './score';
export * from './edit';
