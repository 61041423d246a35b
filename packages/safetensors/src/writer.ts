import { promises as fsp } from 'fs';
import * as nodePath from 'path';
import { randomBytes } from 'crypto';
import { SafetensorsError } from './errors';
import { ARRAY_CTOR, DtypeArrayMap, KNOWN_DTYPES, SupportedDtype, TensorArray, dtypeRank, isSupportedDtype } from './dtypes';
import { MAX_HEADER_SIZE } from './header';
import { writeFully } from './io';

/**
 * One tensor to write: its dtype, shape, and data as the typed array of that dtype
 * (see {@link DtypeArrayMap}: F16/BF16 as Uint16Array bit patterns, I64 as BigInt64Array, BOOL as
 * Uint8Array of 0/1…). `data.length` must equal the product of `shape`.
 */
export type TensorData = {
  [D in SupportedDtype]: { dtype: D; shape: readonly number[]; data: DtypeArrayMap[D] };
}[SupportedDtype];

/** Options for {@link writeSafetensors}. */
export interface WriteOptions {
  /** fsync the temporary file before renaming it into place (default true). */
  fsync?: boolean;
}

const tagOf = (v: unknown): string => Object.prototype.toString.call(v).slice(8, -1);

/** Compares strings by UTF-8 bytes (= code points), like Rust's `String` ordering. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/**
 * Builds the header bytes exactly like the reference Rust library: tensors ordered by descending
 * dtype (alignment) then name, `__metadata__` first, compact JSON padded with spaces to a multiple of 8.
 * @returns the ordered tensors and the padded header
 */
export function buildHeader(
  tensors: [string, TensorData][],
  metadata: Record<string, string> | undefined,
  file = '<memory>',
): { ordered: [string, TensorData][]; header: Uint8Array } {
  const fail = (msg: string, key?: string): never => {
    throw new SafetensorsError(`cannot write safetensors file ${file}: ${msg}`, { file, key });
  };
  const seen = new Set<string>();
  for (const [key, t] of tensors) {
    const k = JSON.stringify(key);
    if (typeof key !== 'string') fail(`tensor name ${String(key)} is not a string`);
    if (key === '__metadata__') fail(`"__metadata__" is reserved and cannot name a tensor`, key);
    if (seen.has(key)) fail(`duplicate tensor name ${k}`, key);
    seen.add(key);
    if (typeof t !== 'object' || t === null) fail(`tensor ${k} is not an object {dtype, shape, data}`, key);
    if (!isSupportedDtype(t.dtype)) {
      fail((KNOWN_DTYPES as readonly string[]).includes(t.dtype as string)
        ? `unsupported dtype ${t.dtype} for key ${k}`
        : `unknown dtype ${JSON.stringify(t.dtype)} for tensor ${k}`, key);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`shape of tensor ${k} is not an array of non-negative integers (got ${JSON.stringify(t.shape)})`, key);
    }
    const want = ARRAY_CTOR[t.dtype].name;
    if (tagOf(t.data) !== want) fail(`data of tensor ${k} (dtype ${t.dtype}) must be a ${want}, got ${tagOf(t.data)}`, key);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== (t.data as TensorArray).length) {
      fail(`tensor ${k} has shape ${JSON.stringify(t.shape)} (${numel} elements) but its data has ${(t.data as TensorArray).length}`, key);
    }
  }
  if (metadata !== undefined) {
    if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) fail('metadata must be an object of string → string');
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') fail(`metadata value for ${JSON.stringify(k)} is not a string (got ${typeof v})`, k);
    }
  }
  const ordered = tensors.slice().sort((a, b) => dtypeRank(b[1].dtype) - dtypeRank(a[1].dtype) || compareUtf8(a[0], b[0]));
  const parts: string[] = [];
  if (metadata !== undefined) {
    const m = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  let offset = 0;
  for (const [key, t] of ordered) {
    const n = (t.data as TensorArray).byteLength;
    parts.push(`${JSON.stringify(key)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + n}]}`);
    offset += n;
  }
  const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  if (padded > MAX_HEADER_SIZE) fail(`header would be ${padded} bytes, more than the ${MAX_HEADER_SIZE}-byte limit`);
  const header = new Uint8Array(padded).fill(0x20);
  header.set(json);
  return { ordered, header };
}

/**
 * Writes tensors to a .safetensors file, atomically: the data goes to a temporary file in the same
 * directory which is renamed over `path` only once complete (on any failure the temporary file is
 * removed and an existing `path` is left untouched).
 *
 * The layout matches the reference Rust library: tensors ordered by descending dtype size then by
 * name, header JSON padded with spaces so the data section starts 8-byte aligned.
 *
 * @param path destination file
 * @param tensors tensor name → {@link TensorData} (a Record or a Map)
 * @param metadata optional `__metadata__` (string → string)
 * @param options see {@link WriteOptions}
 * @throws SafetensorsError on invalid input (naming the tensor) or an I/O error
 */
export async function writeSafetensors(
  path: string,
  tensors: Record<string, TensorData> | Map<string, TensorData>,
  metadata?: Record<string, string>,
  options: WriteOptions = {},
): Promise<void> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new SafetensorsError(`writeSafetensors: path must be a non-empty string (got ${String(path)})`);
  }
  if (typeof tensors !== 'object' || tensors === null) {
    throw new SafetensorsError(`cannot write safetensors file ${path}: tensors must be an object or Map of name → {dtype, shape, data}`, { file: path });
  }
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const { ordered, header } = buildHeader(entries, metadata, path);

  const dir = nodePath.dirname(path);
  const tmp = nodePath.join(dir, `.${nodePath.basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(tmp, 'wx');
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
    await writeFully(handle, len, 0);
    await writeFully(handle, header, 8);
    let pos = 8 + header.length;
    for (const [, t] of ordered) {
      const d = t.data as TensorArray;
      await writeFully(handle, new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
      pos += d.byteLength;
    }
    if (options.fsync !== false) await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(tmp, path);
  } catch (e) {
    if (handle) await handle.close().catch(() => undefined);
    await fsp.unlink(tmp).catch(() => undefined);
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(`cannot write safetensors file ${path}: ${(e as Error).message}`, { code: 'IO', file: path, cause: e });
  }
}
