/**
 * @packageDocumentation
 * The browser entry of `@ddsjs/dds` (package.json `exports` condition `browser`): the scores and the editing loops.
 * The Node entry (index.ts) adds the translation network, whose training and files need Node's fs and crypto.
 * Every browser-safe module: `@ddsjs/dds/internals`.
 */

// Scores: the gradients of SDS, DDS and their family (CSD, NFSD, PDS, the bridge), and the loss that applies one.
export { ddsGrad, scoreGrad, scoreLoss, sdsGrad } from './score/score';
export { bridgeGrad, csdGrad, nfsdGrad, pdsGrad } from './score/family';
export type { EditModel, ScoreModel, TextEmbeddings } from './score/types';

// Editing loops: edit a picture or a latent by a score, with the model folder's defaults.
export { EDIT_METHODS, editImage, editLatent, resolveEditDefaults } from './score/edit';
export type { EditImageOptions, EditMethod } from './score/edit';
export { flowEditLatent } from './score/flowedit';

// Errors: the typed errors (all of them, with their codes, in @ddsjs/dds/internals and @ddsjs/nn).
export { DdsError, InvalidArgumentError } from '@ddsjs/safetensors';
