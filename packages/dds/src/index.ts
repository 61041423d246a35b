/**
 * @packageDocumentation
 * `@ddsjs/dds`: Score Distillation Sampling (SDS) and Delta Denoising Score (DDS) on TensorFlow.js, the editing loops
 * built on them, and the zero-shot image-to-image translation network (DDS paper, Section 5; docs/translator.md).
 *
 * The score functions depend only on the small structural interfaces {@link ScoreModel} and {@link EditModel}, which
 * the pipeline returned by `@ddsjs/sd`'s `loadStableDiffusion` satisfies. This entry is the curated surface; every
 * module (score constants, translator files, data and training pieces) is reachable through `@ddsjs/dds/internals`.
 */

// Scores: the gradients of SDS, DDS and their family (CSD, NFSD, PDS, the bridge), and the loss that applies one.
export { ddsGrad, scoreGrad, scoreLoss, sdsGrad } from './score/score';
export { bridgeGrad, csdGrad, nfsdGrad, pdsGrad } from './score/family';
export type { EditModel, ScoreModel, TextEmbeddings } from './score/types';

// Editing loops: edit a picture or a latent by a score, with the model folder's defaults.
export { EDIT_METHODS, editImage, editLatent, resolveEditDefaults } from './score/edit';
export type { EditImageOptions, EditMethod } from './score/edit';
export { flowEditLatent } from './score/flowedit';

// Translator: a network trained by DDS that edits in one forward pass; its files, data and training.
export { Translator, createTranslator, loadTranslator, readTranslatorMeta, saveTranslator, TRANSLATOR_FILES } from './translator/translator';
export { listTranslatorImages, prepareTranslatorData } from './translator/translator-data';
export { TranslatorDivergedError, trainTranslator } from './translator/translator-train';

// Errors: the typed errors (all of them, with their codes, in @ddsjs/dds/internals and @ddsjs/nn).
export { DdsError, InvalidArgumentError } from '@ddsjs/safetensors';
