/**
 * @packageDocumentation
 * `@ddsjs/sd/internals`: every module of `@ddsjs/sd` (blocks, configs, key converters, weight sources, schedule
 * math, image IO, output checks, inspect) for the tools, tests and advanced callers that need more than the
 * curated entry (`@ddsjs/sd`). Not a stable API: names here may move between releases.
 */
export * from './internals-browser';
export * from './image';
export * from './output';
export * from './inspect';
