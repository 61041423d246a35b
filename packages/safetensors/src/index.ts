/**
 * @packageDocumentation
 * `@ddsjs/safetensors`: read and write the safetensors format in Node — strictly validated headers,
 * lazy positional per-tensor reads (multi-GB files, offsets beyond 4 GiB), every dtype, sharded
 * `*.safetensors.index.json` checkpoints, and an atomic writer. Knows nothing about tensor libraries.
 */
export { SafetensorsError } from './errors';
export {
  KNOWN_DTYPES,
  SUPPORTED_DTYPES,
  dtypeBits,
  isKnownDtype,
  isSupportedDtype,
} from './dtypes';
export type { Dtype, SupportedDtype, DtypeArrayMap, TensorArray } from './dtypes';
export { SafetensorsFile } from './file';
export type { TensorInfo } from './file';
export { writeSafetensors, buildHeader } from './writer';
export type { TensorData, WriteOptions } from './writer';
export { MAX_HEADER_SIZE, parseHeader, scanHeaderTokens } from './header';
export type { ParsedHeader, TensorEntry, HeaderScan } from './header';
export { f16Table32, f16ToF32, bf16ToF32, f32ToF16, f32ToF16Bits, f32ToBf16 } from './float16';
export { findSafetensors, safetensorsCandidates } from './find';
export { blobSource, bytesSource, defaultFetch, isUrl, joinUrl, responseSource, urlDirname, urlSource } from './source';
export type { BlobLike, ByteSource, FetchLike, ResponseLike, UrlSourceOptions } from './source';
export { fileSource } from './node-source';
