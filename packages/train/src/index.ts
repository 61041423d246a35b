/**
 * @packageDocumentation
 * `@ddsjs/train`: the training toolkit of ddsjs (Node only): {@link Adam} over named parameters with its state in
 * one safetensors format, gradient-norm clipping, one set of option checks, checkpoint-folder helpers (atomic JSON
 * state, loss log, "same trajectory" checks) and the {@link TrainingRun} step loop (checkpoint cadence, time
 * budget, abort on signal, divergence stop naming the last good checkpoint, progress with ETA). The seeded random
 * generator it relies on is `@ddsjs/nn`'s `Rng` (with `mixSeed` and `hashString`), which browsers use too.
 * Tensors returned by these functions belong to the caller.
 */
export { Adam, ADAM_STATE_FORMAT, clipScale, gradNorm } from './adam';
export type { AdamOptions, NamedGrads } from './adam';
export { finiteNumber, nonEmptyString, nonNegativeInt, nonNegativeNumber, numberInRange, oneOf, positiveInt, positiveNumber } from './checks';
export { canonicalJson, checkSameTrajectory, configDiff, configHash, LossLog, readJsonObject, writeJsonAtomic } from './state';
export { DivergedError, formatDuration, TrainingRun } from './run';
export type { CheckpointRef, RunProgress, RunResult, RunStop, StepOutcome, TrainingRunOptions } from './run';
export { abortOnInterrupt } from './interrupt';
