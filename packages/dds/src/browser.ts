/**
 * @packageDocumentation
 * The browser entry of `@ddsjs/dds` (package.json `exports` condition `browser`): the scores and the editing loop.
 * The translation network's training and its files (Node's fs and crypto) are in the Node entry only.
 */
export * from './types';
export { SeededRandom } from './rng';
export { DEFAULT_GUIDANCE_SCALE, DEFAULT_T_RANGE, addNoise, alphaSigma, ddsGrad, scoreLoss, sdsGrad, stopGradient } from './score';
export * from './edit';
