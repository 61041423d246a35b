/**
 * @packageDocumentation
 * `@ddsjs/sd/internals` in a browser (package.json `exports` condition `browser`): every browser-safe module of
 * `@ddsjs/sd`; the Node internals (internals.ts) add the sharp-based image IO, output-path checks and `inspect`.
 */
export * from './pipeline';
export * from './loader';
export * from './defaults';
export * from './tokenizer';
export * from './tokenizer-files';
export * from './clip';
export * from './clip-config';
export * from './config';
export * from './blocks';
export * from './unet';
export * from './vae';
export * from './schedule';
export * from './scheduler-config';
export * from './ddim';
export * from './codec';
export * from './sources';
export * from './single-file';
export * from './single-file-configs';
export * from './single-file-keys';
export * from './image-browser';
export { formatBytes, formatCount } from './format';
// The typed errors of every ddsjs package (defined in @ddsjs/safetensors, the lowest package).
export { DDS_ERROR_CODES, DdsError, InvalidArgumentError, IoError, ModelFormatError, SafetensorsError, isDdsError } from '@ddsjs/safetensors';
export type { DdsErrorCode } from '@ddsjs/safetensors';
