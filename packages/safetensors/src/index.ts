/**
 * @packageDocumentation
 * `@ddsjs/safetensors`: read and write the safetensors format in Node — strictly validated headers,
 * lazy positional per-tensor reads (multi-GB files, offsets beyond 4 GiB), every dtype, sharded
 * `*.safetensors.index.json` checkpoints, and an atomic writer. Knows nothing about tensor libraries.
 */
export * from './browser';
export { writeSafetensors, buildHeader } from './writer';
export type { TensorData, WriteOptions } from './writer';
export { fileSource } from './node-source';
