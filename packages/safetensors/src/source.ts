import { SafetensorsError } from './errors';

/**
 * Random-access bytes a {@link SafetensorsFile} reads from: a file (Node), an `ArrayBuffer`, a `Blob` (a browser
 * `File`), or a URL served over HTTP (ranged requests when the server honours them). Browser-safe: nothing here
 * imports a Node module.
 */
export interface ByteSource {
  /** Names the source in error messages (a path, a URL, or a label given by the caller). */
  readonly name: string;
  /** Total size in bytes. */
  readonly size: number;
  /**
   * Fills `target` with the bytes starting at `position`.
   * @throws SafetensorsError on a short source or a read error (naming `key` when given)
   */
  read(target: Uint8Array, position: number, key?: string): Promise<void>;
  /** Releases the source (idempotent). */
  close(): Promise<void>;
}

function shortRead(name: string, position: number, length: number, size: number, key?: string): SafetensorsError {
  return new SafetensorsError(
    `unexpected end of safetensors file ${name}: ${length} bytes at offset ${position} run past its ${size} bytes${key !== undefined ? ` (tensor ${JSON.stringify(key)})` : ''}`,
    { file: name, key },
  );
}

/**
 * A source over bytes already in memory (`ArrayBuffer`, or any typed array / `DataView` view, which is not copied).
 * @param name names the source in error messages (default `'<bytes>'`)
 */
export function bytesSource(bytes: ArrayBuffer | ArrayBufferView, name = '<bytes>'): ByteSource {
  const view =
    bytes instanceof ArrayBuffer
      ? new Uint8Array(bytes)
      : ArrayBuffer.isView(bytes)
        ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
        : undefined;
  if (!view) throw new SafetensorsError(`bytesSource: expected an ArrayBuffer or a typed array for ${name}, got ${typeof bytes}`, { file: name });
  return {
    name,
    size: view.length,
    async read(target, position, key) {
      if (position < 0 || position + target.length > view.length) throw shortRead(name, position, target.length, view.length, key);
      target.set(view.subarray(position, position + target.length));
    },
    async close() {},
  };
}

/** The part of the DOM `Blob` (and `File`) a {@link blobSource} uses; Node ≥ 18's `Blob` has it too. */
export interface BlobLike {
  readonly size: number;
  slice(start?: number, end?: number): { arrayBuffer(): Promise<ArrayBuffer> };
  readonly name?: string;
}

/**
 * A source over a `Blob` or `File` (e.g. one the user dropped on a page): each read slices just the bytes needed,
 * so a large file is never held in memory whole.
 * @param name names the source in errors (default: the file's name, else `'<blob>'`)
 */
export function blobSource(blob: BlobLike, name = blob.name || '<blob>'): ByteSource {
  if (!blob || typeof blob.slice !== 'function' || typeof blob.size !== 'number') {
    throw new SafetensorsError(`blobSource: expected a Blob or File for ${name}`, { file: name });
  }
  return {
    name,
    size: blob.size,
    async read(target, position, key) {
      if (position < 0 || position + target.length > blob.size) throw shortRead(name, position, target.length, blob.size, key);
      let buf: ArrayBuffer;
      try {
        buf = await blob.slice(position, position + target.length).arrayBuffer();
      } catch (e) {
        throw new SafetensorsError(`cannot read ${target.length} bytes at offset ${position} of ${name}: ${(e as Error).message}`, { code: 'IO', file: name, key, cause: e });
      }
      if (buf.byteLength !== target.length) throw shortRead(name, position, target.length, blob.size, key);
      target.set(new Uint8Array(buf));
    },
    async close() {},
  };
}

/** The part of the WHATWG `fetch` a {@link urlSource} uses (the global `fetch` of browsers and Node ≥ 18 fits). */
export type FetchLike = (url: string, init?: { method?: string; headers?: Record<string, string>; signal?: AbortSignal }) => Promise<ResponseLike>;

/** The part of a WHATWG `Response` ddsjs uses. */
export interface ResponseLike {
  readonly ok: boolean;
  readonly status: number;
  readonly url?: string;
  readonly headers: { get(name: string): string | null };
  arrayBuffer(): Promise<ArrayBuffer>;
  text(): Promise<string>;
}

/** Options of {@link urlSource} and the URL loaders built on it. */
export interface UrlSourceOptions {
  /** The `fetch` to use (default: the global one). */
  fetch?: FetchLike;
  /** Aborts pending requests. */
  signal?: AbortSignal;
}

/** The global `fetch`, or a clear error when the platform has none. */
export function defaultFetch(): FetchLike {
  const f = (globalThis as { fetch?: FetchLike }).fetch;
  if (typeof f !== 'function') throw new SafetensorsError('no global fetch: pass options.fetch (Node ≥ 18 and every browser have one)');
  return f.bind(globalThis) as FetchLike;
}

/**
 * A source over the bytes of `response` (read whole: a `Response` cannot seek). Use {@link urlSource} for lazy
 * ranged reads of a URL.
 * @throws SafetensorsError when the response is not OK
 */
export async function responseSource(response: ResponseLike, name = response.url || '<response>'): Promise<ByteSource> {
  if (!response.ok) throw new SafetensorsError(`cannot fetch ${name}: HTTP ${response.status}`, { code: 'IO', file: name });
  let buf: ArrayBuffer;
  try {
    buf = await response.arrayBuffer();
  } catch (e) {
    throw new SafetensorsError(`cannot read the body of ${name}: ${(e as Error).message}`, { code: 'IO', file: name, cause: e });
  }
  return bytesSource(buf, name);
}

/** Total size from a `Content-Range: bytes a-b/total` header, or undefined. */
function rangeTotal(header: string | null): number | undefined {
  const m = header ? /\/(\d+)\s*$/.exec(header) : null;
  return m ? Number(m[1]) : undefined;
}

/**
 * A source over a URL. The first request asks for the first 64 KiB with a `Range` header: when the server answers
 * `206 Partial Content` with the total size, every later read is its own ranged request (only the tensors read are
 * downloaded; cross-origin servers must allow the `Range` header and expose `Content-Range` via CORS); when it
 * answers `200` with the whole file, that body is kept and read from memory.
 * @throws SafetensorsError when the URL cannot be fetched (HTTP error, network/CORS failure)
 */
export async function urlSource(url: string, options: UrlSourceOptions = {}): Promise<ByteSource> {
  const fetchFn = options.fetch ?? defaultFetch();
  const PROBE = 64 * 1024;
  let first: ResponseLike;
  try {
    first = await fetchFn(url, { headers: { Range: `bytes=0-${PROBE - 1}` }, signal: options.signal });
  } catch (e) {
    throw new SafetensorsError(`cannot fetch ${url}: ${(e as Error).message} (a network error, or a server that does not allow this origin by CORS)`, { code: 'IO', file: url, cause: e });
  }
  if (first.status === 404) throw new SafetensorsError(`safetensors file ${url} does not exist (HTTP 404)`, { code: 'IO', file: url });
  if (first.status === 416) return bytesSource(new ArrayBuffer(0), url); // empty file: no satisfiable range
  const total = first.status === 206 ? rangeTotal(first.headers.get('content-range')) : undefined;
  if (first.status !== 206 || total === undefined) return responseSource(first, url);
  const head = new Uint8Array(await first.arrayBuffer());
  return {
    name: url,
    size: total,
    async read(target, position, key) {
      if (position < 0 || position + target.length > total) throw shortRead(url, position, target.length, total, key);
      if (target.length === 0) return;
      if (position + target.length <= head.length) {
        target.set(head.subarray(position, position + target.length));
        return;
      }
      let res: ResponseLike;
      try {
        res = await fetchFn(url, { headers: { Range: `bytes=${position}-${position + target.length - 1}` }, signal: options.signal });
      } catch (e) {
        throw new SafetensorsError(`cannot fetch bytes ${position}+${target.length} of ${url}: ${(e as Error).message}`, { code: 'IO', file: url, key, cause: e });
      }
      if (res.status !== 206 && res.status !== 200) {
        throw new SafetensorsError(`cannot fetch bytes ${position}+${target.length} of ${url}: HTTP ${res.status}`, { code: 'IO', file: url, key });
      }
      const body = new Uint8Array(await res.arrayBuffer());
      // A server that ignores Range on this request sends the whole file (200): take the slice.
      const part = res.status === 200 ? body.subarray(position, position + target.length) : body;
      if (part.length !== target.length) throw shortRead(url, position, target.length, total, key);
      target.set(part);
    },
    async close() {},
  };
}

/** True for the strings {@link SafetensorsFile.open} treats as URLs (`http:`, `https:`, `blob:`, `data:`, `file:` with `//`). */
export function isUrl(s: string): boolean {
  return /^(https?:|blob:|data:)/i.test(s);
}

/** `base` and `rel` joined with one `/` (for URLs; a query or hash on `base` is not supported). */
export function joinUrl(base: string, ...rel: string[]): string {
  return [base.replace(/\/+$/, ''), ...rel.map((r) => r.replace(/^\/+|\/+$/g, ''))].filter((p) => p !== '').join('/');
}

/** Everything before the last `/` of a URL (or path). */
export function urlDirname(url: string): string {
  const i = url.lastIndexOf('/');
  return i < 0 ? '.' : url.slice(0, i);
}
