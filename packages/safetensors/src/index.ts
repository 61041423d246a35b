/**
 * @packageDocumentation
 * `@ddsjs/safetensors`: read and write the safetensors format in Node — strictly validated headers,
 * lazy positional per-tensor reads (multi-GB files, offsets beyond 4 GiB), every dtype, sharded
 * `*.safetensors.index.json` checkpoints, and an atomic writer. Knows nothing about tensor libraries.
 *
 * This entry is the curated surface; every module (header parsing, dtype tables, float16 bit conversions, URL
 * helpers) is reachable through `@ddsjs/safetensors/internals`. The browser entry (browser.ts) drops the writer.
 */

// Reading: a file (or a sharded checkpoint) opened lazily, tensors read one at a time; finding the files of a model.
export { SafetensorsFile } from './file';
export type { TensorInfo } from './file';
export { findSafetensors, safetensorsCandidates } from './find';

// Writing: an atomic writer.
export { writeSafetensors } from './writer';
export type { TensorData, WriteOptions } from './writer';

// Sources: where the bytes come from (a file, a URL with ranged requests, an ArrayBuffer, a Blob).
export { fileSource } from './node-source';
export { blobSource, bytesSource, urlSource } from './source';
export type { ByteSource, UrlSourceOptions } from './source';

// Dtypes: the names, the typed arrays they read into, and the float16 / bfloat16 conversions.
export { bf16ToF32, f16ToF32, f32ToF16 } from './float16';
export { isSupportedDtype } from './dtypes';
export type { Dtype, SupportedDtype, TensorArray } from './dtypes';

// Errors: the typed errors of every ddsjs package (a base class with a stable code; CONTRIBUTING.md, Errors).
export { DDS_ERROR_CODES, DdsError, InvalidArgumentError, IoError, ModelFormatError, SafetensorsError, isDdsError } from './errors';
export type { DdsErrorCode } from './errors';
