/**
 * @packageDocumentation
 * The browser entry of `@ddsjs/safetensors` (package.json `exports` condition `browser`): the reader over URLs,
 * `ArrayBuffer`s and `Blob`s, without the Node-only file writer. `SafetensorsFile.open` takes URLs here. Every
 * browser-safe module: `@ddsjs/safetensors/internals`.
 */

// Reading: a file (or a sharded checkpoint) opened lazily, tensors read one at a time; finding the files of a model.
export { SafetensorsFile } from './file';
export type { TensorInfo } from './file';
export { findSafetensors, safetensorsCandidates } from './find';

// Sources: where the bytes come from (a URL with ranged requests, an ArrayBuffer, a Blob).
export { blobSource, bytesSource, urlSource } from './source';
export type { ByteSource, UrlSourceOptions } from './source';

// Dtypes: the names, the typed arrays they read into, and the float16 / bfloat16 conversions.
export { bf16ToF32, f16ToF32, f32ToF16 } from './float16';
export { isSupportedDtype } from './dtypes';
export type { Dtype, SupportedDtype, TensorArray } from './dtypes';

// Errors: the typed errors of every ddsjs package (a base class with a stable code; CONTRIBUTING.md, Errors).
export { DDS_ERROR_CODES, DdsError, InvalidArgumentError, IoError, ModelFormatError, SafetensorsError, isDdsError } from './errors';
export type { DdsErrorCode } from './errors';
