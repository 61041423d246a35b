import type { promises as fspTypes } from 'fs';
import { SafetensorsError } from './errors';
import type { ByteSource } from './source';
import { readFully } from './io';

declare const require: ((id: string) => unknown) | undefined;

/**
 * Node's built-in module `id`, loaded on first use. Browser-safe to import: the `require` call takes a variable, so
 * bundlers do not follow it, and outside Node it throws a clear error naming `what` needed it.
 */
export function nodeBuiltin<T>(id: string, what: string): T {
  const isNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
  if (isNode && typeof require === 'function') {
    try {
      return require(id) as T;
    } catch {
      // fall through to the error below
    }
  }
  throw new SafetensorsError(`${what} needs Node's '${id}' module; in a browser use a URL, an ArrayBuffer or a Blob instead`);
}

type Fsp = typeof fspTypes;

/**
 * A {@link ByteSource} over a file on disk (Node only): positional reads of an open handle, so multi-GB files
 * (offsets beyond 4 GiB included) never need to fit in memory.
 * @throws SafetensorsError if the file does not exist, is not a regular file, or cannot be opened
 */
export async function fileSource(path: string, what = 'safetensors file'): Promise<ByteSource> {
  const fsp = nodeBuiltin<{ promises: Fsp }>('fs', `reading ${what} ${path}`).promises;
  let handle: Awaited<ReturnType<Fsp['open']>>;
  try {
    handle = await fsp.open(path, 'r');
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new SafetensorsError(
      code === 'ENOENT' ? `${what} ${path} does not exist` : `cannot open ${what} ${path}: ${(e as Error).message}`,
      { code: 'IO', file: path, cause: e },
    );
  }
  let size: number;
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new SafetensorsError(`${what} ${path} is not a regular file`, { file: path });
    size = st.size;
  } catch (e) {
    await handle.close().catch(() => undefined);
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(`cannot stat ${what} ${path}: ${(e as Error).message}`, { code: 'IO', file: path, cause: e });
  }
  let open: typeof handle | undefined = handle;
  return {
    name: path,
    size,
    async read(target, position, key) {
      if (!open) throw new SafetensorsError(`safetensors file ${path} is closed`, { file: path, key });
      await readFully(open, target, position, path, key);
    },
    async close() {
      const h = open;
      open = undefined;
      await h?.close().catch(() => undefined);
    },
  };
}
