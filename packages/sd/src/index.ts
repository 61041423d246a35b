/**
 * @packageDocumentation
 * `@ddsjs/sd`: Stable Diffusion 1.x/2.x in TensorFlow.js with diffusers parity — CLIP tokenizer and text encoder,
 * UNet2DConditionModel, AutoencoderKL, noise schedules and DDIM, diffusers-folder and single-file loaders, image IO.
 * Every tensor is NHWC float32; every function that returns tensors leaves them owned by the caller.
 */
export * from './loader';
export * from './defaults';
export * from './tokenizer';
export * from './clip';
export * from './clip-config';
export * from './config';
export * from './blocks';
export * from './unet';
export * from './vae';
export * from './schedule';
export * from './sources';
export * from './single-file';
export * from './image';
export * from './image-browser';
export * from './inspect';
export { formatBytes, formatCount } from './format';
/**
 * The safetensors reader/writer, re-exported so that higher layers (@ddsjs/dds) store tensors without importing
 * @ddsjs/safetensors directly (DESIGN.md: each layer imports only the one below it).
 */
export { SafetensorsFile, writeSafetensors } from '@ddsjs/safetensors';
export type { TensorData } from '@ddsjs/safetensors';
