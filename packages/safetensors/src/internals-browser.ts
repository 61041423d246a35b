/**
 * @packageDocumentation
 * `@ddsjs/safetensors/internals` in a browser (package.json `exports` condition `browser`): every module but the
 * Node-only file writer and file source.
 */
export { DDS_ERROR_CODES, DdsError, InvalidArgumentError, IoError, ModelFormatError, SafetensorsError, isDdsError } from './errors';
export type { DdsErrorCode } from './errors';
export { KNOWN_DTYPES, SUPPORTED_DTYPES, dtypeBits, isKnownDtype, isSupportedDtype } from './dtypes';
export type { Dtype, SupportedDtype, DtypeArrayMap, TensorArray } from './dtypes';
export { SafetensorsFile } from './file';
export type { TensorInfo } from './file';
export { MAX_HEADER_SIZE, parseHeader, scanHeaderTokens } from './header';
export type { ParsedHeader, TensorEntry, HeaderScan } from './header';
export { f16Table32, f16ToF32, bf16ToF32, f32ToF16, f32ToF16Bits, f32ToBf16 } from './float16';
export { findSafetensors, safetensorsCandidates } from './find';
export { blobSource, bytesSource, defaultFetch, isUrl, joinUrl, responseSource, urlDirname, urlSource } from './source';
export type { BlobLike, ByteSource, FetchLike, ResponseLike, UrlSourceOptions } from './source';
