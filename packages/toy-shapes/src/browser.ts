/**
 * @packageDocumentation
 * The browser entry of `@ddsjs/toy-shapes` (package.json `exports` condition `browser`): the synthetic world's
 * picture generator, captions and measurement helpers. The model folder itself is served as static files (see
 * web/), so its on-disk location (`MODEL_DIR`, `defaultModel`) is in the Node entry only.
 */
export * from './world';
