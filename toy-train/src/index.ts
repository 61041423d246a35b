/**
 * @packageDocumentation
 * `@ddsjs/toy-train` (bin `dds-toy`): trains and measures the toy-shapes model of `@ddsjs/toy-shapes` — `trainToy`
 * (the VAE, then the UNet, on the synthetic shapes world, with checkpoints and resume), the quality harness
 * (`evaluateGeneration`, `evaluateEdits`, …) and the toy translator's recipe and evaluation. Generic weight-folder
 * tools (writing configs, checkpoint averaging, fp16) come from `@ddsjs/weights-tools`.
 */
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
