import type * as NodePath from 'path';
import { SafetensorsError } from './errors';
import {
  ARRAY_CTOR,
  Dtype,
  DtypeArrayMap,
  SupportedDtype,
  TensorArray,
  isSupportedDtype,
} from './dtypes';
import { MAX_HEADER_SIZE, TensorEntry, parseHeader } from './header';
import { bf16ToF32, f16ToF32 } from './float16';
import { fileSource, nodeBuiltin } from './node-source';
import { BlobLike, ByteSource, ResponseLike, UrlSourceOptions, blobSource, bytesSource, isUrl, joinUrl, responseSource, urlDirname, urlSource } from './source';

/** What {@link SafetensorsFile.info} reports about one tensor. */
export interface TensorInfo {
  /** Stored dtype (any dtype name of the format, including ones this package cannot decode). */
  dtype: Dtype;
  /** Shape (a fresh copy; `[]` for a scalar). */
  shape: number[];
  /** Size of the stored data in bytes. */
  byteLength: number;
}

interface Shard {
  path: string;
  source: ByteSource | undefined;
  /** Absolute file offset of the data section (8 + N). */
  dataStart: number;
}

interface Located {
  shard: Shard;
  entry: TensorEntry;
}

/** Bytes converted per step by {@link SafetensorsFile.readFloat32} for non-F32 dtypes (bounds extra memory). */
const CONVERT_CHUNK = 16 << 20;

function isIndexPath(path: string): boolean {
  return path.toLowerCase().endsWith('.json');
}

/** Opens `path` as a byte source: a URL (ranged HTTP reads) or, in Node, a file. */
async function openPath(path: string, what: string, options: UrlSourceOptions): Promise<ByteSource> {
  return isUrl(path) ? urlSource(path, options) : fileSource(path, what);
}

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}

/** Reads and validates the header of one safetensors source. The source stays open (closed on failure). */
async function openSingle(source: ByteSource): Promise<{ shard: Shard; tensors: Map<string, TensorEntry>; metadata: Record<string, string> }> {
  const path = source.name;
  const size = source.size;
  try {
    if (size < 8) {
      throw new SafetensorsError(`safetensors file ${path} is ${size} bytes, too small to hold the 8-byte header length`, { file: path });
    }
    const lenBuf = new Uint8Array(8);
    await source.read(lenBuf, 0);
    const n64 = new DataView(lenBuf.buffer).getBigUint64(0, true);
    if (n64 > BigInt(MAX_HEADER_SIZE)) {
      throw new SafetensorsError(`header length ${n64} of safetensors file ${path} exceeds the ${MAX_HEADER_SIZE}-byte limit (not a safetensors file?)`, { file: path });
    }
    const n = Number(n64);
    if (8 + n > size) {
      throw new SafetensorsError(`header length ${n} of safetensors file ${path} runs past the end of the file (${size} bytes)`, { file: path });
    }
    const headerBytes = new Uint8Array(n);
    await source.read(headerBytes, 8);
    const { tensors, metadata } = parseHeader(headerBytes, size - 8 - n, path);
    return { shard: { path, source, dataStart: 8 + n }, tensors, metadata };
  } catch (e) {
    await source.close().catch(() => undefined);
    throw e;
  }
}

/**
 * A safetensors checkpoint opened for lazy reading: a single `.safetensors` file, or a sharded
 * checkpoint described by a `*.safetensors.index.json` file (which then behaves as one file).
 *
 * Opening reads and validates only the header(s); each {@link read} / {@link readFloat32} performs
 * positional reads of just that tensor's bytes, so multi-GB files (offsets beyond 4 GiB included)
 * never need to fit in memory. Several reads may run concurrently. Call {@link close} when done.
 *
 * @example
 * const f = await SafetensorsFile.open('unet/diffusion_pytorch_model.fp16.safetensors');
 * for (const key of f.keys()) console.log(key, f.info(key));
 * const w = await f.readFloat32('conv_in.weight');
 * await f.close();
 */
export class SafetensorsFile {
  /** The path given to {@link open} (the .safetensors file or the index JSON). */
  readonly path: string;
  /** `__metadata__` of the file (for a sharded checkpoint: the index's `metadata`, values stringified). */
  readonly metadata: Record<string, string>;
  private readonly located: Map<string, Located>;
  private readonly shards: Shard[];
  private readonly sortedKeys: string[];
  private closed = false;

  private constructor(path: string, metadata: Record<string, string>, located: Map<string, Located>, shards: Shard[]) {
    this.path = path;
    this.metadata = metadata;
    this.located = located;
    this.shards = shards;
    this.sortedKeys = [...located.keys()].sort();
  }

  /**
   * Opens a `.safetensors` file, or a sharded checkpoint's `*.index.json` (any path ending in `.json`,
   * whose `weight_map` maps tensor names to shard files in the same directory), and reads and
   * validates the header(s) only.
   *
   * `path` may also be an `http(s):`, `blob:` or `data:` URL (the only kind in a browser): the header is fetched
   * with a ranged request and each tensor read is its own ranged request when the server honours `Range`
   * (see {@link urlSource}); a sharded index's shards are then resolved against the index's URL.
   *
   * @param path file (or URL) to open
   * @param options `fetch` and `signal` for URLs
   * @returns the opened file; the caller must {@link close} it
   * @throws SafetensorsError if the file does not exist, cannot be read, or its header (or index) is invalid
   */
  static async open(path: string, options: UrlSourceOptions = {}): Promise<SafetensorsFile> {
    if (typeof path !== 'string' || path.length === 0) {
      throw new SafetensorsError(`SafetensorsFile.open: path must be a non-empty string (got ${String(path)})`);
    }
    if (!isLittleEndian()) {
      throw new SafetensorsError(`@ddsjs/safetensors supports only little-endian hosts (opening ${path})`, { file: path });
    }
    if (isIndexPath(path)) return SafetensorsFile.openIndex(path, options);
    return SafetensorsFile.fromSource(await openPath(path, 'safetensors file', options));
  }

  /**
   * Opens a single safetensors file over any {@link ByteSource} (reads and validates the header only). The file
   * takes ownership of the source: {@link close} closes it.
   * @throws SafetensorsError when the header is invalid
   */
  static async fromSource(source: ByteSource): Promise<SafetensorsFile> {
    if (!isLittleEndian()) throw new SafetensorsError(`@ddsjs/safetensors supports only little-endian hosts (opening ${source.name})`, { file: source.name });
    const { shard, tensors, metadata } = await openSingle(source);
    const located = new Map<string, Located>();
    for (const [key, entry] of tensors) located.set(key, { shard, entry });
    return new SafetensorsFile(source.name, metadata, located, [shard]);
  }

  /**
   * Opens a safetensors file held in memory (an `ArrayBuffer` or a view of one, not copied).
   * @param name names the file in error messages
   * @throws SafetensorsError when the header is invalid
   */
  static async fromBytes(bytes: ArrayBuffer | ArrayBufferView, name?: string): Promise<SafetensorsFile> {
    return SafetensorsFile.fromSource(bytesSource(bytes, name));
  }

  /**
   * Opens a `Blob` / `File` (e.g. dropped on a web page); each tensor read slices just its bytes.
   * @throws SafetensorsError when the header is invalid
   */
  static async fromBlob(blob: BlobLike, name?: string): Promise<SafetensorsFile> {
    return SafetensorsFile.fromSource(blobSource(blob, name));
  }

  /**
   * Opens a single safetensors file at a URL, lazily with ranged requests when the server allows them
   * (see {@link urlSource}). For a sharded `*.index.json` URL use {@link open}.
   * @throws SafetensorsError when the URL cannot be fetched or the header is invalid
   */
  static async fromUrl(url: string, options: UrlSourceOptions = {}): Promise<SafetensorsFile> {
    return SafetensorsFile.fromSource(await urlSource(url, options));
  }

  /**
   * Opens the body of a `fetch` response (read whole: a response cannot seek; prefer {@link fromUrl} for lazy reads).
   * @throws SafetensorsError when the response is not OK or the header is invalid
   */
  static async fromResponse(response: ResponseLike, name?: string): Promise<SafetensorsFile> {
    return SafetensorsFile.fromSource(await responseSource(response, name));
  }

  private static async openIndex(path: string, options: UrlSourceOptions): Promise<SafetensorsFile> {
    const source = await openPath(path, 'safetensors index', options);
    const size = source.size;
    let text: string;
    try {
      if (size > MAX_HEADER_SIZE) throw new SafetensorsError(`safetensors index ${path} is ${size} bytes, larger than the ${MAX_HEADER_SIZE}-byte limit`, { file: path });
      const bytes = new Uint8Array(size);
      await source.read(bytes, 0);
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
      } catch {
        throw new SafetensorsError(`safetensors index ${path} is not valid UTF-8`, { file: path });
      }
    } finally {
      await source.close().catch(() => undefined);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new SafetensorsError(`safetensors index ${path} is not valid JSON (${(e as Error).message})`, { file: path });
    }
    const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!isObj(json) || !isObj(json.weight_map)) {
      throw new SafetensorsError(`safetensors index ${path} has no "weight_map" object (expected {"weight_map": {tensor name: shard file}})`, { file: path });
    }
    if (json.metadata !== undefined && !isObj(json.metadata)) {
      throw new SafetensorsError(`"metadata" of safetensors index ${path} is not an object`, { file: path, key: 'metadata' });
    }
    const metadata: Record<string, string> = Object.fromEntries(
      Object.entries((json.metadata ?? {}) as Record<string, unknown>).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]),
    );
    const url = isUrl(path);
    const nodePath = url ? undefined : nodeBuiltin<typeof NodePath>('path', `opening safetensors index ${path}`);
    const dir = nodePath ? nodePath.dirname(path) : urlDirname(path);
    const isAbsolute = (p: string) => (nodePath ? nodePath.isAbsolute(p) : /^([a-z]+:|\/)/i.test(p));
    const byShard = new Map<string, string[]>();
    for (const [key, shardName] of Object.entries(json.weight_map)) {
      if (typeof shardName !== 'string' || shardName.length === 0) {
        throw new SafetensorsError(`weight_map of safetensors index ${path} maps tensor ${JSON.stringify(key)} to ${JSON.stringify(shardName)}, not a file name`, { file: path, key });
      }
      if (isAbsolute(shardName) || shardName.split(/[\\/]/).includes('..')) {
        throw new SafetensorsError(`weight_map of safetensors index ${path} maps tensor ${JSON.stringify(key)} to ${JSON.stringify(shardName)}, which is outside the index's directory`, { file: path, key });
      }
      let list = byShard.get(shardName);
      if (!list) byShard.set(shardName, (list = []));
      list.push(key);
    }
    const shards: Shard[] = [];
    const located = new Map<string, Located>();
    try {
      for (const [shardName, keys] of byShard) {
        const shardPath = nodePath ? nodePath.join(dir, shardName) : joinUrl(dir, shardName);
        let opened;
        try {
          opened = await openSingle(await openPath(shardPath, 'safetensors file', options));
        } catch (e) {
          const err = e as SafetensorsError;
          throw new SafetensorsError(`${err.message} (shard of ${path})`, { file: err.file ?? shardPath, key: err.key, cause: e });
        }
        shards.push(opened.shard);
        const listed = new Set(keys);
        for (const key of keys) {
          const entry = opened.tensors.get(key);
          if (!entry) {
            throw new SafetensorsError(`safetensors index ${path} maps tensor ${JSON.stringify(key)} to shard ${shardPath}, which has no such tensor`, { file: shardPath, key });
          }
          located.set(key, { shard: opened.shard, entry });
        }
        for (const key of opened.tensors.keys()) {
          if (!listed.has(key)) {
            throw new SafetensorsError(`shard ${shardPath} contains tensor ${JSON.stringify(key)}, which safetensors index ${path} does not map to it`, { file: shardPath, key });
          }
        }
      }
    } catch (e) {
      await Promise.all(shards.map((s) => s.source?.close().catch(() => undefined)));
      throw e;
    }
    return new SafetensorsFile(path, metadata, located, shards);
  }

  /** Names of all tensors (across all shards), sorted. */
  keys(): string[] {
    return this.sortedKeys.slice();
  }

  /** True when the file has a tensor named `key`. */
  has(key: string): boolean {
    return this.located.has(key);
  }

  /** Paths of the underlying .safetensors files (one for a single file). */
  get files(): string[] {
    return this.shards.map((s) => s.path);
  }

  /**
   * Dtype, shape and stored byte size of one tensor (no I/O).
   * @throws SafetensorsError if there is no tensor named `key`
   */
  info(key: string): TensorInfo {
    const { entry } = this.locate(key);
    return { dtype: entry.dtype, shape: entry.shape.slice(), byteLength: entry.dataOffsets[1] - entry.dataOffsets[0] };
  }

  private locate(key: string): Located {
    const loc = this.located.get(key);
    if (!loc) {
      throw new SafetensorsError(`no tensor named ${JSON.stringify(key)} in safetensors file ${this.path}`, { file: this.path, key });
    }
    return loc;
  }

  private handleOf(loc: Located, key: string): ByteSource {
    if (this.closed || !loc.shard.source) {
      throw new SafetensorsError(`cannot read tensor ${JSON.stringify(key)}: safetensors file ${this.path} is closed`, { file: this.path, key });
    }
    return loc.shard.source;
  }

  private supported(loc: Located, key: string): SupportedDtype {
    const dtype = loc.entry.dtype;
    if (!isSupportedDtype(dtype)) {
      throw new SafetensorsError(`unsupported dtype ${dtype} for key ${JSON.stringify(key)} in file ${loc.shard.path}`, { file: loc.shard.path, key });
    }
    return dtype;
  }

  /**
   * Reads the raw stored bytes of one tensor (works for every dtype, including ones this package
   * cannot decode). The result owns a fresh ArrayBuffer starting at byte 0.
   * @throws SafetensorsError if the tensor does not exist, the file is closed, or reading fails
   */
  async readBytes(key: string): Promise<Uint8Array> {
    const loc = this.locate(key);
    const handle = this.handleOf(loc, key);
    const [begin, end] = loc.entry.dataOffsets;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(end - begin);
    } catch (e) {
      throw new SafetensorsError(`cannot allocate ${end - begin} bytes for tensor ${JSON.stringify(key)} of safetensors file ${loc.shard.path}: ${(e as Error).message}`, { file: loc.shard.path, key, cause: e });
    }
    await handle.read(bytes, loc.shard.dataStart + begin, key);
    return bytes;
  }

  /**
   * Reads one tensor as a typed array of its stored dtype: F64 → Float64Array, F32 → Float32Array,
   * F16 and BF16 → Uint16Array (bit patterns), I64 → BigInt64Array, U64 → BigUint64Array,
   * I32 → Int32Array, U32 → Uint32Array, I16 → Int16Array, U16 → Uint16Array, I8 → Int8Array,
   * U8 → Uint8Array, BOOL → Uint8Array. Elements are in row-major order of {@link info}'s shape.
   *
   * @typeParam D the expected dtype, when known statically (not checked; use {@link info})
   * @throws SafetensorsError for an unknown key, a closed file, a dtype that cannot be decoded
   *   (e.g. F8_E4M3), or an I/O error
   */
  async read<D extends SupportedDtype = SupportedDtype>(key: string): Promise<DtypeArrayMap[D]> {
    const loc = this.locate(key);
    const dtype = this.supported(loc, key);
    const bytes = await this.readBytes(key);
    const Ctor = ARRAY_CTOR[dtype];
    return new Ctor(bytes.buffer as ArrayBuffer, 0, bytes.byteLength / Ctor.BYTES_PER_ELEMENT) as DtypeArrayMap[D];
  }

  /**
   * Reads one tensor converted to float32: F16 and BF16 exactly, F64 rounded, integer dtypes (I64/U64
   * via Number, so exact only below 2^24 in magnitude) and BOOL (0/1) converted by value.
   * Non-F32 tensors are read and converted in 16 MB chunks (double-buffered: the next read overlaps the
   * current conversion), so beyond the returned array only 32 MB of scratch memory is used.
   * @throws SafetensorsError like {@link read}
   */
  async readFloat32(key: string): Promise<Float32Array> {
    const loc = this.locate(key);
    const dtype = this.supported(loc, key);
    if (dtype === 'F32') return this.read<'F32'>(key);
    const handle = this.handleOf(loc, key);
    const [begin, end] = loc.entry.dataOffsets;
    const Ctor = ARRAY_CTOR[dtype];
    const size = Ctor.BYTES_PER_ELEMENT;
    const numel = (end - begin) / size;
    let out: Float32Array;
    try {
      out = new Float32Array(numel);
    } catch (e) {
      throw new SafetensorsError(`cannot allocate ${numel} float32 values for tensor ${JSON.stringify(key)} of safetensors file ${loc.shard.path}: ${(e as Error).message}`, { file: loc.shard.path, key, cause: e });
    }
    // Double-buffered: the read of chunk k+1 (libuv thread pool) overlaps the conversion of chunk k.
    const chunkElems = Math.max(1, Math.floor(CONVERT_CHUNK / size));
    const scratchLen = Math.min(numel, chunkElems) * size;
    const scratch = [new Uint8Array(scratchLen), new Uint8Array(numel > chunkElems ? scratchLen : 0)];
    const start = (i: number, buf: Uint8Array): Promise<void> => {
      const n = Math.min(chunkElems, numel - i);
      return handle.read(buf.subarray(0, n * size), loc.shard.dataStart + begin + i * size, key);
    };
    let pending = numel > 0 ? start(0, scratch[0]) : undefined;
    for (let i = 0, k = 0; i < numel; i += chunkElems, k ^= 1) {
      await pending;
      const next = i + chunkElems;
      pending = next < numel ? start(next, scratch[k ^ 1]) : undefined;
      const n = Math.min(chunkElems, numel - i);
      convertToF32(dtype, new Ctor(scratch[k].buffer as ArrayBuffer, 0, n), out.subarray(i, i + n));
    }
    return out;
  }

  /**
   * Closes the underlying file handle(s). Idempotent. After closing, {@link keys}, {@link info} and
   * {@link metadata} still work but reads throw a SafetensorsError.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const handles = this.shards.map((s) => s.source);
    for (const s of this.shards) s.source = undefined;
    await Promise.all(handles.map((h) => h?.close().catch(() => undefined)));
  }
}

// Module-scope alias: a global lookup inside a hot loop is very slow in vm contexts (jest).
const toNumber = Number;

/** Converts a chunk of elements of `dtype` to float32 into `dst` (same length). */
function convertToF32(dtype: SupportedDtype, src: TensorArray, dst: Float32Array): void {
  switch (dtype) {
    case 'F16':
      f16ToF32(src as Uint16Array, dst);
      return;
    case 'BF16':
      bf16ToF32(src as Uint16Array, dst);
      return;
    case 'I64':
    case 'U64': {
      const s = src as BigInt64Array | BigUint64Array;
      for (let i = 0; i < s.length; i++) dst[i] = toNumber(s[i]);
      return;
    }
    default:
      dst.set(src as Exclude<TensorArray, BigInt64Array | BigUint64Array>);
  }
}
