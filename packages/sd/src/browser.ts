/**
 * @packageDocumentation
 * The browser entry of `@ddsjs/sd` (package.json `exports` condition `browser`): the Node entry (index.ts) with canvas
 * image IO in place of the sharp-based file IO, and without output-path checks and `inspect`. Models load from URLs:
 * {@link loadStableDiffusionFromUrl} (or `loadStableDiffusion(url)`). Every module: `@ddsjs/sd/internals`.
 */

// Pipeline: load a model from a URL and run it.
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

// IO: pictures (canvas, blobs, RGBA pixels) to and from tensors and latents, the model's native size.
export { imageToLatents, latentsToImage, nativeImageSize } from './codec';
export { decodeImageBlob, imageToBlob, imageToRgba, loadImageForEditInBrowser, rgbaToEditTensor } from './image-browser';

// Loading: a model folder's loop defaults, with where each value came from.
export { resolveDefaults, resolveGenerateDefaults } from './defaults';

// Errors: the typed errors (all of them, with their codes, in @ddsjs/sd/internals and @ddsjs/nn).
export { DdsError, InvalidArgumentError, ModelFormatError } from '@ddsjs/safetensors';
