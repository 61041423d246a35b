/**
 * @packageDocumentation
 * `@ddsjs/dds/internals` in a browser (package.json `exports` condition `browser`): every browser-safe module of
 * `@ddsjs/dds` (the scores and the editing loops); the Node internals (internals.ts) add the translation network.
 */
export * from './score/types';
export { SeededRandom } from './score/rng';
export {
  DEFAULT_GUIDANCE_SCALE,
  DEFAULT_T_RANGE,
  ddsGrad,
  scoreGrad,
  scoreLoss,
  sdsGrad,
  stopGradient,
} from './score/score';
export type { ScoreCoef, ScoreSpec, ScoreTerm } from './score/score';
export {
  BRIDGE_SCALE,
  BRIDGE_SOURCE_MODIFIER,
  BRIDGE_TARGET_MODIFIER,
  CSD_NEGATIVE_PROMPT,
  NFSD_NEGATIVE_PROMPT,
  NFSD_T_SWITCH,
  PDS_STEP,
  bridgeGrad,
  csdGrad,
  nfsdGrad,
  pdsCoefficients,
  pdsGrad,
} from './score/family';
export type { CsdScales, PdsCoefficients } from './score/family';
export * from './score/edit';
export * from './score/flowedit';
// The typed errors of every ddsjs package (defined in @ddsjs/safetensors, the lowest package).
export { DDS_ERROR_CODES, DdsError, InvalidArgumentError, IoError, ModelFormatError, SafetensorsError, isDdsError } from '@ddsjs/safetensors';
export type { DdsErrorCode } from '@ddsjs/safetensors';
