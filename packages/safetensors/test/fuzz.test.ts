import { promises as fsp } from 'fs';
import * as path from 'path';
import { SafetensorsError, SafetensorsFile, isSupportedDtype, writeSafetensors } from '@ddsjs/safetensors';
import { mulberry32, tmpDir } from './helpers';

let dir: string;
let valid: Buffer;
beforeAll(async () => {
  dir = await tmpDir();
  const p = path.join(dir, 'valid.safetensors');
  await writeSafetensors(
    p,
    {
      w: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
      h: { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0x4000, 0x7e00]) },
      b: { dtype: 'BF16', shape: [2], data: new Uint16Array([0x3f80, 0xc000]) },
      ids: { dtype: 'I64', shape: [2], data: new BigInt64Array([7n, -3n]) },
      m: { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
      s: { dtype: 'F64', shape: [], data: new Float64Array([0.5]) },
      e: { dtype: 'I32', shape: [0], data: new Int32Array(0) },
    },
    { format: 'pt' },
  );
  valid = await fsp.readFile(p);
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

type Outcome = 'ok' | 'rejected';

/** Opens `p` and reads every tensor; checks each read against the bytes of `buf` at the header's offsets. */
async function tryAll(p: string, buf: Buffer): Promise<Outcome> {
  let f: SafetensorsFile;
  try {
    f = await SafetensorsFile.open(p);
  } catch (e) {
    if (e instanceof SafetensorsError) return 'rejected';
    throw new Error(`open threw a non-SafetensorsError: ${(e as Error)?.stack ?? e}`);
  }
  try {
    // Independent check of what a correct read is: offsets come from re-parsing the header with JSON.parse.
    const n = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    expect(f.keys()).toEqual(Object.keys(header).filter((k) => k !== '__metadata__').sort());
    for (const key of f.keys()) {
      const info = f.info(key);
      const [begin, end] = header[key].data_offsets;
      const expected = buf.subarray(8 + n + begin, 8 + n + end);
      const bytes = await f.readBytes(key);
      expect(Buffer.from(bytes).equals(expected)).toBe(true);
      if (isSupportedDtype(info.dtype)) {
        const arr = await f.read(key);
        expect(Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength).equals(expected)).toBe(true);
        expect(arr.length).toBe(info.shape.reduce((a, b) => a * b, 1));
        expect((await f.readFloat32(key)).length).toBe(arr.length);
      } else {
        await expect(f.read(key)).rejects.toThrow(/unsupported dtype/);
      }
    }
    return 'ok';
  } catch (e) {
    if (e instanceof SafetensorsError && /unsupported dtype/.test(e.message)) return 'ok';
    throw e;
  } finally {
    await f.close();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hang: ${what} did not finish within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

test('1,400 seeded random truncations / byte flips / splices: every outcome is a correct read or a SafetensorsError', async () => {
  const rand = mulberry32(0xdd5);
  const int = (n: number) => Math.floor(rand() * n);
  const n = Number(valid.readBigUInt64LE(0));
  const p = path.join(dir, 'mutant.safetensors');
  const counts = { ok: 0, rejected: 0 };
  const kinds: Record<string, number> = {};
  const ITER = 1400;
  for (let it = 0; it < ITER; it++) {
    let buf = Buffer.from(valid);
    const kind = ['truncate', 'flip', 'flip-header', 'byte-header', 'splice', 'length', 'flip-data'][it % 7];
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    switch (kind) {
      case 'truncate':
        buf = buf.subarray(0, int(buf.length));
        break;
      case 'flip': // anywhere, 1-3 bits
        for (let k = 1 + int(3); k > 0; k--) buf[int(buf.length)] ^= 1 << int(8);
        break;
      case 'flip-header': // inside the JSON header
        for (let k = 1 + int(2); k > 0; k--) buf[8 + int(n)] ^= 1 << int(8);
        break;
      case 'byte-header': { // replace a header byte with a JSON-significant or random one
        const chars = '{}[]",:0123456789- \\eE.\u00ff';
        buf[8 + int(n)] = rand() < 0.7 ? chars.charCodeAt(int(chars.length)) & 0xff : int(256);
        break;
      }
      case 'splice': { // delete or duplicate a random range
        const a = int(buf.length), b = Math.min(buf.length, a + 1 + int(16));
        buf = rand() < 0.5 ? Buffer.concat([buf.subarray(0, a), buf.subarray(b)]) : Buffer.concat([buf.subarray(0, b), buf.subarray(a)]);
        break;
      }
      case 'flip-data': // inside the data section: must always read correctly
        buf[8 + n + int(buf.length - 8 - n)] ^= 1 << int(8);
        break;
      case 'length': // corrupt the 8-byte header length
        buf[int(8)] = int(256);
        break;
    }
    await fsp.writeFile(p, buf);
    try {
      const outcome = await withTimeout(tryAll(p, buf), 5000, `mutation #${it} (${kind})`);
      counts[outcome]++;
      if (kind === 'flip-data') expect(outcome).toBe('ok');
    } catch (e) {
      throw new Error(`mutation #${it} (${kind}) of a valid file: ${(e as Error).message}`);
    }
  }
  // Both outcomes occur (so the test can fail either way), and the valid file itself reads.
  expect(counts.ok + counts.rejected).toBe(ITER);
  expect(counts.ok).toBeGreaterThanOrEqual(ITER / 7);
  expect(counts.rejected).toBeGreaterThan(200);
  await fsp.writeFile(p, valid);
  expect(await tryAll(p, valid)).toBe('ok');
  console.log(`fuzz: ${JSON.stringify(counts)} over ${JSON.stringify(kinds)}`);
});
