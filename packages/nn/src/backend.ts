import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

/** Backends ddsjs can run on. `'auto'` picks the best one installed. */
export type BackendName = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

/**
 * Selects and initialises the tfjs backend and returns the name of the backend in use.
 * (Placeholder: wasm or cpu only — the full selection lands with the foundation issue.)
 */
export async function initBackend(name: BackendName = 'auto'): Promise<string> {
  const want = (process.env.DDSJS_BACKEND as BackendName | undefined) ?? name;
  const target = want === 'auto' ? 'wasm' : want;
  await tf.setBackend(target);
  await tf.ready();
  return tf.getBackend();
}
