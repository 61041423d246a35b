import type { promises as fsp } from 'fs';
import { SafetensorsError } from './errors';

/** Largest single read/write request (Node caps one call at 2 GiB − 1). */
export const IO_CHUNK = 1 << 30;

/**
 * Fills `target` with the bytes of `handle` starting at `position` (a Number: exact below 2^53),
 * issuing as many positional reads as needed.
 * @throws SafetensorsError on a short file or an I/O error
 */
export async function readFully(
  handle: fsp.FileHandle,
  target: Uint8Array,
  position: number,
  file: string,
  key?: string,
): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const want = Math.min(IO_CHUNK, target.length - done);
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(target, done, want, position + done));
    } catch (e) {
      throw new SafetensorsError(
        `cannot read ${target.length} bytes at offset ${position}${key !== undefined ? ` (tensor ${JSON.stringify(key)})` : ''} of safetensors file ${file}: ${(e as Error).message}`,
        { file, key, cause: e },
      );
    }
    if (bytesRead === 0) {
      throw new SafetensorsError(
        `unexpected end of safetensors file ${file} at offset ${position + done}${key !== undefined ? ` while reading tensor ${JSON.stringify(key)}` : ''} (was the file truncated after it was opened?)`,
        { file, key },
      );
    }
    done += bytesRead;
  }
}

/**
 * Writes all of `bytes` to `handle` at `position`, issuing as many positional writes as needed.
 */
export async function writeFully(handle: fsp.FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const want = Math.min(IO_CHUNK, bytes.length - done);
    const { bytesWritten } = await handle.write(bytes, done, want, position + done);
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten}`);
    done += bytesWritten;
  }
}
