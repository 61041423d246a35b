/**
 * @packageDocumentation
 * `@ddsjs/sd`: Stable Diffusion 1.x/2.x in TensorFlow.js with diffusers parity — CLIP tokenizer and text encoder,
 * UNet2DConditionModel, AutoencoderKL, noise schedules and DDIM, diffusers-folder and single-file loaders, image IO.
 * Every tensor is NHWC float32; every function that returns tensors leaves them owned by the caller.
 *
 * This entry is the curated surface; every module (blocks, configs, key converters, weight sources, schedule math)
 * is reachable through `@ddsjs/sd/internals`. The browser entry (browser.ts) swaps the Node image IO for canvas IO.
 */

// Pipeline: load a model (diffusers folder, single-file checkpoint or URL) and run it.
export { StableDiffusion } from './pipeline';
export type { GenerateOptions } from './pipeline';
export { loadStableDiffusion, loadStableDiffusionFromUrl } from './loader';
export type { LoadStableDiffusionOptions } from './loader';

// Models: the three networks and the tokenizer the pipeline holds.
export { UNet2DConditionModel } from './unet';
export { AutoencoderKL } from './vae';
export { CLIPTextModel } from './clip';
export { CLIPTokenizer } from './tokenizer';

// Schedules: the diffusion math every loop uses (α/σ, noising, model output → ε, guidance) and DDIM sampling.
export { addNoise, alphaSigma, guide, modelOutputToEps } from './schedule';
export { DDIMScheduler } from './ddim';
export type { NoiseSchedule } from './schedule';

// IO: pictures to and from tensors and latents, the model's native size, output-path checks.
export { imageToLatents, latentsToImage, nativeImageSize } from './codec';
export { loadImageForEdit, readImage, writeImage } from './image';
export { OutputPathError, checkOutputPath } from './output';

// Loading: a model folder's loop defaults (with where each value came from) and a model's description.
export { resolveDefaults, resolveGenerateDefaults } from './defaults';
export { inspect } from './inspect';

// Errors: the typed errors (all of them, with their codes, in @ddsjs/sd/internals and @ddsjs/nn).
export { DdsError, InvalidArgumentError, ModelFormatError } from '@ddsjs/safetensors';
