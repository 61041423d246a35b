/**
 * @packageDocumentation
 * `@ddsjs/weights-tools` (bin `dds-weights`): inspect, convert and make Stable Diffusion weight folders —
 * `inspect`, `convert-single-file` (LDM checkpoint → diffusers folder), `to-fp16` (fp16 variant beside float32
 * weights, as torch's `.half()`), `make-random` (real SD 1.5 / 2.1 architectures with seeded random weights).
 * Every tool streams one tensor at a time with plain typed arrays (no tfjs tensors).
 */
export { inspect } from '@ddsjs/sd';
export { inspectModel } from '@ddsjs/sd/internals';
export type { InspectOptions } from '@ddsjs/sd/internals';
export { convertSingleFile } from './convert';
export type { ConvertSingleFileOptions, ConvertSingleFileResult } from './convert';
export { toFp16, fp16VariantName, shipTranslatorFp16 } from './fp16';
export type { ToFp16Options, ToFp16File } from './fp16';
export { averageCheckpoints } from './average';
export type { AverageOptions, AverageResult } from './average';
export { makeRandom, scaleConfigs, scaleChannels, randomParameter } from './random';
export type { MakeRandomOptions, MakeRandomResult } from './random';
export { SafetensorsStreamWriter, byteLength } from './writer';
export type { TensorSpec } from './writer';
export { f32ArrayToF16 } from './numeric';
export type { F16Conversion } from './numeric';
export {
  COMPONENTS,
  componentParams,
  prepareOutdir,
  writeConfigs,
  writeTokenizer,
  weightsFileName,
  formatBytes,
  formatCount,
} from './folder';
export type { ComponentName, ParamSpec, RawComponentConfigs } from './folder';
export { main, COMMANDS } from './main';
export { trainToy } from './train-toy';
export { toyConfigs, TOY_PRESETS } from './toy/presets';
export type { ToyPreset } from './toy/presets';
export type { TrainToyOptions, TrainToyResult, TrainToyProgress } from './toy/options';
export { formatTrainProgress, parseTrainToyArgs, runTrainToyCommand, TRAIN_TOY_COMMAND } from './commands/train-toy';
export type { TrainToyArgs } from './commands/train-toy';
export {
  evaluateGeneration,
  evaluateEdits,
  editTasks,
  summariseEdits,
  reportsByBackground,
  formatEditTable,
  formatGenerationLine,
  BACKGROUND_CHANGE_LIMIT,
} from './toy-quality';
export { runEvalToyCommand, EVAL_TOY_COMMAND } from './commands/eval-toy';
export type { GenerationCase, GenerationReport, GenerationEvalOptions, EditCase, EditReport, EditEvalOptions, EditTask, CustomEditor } from './toy-quality';
export {
  TOY_TRANSLATOR_TASKS,
  TOY_TRANSLATOR_SOURCE_COLOUR,
  TOY_TRANSLATOR_TARGET_COLOURS,
  TOY_TRANSLATOR_SOURCE_CAPTIONS,
  TOY_TRANSLATOR_RECIPE,
  toyTaskPrompt,
  captionScenes,
  sourceDomainScenes,
  colourScenes,
  toyTranslatorEditTasks,
  toyTranslatorData,
  evaluateToyTranslator,
  reportsByTask,
  taskConfusion,
  taskSensitivity,
  formatConfusion,
  formatSensitivity,
  formatToyTranslatorEvaluation,
  toyTranslatorStrip,
} from './toy-translator';
export { runTrainToyTranslatorCommand, runEvalToyTranslatorCommand, TRAIN_TOY_TRANSLATOR_COMMAND, EVAL_TOY_TRANSLATOR_COMMAND } from './commands/toy-translator';
export type { ToyTranslatorEvalOptions, ToyTranslatorEvaluation, TaskConfusion, TaskSensitivity } from './toy-translator';
