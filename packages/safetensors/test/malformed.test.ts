import { promises as fsp } from 'fs';
import * as path from 'path';
import { SafetensorsError, SafetensorsFile } from '@ddsjs/safetensors';
import { parseHeader } from '@ddsjs/safetensors/internals';
import { rawFile, tmpDir } from './helpers';

let dir: string;
beforeAll(async () => {
  dir = await tmpDir();
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

const t = (dtype: string, shape: unknown, offs: unknown) => ({ dtype, shape, data_offsets: offs });

interface Case {
  name: string;
  bytes: Buffer;
  message: RegExp;
  key?: string;
}

const CASES: Case[] = [
  { name: 'empty file', bytes: Buffer.alloc(0), message: /is 0 bytes, too small to hold the 8-byte header length/ },
  { name: '7-byte file', bytes: Buffer.alloc(7, 1), message: /is 7 bytes, too small to hold the 8-byte header length/ },
  { name: 'header length above 100 MB', bytes: rawFile('{}', 0, { headerLen: 100_000_001n }), message: /header length 100000001 .* exceeds the 100000000-byte limit/ },
  { name: 'header length 2^64-1', bytes: rawFile('{}', 0, { headerLen: 2n ** 64n - 1n }), message: /header length 18446744073709551615 .* exceeds the 100000000-byte limit/ },
  { name: 'header length past EOF', bytes: rawFile('{}', 0, { headerLen: 4096n }), message: /header length 4096 .* runs past the end of the file \(16 bytes\)/ },
  { name: 'invalid UTF-8', bytes: rawFile(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), message: /header is not valid UTF-8/ },
  { name: 'overlong UTF-8 encoding', bytes: rawFile(Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x7d])), message: /header is not valid UTF-8/ },
  { name: 'header is a JSON array', bytes: rawFile('[1,2]'), message: /header is not a JSON object \(got an array\)/ },
  { name: 'header is a JSON string', bytes: rawFile('"{}"'), message: /header is not a JSON object \(got string\)/ },
  { name: 'empty header (N = 0)', bytes: rawFile('', 0, { pad: false }), message: /header is not valid JSON/ },
  { name: 'byte-order mark before the JSON', bytes: rawFile(Buffer.from('\ufeff{}')), message: /header is not valid JSON/ },
  { name: 'truncated JSON', bytes: rawFile('{"a":{"dtype":"F32"'), message: /header is not valid JSON/ },
  { name: 'trailing garbage after JSON', bytes: rawFile('{} x'), message: /header is not valid JSON/ },
  { name: 'NUL padding instead of spaces', bytes: rawFile(Buffer.from('{}\0\0\0\0\0\0')), message: /header is not valid JSON/ },
  { name: 'entry not an object', bytes: rawFile({ a: [1, 2] }), message: /entry for tensor "a" is not an object/, key: 'a' },
  { name: 'extra field in entry', bytes: rawFile({ a: { ...t('U8', [1], [0, 1]), extra: 1 } }, 1), message: /entry for tensor "a" must have exactly the fields dtype, shape, data_offsets \(got data_offsets, dtype, extra, shape\)/, key: 'a' },
  { name: 'missing shape', bytes: rawFile({ a: { dtype: 'U8', data_offsets: [0, 1] } }, 1), message: /entry for tensor "a" must have exactly the fields .*\(got data_offsets, dtype\)/, key: 'a' },
  { name: 'unknown dtype', bytes: rawFile({ w: t('F17', [1], [0, 4]) }, 4), message: /unknown dtype "F17" for tensor "w"/, key: 'w' },
  { name: 'lower-case dtype', bytes: rawFile({ w: t('f32', [1], [0, 4]) }, 4), message: /unknown dtype "f32" for tensor "w"/, key: 'w' },
  { name: 'negative shape', bytes: rawFile({ w: t('F32', [-1], [0, 0]) }), message: /shape of tensor "w" is not an array of non-negative integers \(got \[-1\]\)/, key: 'w' },
  { name: 'fractional shape', bytes: rawFile({ w: t('F32', [1.5], [0, 6]) }, 6), message: /shape of tensor "w" is not an array of non-negative integers/, key: 'w' },
  { name: 'shape as string', bytes: rawFile({ w: t('F32', '4', [0, 16]) }, 16), message: /shape of tensor "w" is not an array of non-negative integers/, key: 'w' },
  { name: 'shape overflow', bytes: rawFile({ w: t('F32', [2 ** 31, 2 ** 31, 2 ** 31], [0, 8]) }, 8), message: /shape .* of tensor "w" is too large \(arithmetic overflow\)/, key: 'w' },
  { name: 'data_offsets of length 3', bytes: rawFile({ w: t('U8', [1], [0, 1, 2]) }, 1), message: /data_offsets of tensor "w" is not a pair of non-negative integers/, key: 'w' },
  { name: 'negative data_offsets', bytes: rawFile({ w: t('U8', [1], [-1, 0]) }, 1), message: /data_offsets of tensor "w" is not a pair of non-negative integers/, key: 'w' },
  { name: 'data_offsets beyond 2^53', bytes: rawFile(`{"w":{"dtype":"U8","shape":[0],"data_offsets":[9007199254740993,9007199254740993]}}`), message: /data_offsets of tensor "w" is not a pair of non-negative integers/, key: 'w' },
  { name: 'end before begin', bytes: rawFile({ w: t('U8', [0], [4, 0]) }, 4), message: /data_offsets of tensor "w" end before they begin \(\[4, 0\]\)/, key: 'w' },
  { name: 'byte size mismatch', bytes: rawFile({ w: t('F32', [3], [0, 8]) }, 8), message: /tensor "w": data_offsets \[0, 8\] span 8 bytes but dtype F32 × shape \[3\] needs 12/, key: 'w' },
  { name: 'offsets past the data section', bytes: rawFile({ w: t('F32', [2], [0, 8]) }, 4), message: /data_offsets \[0, 8\] of tensor "w" run past the end of the data section \(4 bytes\)/, key: 'w' },
  { name: 'overlapping tensors', bytes: rawFile({ a: t('F32', [2], [0, 8]), b: t('F32', [1], [4, 8]) }, 8), message: /tensor "b" at data_offsets \[4, 8\] overlaps the previous tensor \(which ends at 8\)/, key: 'b' },
  { name: 'hole between tensors', bytes: rawFile({ a: t('F32', [1], [0, 4]), b: t('F32', [1], [8, 12]) }, 12), message: /hole in the data section: bytes \[4, 8\) before tensor "b" belong to no tensor/, key: 'b' },
  { name: 'hole at the start', bytes: rawFile({ a: t('F32', [1], [4, 8]) }, 8), message: /hole in the data section: bytes \[0, 4\) before tensor "a"/, key: 'a' },
  { name: 'trailing bytes after the last tensor', bytes: rawFile({ a: t('F32', [1], [0, 4]) }, 5), message: /data section is 5 bytes but the tensors cover only 4/ },
  { name: 'data but no tensors', bytes: rawFile({}, 8), message: /data section is 8 bytes but the tensors cover only 0/ },
  { name: '__metadata__ not an object', bytes: rawFile({ __metadata__: 'pt' }), message: /__metadata__ is not an object of string → string/, key: '__metadata__' },
  { name: '__metadata__ non-string value', bytes: rawFile({ __metadata__: { epochs: 3 } }), message: /__metadata__ value for "epochs" is not a string \(got 3\)/, key: '__metadata__' },
  { name: 'duplicate tensor key', bytes: rawFile('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1), message: /header has duplicate JSON key "a"/, key: 'a' },
  { name: 'duplicate field inside an entry', bytes: rawFile('{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1), message: /header has duplicate JSON key "dtype"/ },
  { name: 'shape written with an exponent', bytes: rawFile('{"w":{"dtype":"U8","shape":[1e2],"data_offsets":[0,100]}}', 100), message: /header has the number 1e2, which is not an integer literal/ },
  { name: 'offset written as a float', bytes: rawFile('{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4.0]}}', 4), message: /header has the number 4\.0, which is not an integer literal/ },
  { name: 'sub-byte dtype not filling whole bytes', bytes: rawFile({ q: t('F4', [3], [0, 1]) }, 1), message: /tensor "q" of dtype F4 and shape \[3\] does not fill a whole number of bytes/, key: 'q' },
];

describe('malformed files are rejected with specific messages', () => {
  test(`corpus has at least 15 kinds (${CASES.length})`, () => {
    expect(CASES.length).toBeGreaterThanOrEqual(15);
    expect(new Set(CASES.map((c) => c.message.source)).size).toBeGreaterThanOrEqual(15);
  });

  test.each(CASES.map((c, i) => [c.name, i] as const))('%s', async (_name, i) => {
    const c = CASES[i];
    const p = path.join(dir, `bad${i}.safetensors`);
    await fsp.writeFile(p, c.bytes);
    const err = await SafetensorsFile.open(p).then(
      () => undefined,
      (e) => e,
    );
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err.message).toMatch(c.message);
    expect(err.message).toContain(p); // names the file
    expect(err.file).toBe(p);
    if (c.key !== undefined) {
      expect(err.key).toBe(c.key);
      expect(err.message).toContain(c.key);
    }
  });

  test('valid edge cases are accepted: space padding, empty header object, zero-size tensors anywhere, F4 pairs', async () => {
    const ok: [string, Buffer, string[]][] = [
      ['empty', rawFile('{}'), []],
      ['leading whitespace (accepted by the Rust library too)', rawFile(' \n{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1), ['a']],
      ['padded', rawFile('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}' + ' '.repeat(13), 2), ['a']],
      ['zero-size', rawFile({ z: t('F32', [0, 3], [4, 4]), a: t('F32', [1], [0, 4]), e: t('I64', [0], [0, 0]) }, 4), ['a', 'e', 'z']],
      ['f4', rawFile({ q: t('F4', [2, 3], [0, 3]) }, 3), ['q']],
      ['scalar', rawFile({ s: t('F64', [], [0, 8]) }, 8), ['s']],
      ['null metadata (accepted by the Rust library too)', rawFile({ __metadata__: null }), []],
    ];
    for (const [name, bytes, keys] of ok) {
      const p = path.join(dir, `ok-${name}.safetensors`);
      await fsp.writeFile(p, bytes);
      const f = await SafetensorsFile.open(p);
      expect(f.keys()).toEqual(keys);
      await f.close();
    }
  });

  test('newer dtypes are accepted in the header but read fails with "unsupported dtype"', async () => {
    const p = path.join(dir, 'f8.safetensors');
    await fsp.writeFile(p, rawFile({ 'x.f8': t('F8_E4M3', [4], [0, 4]), 'y.f8': t('F8_E5M2', [2], [4, 6]), c: t('C64', [1], [8, 16]), ok: t('U8', [2], [6, 8]) }, 16));
    const f = await SafetensorsFile.open(p);
    expect(f.info('x.f8')).toEqual({ dtype: 'F8_E4M3', shape: [4], byteLength: 4 });
    for (const [key, dtype] of [['x.f8', 'F8_E4M3'], ['y.f8', 'F8_E5M2'], ['c', 'C64']]) {
      for (const fn of [() => f.read(key), () => f.readFloat32(key)]) {
        const err = await fn().catch((e) => e);
        expect(err).toBeInstanceOf(SafetensorsError);
        expect(err.message).toBe(`unsupported dtype ${dtype} for key ${JSON.stringify(key)} in file ${p}`);
        expect(err.key).toBe(key);
      }
    }
    expect((await f.readBytes('x.f8')).length).toBe(4); // raw bytes are still available
    expect(Array.from(await f.read<'U8'>('ok'))).toEqual([0, 0]);
    await f.close();
  });

  test('missing file, directory and bad path name the path', async () => {
    const missing = path.join(dir, 'does-not-exist.safetensors');
    await expect(SafetensorsFile.open(missing)).rejects.toThrow(new RegExp(`safetensors file ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist`));
    const err = await SafetensorsFile.open(missing).catch((e) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err.file).toBe(missing);
    await expect(SafetensorsFile.open(dir)).rejects.toThrow(/is not a regular file/);
    await expect(SafetensorsFile.open('')).rejects.toThrow(SafetensorsError);
  });

  test('parseHeader is usable directly and names the file', () => {
    const bytes = Buffer.from('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}');
    expect([...parseHeader(bytes, 1, 'mem').tensors.keys()]).toEqual(['a']);
    expect(() => parseHeader(bytes, 2, 'mem')).toThrow(/data section is 2 bytes but the tensors cover only 1 .* in safetensors file mem/);
  });
});
