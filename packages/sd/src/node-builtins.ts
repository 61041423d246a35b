declare const require: ((id: string) => unknown) | undefined;

/**
 * Node's built-in module `id` (`'fs'`, `'path'`), loaded on first property access, so that the modules of
 * @ddsjs/sd that also read folders on disk stay importable in a browser: the `require` takes a variable, so bundlers
 * do not follow it, and outside Node the first use throws an Error saying to load from a URL instead.
 */
export function nodeModule<T extends object>(id: string): T {
  let mod: T | undefined;
  const load = (): T => {
    if (mod) return mod;
    const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
    if (isNode && typeof require === 'function') {
      try {
        return (mod = require(id) as T);
      } catch {
        // fall through
      }
    }
    throw new Error(`@ddsjs/sd: reading files needs Node's '${id}' module; in a browser load models from a URL (loadStableDiffusionFromUrl)`);
  };
  return new Proxy({} as T, {
    get(_, prop) {
      const m = load() as Record<string | symbol, unknown>;
      const v = m[prop];
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(m) : v;
    },
  });
}
