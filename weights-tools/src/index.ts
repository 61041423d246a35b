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
