/**
 * @ddsjs/dds — Score Distillation Sampling (SDS) and Delta Denoising Score (DDS) on TensorFlow.js.
 *
 * The score functions depend only on the small structural interfaces in `types.ts` ({@link ScoreModel},
 * {@link EditModel}), which the object returned by `@ddsjs/sd`'s `loadStableDiffusion` satisfies.
 * @packageDocumentation
 */
export * from './browser';
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
  guidanceAtStep,
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
