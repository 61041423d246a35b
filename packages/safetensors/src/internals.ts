/**
 * @packageDocumentation
 * `@ddsjs/safetensors/internals`: every module of `@ddsjs/safetensors` (header parsing and scanning, dtype tables,
 * float16 bit conversions, URL helpers) for the tools and tests that need more than the curated entry. Not a
 * stable API: names here may move between releases.
 */
export * from './internals-browser';
export { writeSafetensors, buildHeader } from './writer';
export type { TensorData, WriteOptions } from './writer';
export { fileSource } from './node-source';
