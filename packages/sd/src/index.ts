/**
 * @packageDocumentation
 * `@ddsjs/sd`: Stable Diffusion 1.x/2.x in TensorFlow.js with diffusers parity — CLIP tokenizer and text encoder,
 * UNet2DConditionModel, AutoencoderKL, noise schedules and DDIM, diffusers-folder and single-file loaders, image IO.
 * Every tensor is NHWC float32; every function that returns tensors leaves them owned by the caller.
 */
export * from './browser';
export * from './image';
export * from './output';
export * from './inspect';
