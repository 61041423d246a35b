/**
 * @packageDocumentation
 * `@ddsjs/dds/internals`: every module of `@ddsjs/dds` (score constants and coefficients, the translator's files,
 * data and training pieces) for the tools, tests and advanced callers that need more than the curated entry
 * (`@ddsjs/dds`). Not a stable API: names here may move between releases.
 */
export * from './internals-browser';
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
} from './translator/translator';
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
} from './translator/translator';
export { prepareTranslatorData, listTranslatorImages } from './translator/translator-data';
export type {
  PrepareTranslatorDataOptions,
  TranslatorData,
  TranslatorDataProgress,
  TranslatorDataSource,
  TranslatorDataset,
  TranslatorGeneratedData,
  TranslatorImageData,
  TranslatorLatentData,
} from './translator/translator-data';
export {
  DEFAULT_TRANSLATOR_LR,
  DEFAULT_TRANSLATOR_STEPS,
  TranslatorDivergedError,
  guidanceAtStep,
  trainTranslator,
} from './translator/translator-train';
export type { TrainTranslatorOptions, TranslatorStepInfo } from './translator/translator-train';
export { ddsLoss, translatorGrads } from './translator/translator-loss';
export type { DdsLossResult, TranslatorGrads, TranslatorLossOptions } from './translator/translator-loss';
