import { promises as fsp } from 'fs';
import * as path from 'path';
import { SafetensorsFile } from '@ddsjs/safetensors';
import { tmpDir } from './helpers';

test('a tensor stored beyond the 4 GiB offset of a sparse file reads correctly', async () => {
  const dir = await tmpDir();
  const p = path.join(dir, 'sparse.safetensors');
  const BIG = Math.round(4.1 * 2 ** 30); // 4.1 GiB U8 blob, never materialized
  const small = new Float32Array([1.5, -2, 3.25, 1e-20, 65504, -0]);
  const header = JSON.stringify({
    __metadata__: { note: 'sparse' },
    blob: { dtype: 'U8', shape: [BIG], data_offsets: [0, BIG] },
    small: { dtype: 'F32', shape: [2, 3], data_offsets: [BIG, BIG + small.byteLength] },
    tail: { dtype: 'F16', shape: [2], data_offsets: [BIG + small.byteLength, BIG + small.byteLength + 4] },
  });
  const h = Buffer.from(header.padEnd(Math.ceil(header.length / 8) * 8, ' '));
  const dataStart = 8 + h.length;
  const total = dataStart + BIG + small.byteLength + 4;
  const fh = await fsp.open(p, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    await fh.write(len, 0, 8, 0);
    await fh.write(h, 0, h.length, 8);
    await fh.truncate(total); // sparse hole
    await fh.write(Buffer.from(small.buffer), 0, small.byteLength, dataStart + BIG);
    await fh.write(Buffer.from(new Uint16Array([0x3c00, 0xc000]).buffer), 0, 4, dataStart + BIG + small.byteLength);
  } finally {
    await fh.close();
  }
  try {
    expect((await fsp.stat(p)).size).toBe(total);
    expect(total).toBeGreaterThan(2 ** 32);
    // open() reads the 8-byte length and the header, nothing else
    const probe = await fsp.open(p, 'r');
    const proto = Object.getPrototypeOf(probe) as { read: (...a: unknown[]) => Promise<{ bytesRead: number }> };
    await probe.close();
    const origRead = proto.read;
    const requests: [number, number][] = [];
    const spy = jest.spyOn(proto, 'read').mockImplementation(function (this: unknown, ...args: unknown[]) {
      requests.push([args[3] as number, args[2] as number]); // [position, length]
      return origRead.apply(this, args);
    });
    let f: SafetensorsFile;
    try {
      f = await SafetensorsFile.open(p);
    } finally {
      spy.mockRestore();
    }
    expect(requests).toEqual([[0, 8], [8, h.length]]);
    try {
      expect(f.keys()).toEqual(['blob', 'small', 'tail']);
      expect(f.info('blob')).toEqual({ dtype: 'U8', shape: [BIG], byteLength: BIG });
      expect(f.metadata).toEqual({ note: 'sparse' });
      const got = await f.read<'F32'>('small');
      expect(got).toBeInstanceOf(Float32Array);
      expect(Array.from(got)).toEqual(Array.from(small));
      expect(Object.is(got[5], -0)).toBe(true);
      expect(Array.from(await f.readFloat32('tail'))).toEqual([1, -2]);
      expect(Array.from(await f.readFloat32('small'))).toEqual(Array.from(small));
    } finally {
      await f.close();
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  await expect(fsp.access(p)).rejects.toThrow();
});
