export * from './module';
export * from './layers';
export * from './ops';
export * from './hot-ops';
export * from './attention';
export * from './offload';
export * from './backend';
export * from './random';
// The typed errors of every ddsjs package (defined in @ddsjs/safetensors, the lowest package).
export { DDS_ERROR_CODES, DdsError, InvalidArgumentError, IoError, ModelFormatError, isDdsError } from '@ddsjs/safetensors';
export type { DdsErrorCode } from '@ddsjs/safetensors';
