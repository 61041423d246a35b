import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';

/** Makes a fresh temporary directory; remove it with `fsp.rm(dir, { recursive: true, force: true })`. */
export async function tmpDir(prefix = 'ddsjs-st-'): Promise<string> {
  return fsp.mkdtemp(path.join(os.tmpdir(), prefix));
}

/**
 * Assembles raw safetensors bytes: 8-byte LE length (or `headerLen` when forced), header text
 * (object → JSON.stringify), padded with spaces to 8 unless `pad` is false, then `data`.
 */
export function rawFile(
  header: string | object | Uint8Array,
  data: Uint8Array | number = 0,
  opts: { headerLen?: bigint; pad?: boolean } = {},
): Buffer {
  let h: Buffer;
  if (header instanceof Uint8Array) h = Buffer.from(header);
  else h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  if (opts.pad !== false) {
    const extra = (8 - (h.length % 8)) % 8;
    h = Buffer.concat([h, Buffer.alloc(extra, 0x20)]);
  }
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(opts.headerLen ?? BigInt(h.length));
  const d = typeof data === 'number' ? Buffer.alloc(data) : Buffer.from(data);
  return Buffer.concat([len, h, d]);
}

/** Deterministic PRNG (mulberry32): returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
