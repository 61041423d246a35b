// A streaming safetensors writer: the header is computed up front from the tensors' dtypes and shapes, then
// the data is written one tensor at a time, so a multi-GB checkpoint never has to sit in memory.
import { promises as fsp } from 'node:fs';
import * as nodePath from 'node:path';
import { randomBytes } from 'node:crypto';
import { SupportedDtype, TensorArray } from '@ddsjs/safetensors';
import { dtypeBits } from '@ddsjs/safetensors/internals';

/** One tensor of a file to be written by {@link SafetensorsStreamWriter}: name, dtype and shape (no data). */
export interface TensorSpec {
  /** Tensor name. */
  key: string;
  /** Stored dtype. */
  dtype: SupportedDtype;
  /** Shape (PyTorch layout). */
  shape: readonly number[];
}

const EXPECTED_ARRAY: Partial<Record<SupportedDtype, string>> = {
  F64: 'Float64Array', F32: 'Float32Array', F16: 'Uint16Array', BF16: 'Uint16Array', I64: 'BigInt64Array',
  I32: 'Int32Array', I16: 'Int16Array', I8: 'Int8Array', U64: 'BigUint64Array', U32: 'Uint32Array',
  U16: 'Uint16Array', U8: 'Uint8Array', BOOL: 'Uint8Array',
};

const tagOf = (v: unknown): string => Object.prototype.toString.call(v).slice(8, -1);

/**
 * Writes a `.safetensors` file tensor by tensor. Create it with {@link SafetensorsStreamWriter.create} (which
 * fixes the header: tensors ordered by descending dtype width then name, as the reference library orders them,
 * header padded to 8 bytes), then call {@link write} once per tensor **in the order of {@link order}**, then
 * {@link finish}. The data goes to a temporary file in the same folder that is renamed over `path` only once
 * complete; {@link abort} (or any failed write) removes it and leaves an existing `path` untouched.
 */
export class SafetensorsStreamWriter {
  /** Tensor names in the order their data must be written. */
  readonly order: string[];
  private next = 0;
  private pos: number;
  private done = false;

  private constructor(
    /** The destination file. */
    readonly path: string,
    private readonly tmp: string,
    private handle: fsp.FileHandle | undefined,
    private readonly specs: Map<string, TensorSpec>,
    order: string[],
    dataStart: number,
  ) {
    this.order = order;
    this.pos = dataStart;
  }

  /**
   * Opens a temporary file beside `path` and writes the header for `tensors` (and `metadata`, string → string).
   * Throws an Error naming the tensor on a duplicate name, a bad shape or an unsupported dtype.
   */
  static async create(path: string, tensors: readonly TensorSpec[], metadata?: Record<string, string>): Promise<SafetensorsStreamWriter> {
    const specs = new Map<string, TensorSpec>();
    for (const t of tensors) {
      if (typeof t.key !== 'string' || t.key === '__metadata__') throw new Error(`${path}: invalid tensor name ${JSON.stringify(t.key)}`);
      if (specs.has(t.key)) throw new Error(`${path}: duplicate tensor name '${t.key}'`);
      if (!EXPECTED_ARRAY[t.dtype]) throw new Error(`${path}: tensor '${t.key}': unsupported dtype ${String(t.dtype)}`);
      if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
        throw new Error(`${path}: tensor '${t.key}': shape must be non-negative integers, got ${JSON.stringify(t.shape)}`);
      }
      specs.set(t.key, t);
    }
    const ordered = [...specs.values()].sort(
      (a, b) => dtypeBits(b.dtype) - dtypeBits(a.dtype) || Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)),
    );
    const parts: string[] = [];
    if (metadata) {
      parts.push(`"__metadata__":{${Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(String(v))}`).join(',')}}`);
    }
    let offset = 0;
    for (const t of ordered) {
      const n = byteLength(t);
      parts.push(`${JSON.stringify(t.key)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + n}]}`);
      offset += n;
    }
    const json = Buffer.from(`{${parts.join(',')}}`, 'utf8');
    const padded = json.length + ((8 - (json.length % 8)) % 8);
    const header = Buffer.alloc(8 + padded, 0x20);
    header.writeBigUInt64LE(BigInt(padded), 0);
    json.copy(header, 8);
    const tmp = nodePath.join(nodePath.dirname(path), `.${nodePath.basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await fsp.open(tmp, 'wx');
    try {
      await writeAll(handle, header, 0);
    } catch (e) {
      await handle.close().catch(() => undefined);
      await fsp.unlink(tmp).catch(() => undefined);
      throw new Error(`cannot write ${path}: ${(e as Error).message}`);
    }
    return new SafetensorsStreamWriter(path, tmp, handle, specs, ordered.map((t) => t.key), header.length);
  }

  /** The name of the tensor {@link write} expects next (undefined once all are written). */
  get nextKey(): string | undefined {
    return this.order[this.next];
  }

  /**
   * Writes the data of `key`, which must be {@link nextKey}; `data` is the typed array of the tensor's dtype
   * (F16/BF16 as Uint16Array bit patterns) with exactly prod(shape) elements.
   */
  async write(key: string, data: TensorArray): Promise<void> {
    if (this.done || !this.handle) throw new Error(`${this.path}: writer is already finished or aborted`);
    const want = this.order[this.next];
    if (key !== want) {
      await this.abort();
      throw new Error(`${this.path}: tensors must be written in order: expected '${want}', got '${key}'`);
    }
    const spec = this.specs.get(key)!;
    const numel = spec.shape.reduce((a, b) => a * b, 1);
    if (tagOf(data) !== EXPECTED_ARRAY[spec.dtype] || data.length !== numel) {
      await this.abort();
      throw new Error(
        `${this.path}: tensor '${key}' (${spec.dtype} [${spec.shape}]) needs a ${EXPECTED_ARRAY[spec.dtype]} of ${numel} elements, got ${tagOf(data)} of ${data.length}`,
      );
    }
    try {
      await writeAll(this.handle, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), this.pos);
    } catch (e) {
      await this.abort();
      throw new Error(`cannot write ${this.path}: ${(e as Error).message}`);
    }
    this.pos += data.byteLength;
    this.next++;
  }

  /** Checks every tensor was written, syncs and renames the temporary file over {@link path}. */
  async finish(): Promise<void> {
    if (this.done || !this.handle) throw new Error(`${this.path}: writer is already finished or aborted`);
    if (this.next !== this.order.length) {
      const missing = this.order.length - this.next;
      await this.abort();
      throw new Error(`${this.path}: ${missing} tensor(s) were never written (next: '${this.order[this.next]}')`);
    }
    try {
      await this.handle.sync();
      await this.handle.close();
      this.handle = undefined;
      await fsp.rename(this.tmp, this.path);
    } catch (e) {
      await this.abort();
      throw new Error(`cannot write ${this.path}: ${(e as Error).message}`);
    }
    this.done = true;
  }

  /** Discards the temporary file (no-op once finished). */
  async abort(): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (this.handle) await this.handle.close().catch(() => undefined);
    this.handle = undefined;
    await fsp.unlink(this.tmp).catch(() => undefined);
  }
}

/** Bytes of a tensor's data. */
export function byteLength(t: Pick<TensorSpec, 'dtype' | 'shape'>): number {
  return (t.shape.reduce((a, b) => a * b, 1) * dtypeBits(t.dtype)) / 8;
}

async function writeAll(handle: fsp.FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  const CHUNK = 1 << 30;
  for (let off = 0; off < bytes.length; ) {
    const n = Math.min(CHUNK, bytes.length - off);
    const { bytesWritten } = await handle.write(bytes, off, n, position + off);
    if (bytesWritten <= 0) throw new Error('short write');
    off += bytesWritten;
  }
}
