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
  ddsGrad,
  scoreGrad,
  scoreLoss,
  sdsGrad,
  stopGradient,
} from './score';
export type { ScoreCoef, ScoreSpec, ScoreTerm } from './score';
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
} from './family';
export type { CsdScales, PdsCoefficients } from './family';
export * from './edit';
export * from './flowedit';
// The zero-shot image-to-image translation network (DDS paper, Section 5); see docs/translator.md.
export {
  DEFAULT_STUDENT_TIMESTEP,
  TRANSLATOR_FILES,
  TRANSLATOR_FORMAT,
  TRANSLATOR_FORMAT_VERSION,
  Translator,
  createTranslator,
  loadTranslator,
  readTranslatorMeta,
  saveTranslator,
  studentUNetConfig,
  teacherFingerprint,
  unetConfigToJson,
} from './translator';
export type {
  CreateTranslatorOptions,
  LoadTranslatorOptions,
  SaveTranslatorOptions,
  TeacherFingerprint,
  TeacherRecord,
  TranslatorImageModel,
  TranslatorInitReport,
  TranslatorMeta,
  TranslatorTask,
  TranslatorTaskRef,
  TranslatorTrainingRecord,
} from './translator';
export { prepareTranslatorData, listTranslatorImages } from './translator-data';
export type {
  PrepareTranslatorDataOptions,
  TranslatorData,
  TranslatorDataProgress,
  TranslatorDataSource,
  TranslatorDataset,
  TranslatorGeneratedData,
  TranslatorImageData,
  TranslatorLatentData,
} from './translator-data';
export {
  DEFAULT_TRANSLATOR_LR,
  DEFAULT_TRANSLATOR_STEPS,
  TranslatorDivergedError,
  ddsLoss,
  trainTranslator,
  translatorGrads,
} from './translator-train';
export type {
  DdsLossResult,
  TrainTranslatorOptions,
  TranslatorGrads,
  TranslatorLossOptions,
  TranslatorStepInfo,
} from './translator-train';
