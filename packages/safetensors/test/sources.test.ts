import { promises as fsp } from 'fs';
import * as http from 'http';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { SafetensorsError, SafetensorsFile, findSafetensors, writeSafetensors } from '@ddsjs/safetensors';
import { tmpDir } from './helpers';

// The browser-safe sources: ArrayBuffer, Blob, fetch Response and URLs (ranged requests when the server allows).

let dir: string;
let server: http.Server;
let base: string;
/** Bytes of file bodies the server sent, and whether it honours Range. */
let sent = 0;
let honourRange = true;
let allowHead = true;

const A = new Float32Array(4096).map((_, i) => i / 7);
const B = new Uint16Array([0x3c00, 0x4000, 0xc000]);

beforeAll(async () => {
  dir = await tmpDir();
  await writeSafetensors(path.join(dir, 'model.safetensors'), {
    a: { dtype: 'F32', shape: [64, 64], data: A },
    b: { dtype: 'F16', shape: [3], data: B },
  });
  await writeSafetensors(path.join(dir, 'shard-1.safetensors'), { a: { dtype: 'F32', shape: [64, 64], data: A } });
  await writeSafetensors(path.join(dir, 'shard-2.safetensors'), { b: { dtype: 'F16', shape: [3], data: B } });
  await fsp.writeFile(path.join(dir, 'model.safetensors.index.fp16.json'), JSON.stringify({ weight_map: { a: 'shard-1.safetensors', b: 'shard-2.safetensors' } }));
  server = http.createServer(async (req, res) => {
    if (req.method === 'HEAD' && !allowHead) return void res.writeHead(405).end();
    const file = path.join(dir, decodeURIComponent((req.url ?? '/').slice(1)));
    let body: Buffer;
    try {
      body = await fsp.readFile(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m && honourRange) {
      const part = body.subarray(Number(m[1]), Math.min(body.length, Number(m[2]) + 1));
      sent += part.length;
      res.writeHead(206, { 'Content-Range': `bytes ${m[1]}-${Number(m[1]) + part.length - 1}/${body.length}`, 'Content-Length': part.length });
      res.end(part);
    } else {
      sent += body.length;
      res.writeHead(200, { 'Content-Length': body.length }).end(body);
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await fsp.rm(dir, { recursive: true, force: true });
});

async function expectContents(f: SafetensorsFile) {
  expect(f.keys()).toEqual(['a', 'b']);
  expect(f.info('a')).toEqual({ dtype: 'F32', shape: [64, 64], byteLength: 4096 * 4 });
  expect(await f.readFloat32('a')).toEqual(A);
  expect(Array.from(await f.readFloat32('b'))).toEqual([1, 2, -2]);
  await f.close();
}

describe('SafetensorsFile over in-memory and HTTP sources', () => {
  it('reads an ArrayBuffer, a typed-array view of one, and a Blob', async () => {
    const bytes = await fsp.readFile(path.join(dir, 'model.safetensors'));
    const copy = new Uint8Array(bytes.length + 5);
    copy.set(bytes, 5);
    await expectContents(await SafetensorsFile.fromBytes(copy.buffer.slice(5)));
    await expectContents(await SafetensorsFile.fromBytes(copy.subarray(5), 'view'));
    await expectContents(await SafetensorsFile.fromBlob(new Blob([bytes])));
  });

  it('names the in-memory source in header errors', async () => {
    const bytes = new Uint8Array(16);
    new DataView(bytes.buffer).setBigUint64(0, 1000n, true);
    await expect(SafetensorsFile.fromBytes(bytes, 'dropped.safetensors')).rejects.toThrow(/dropped\.safetensors.*runs past the end/);
  });

  it('reads a URL lazily with ranged requests: a small tensor costs its bytes, not the file', async () => {
    sent = 0;
    const f = await SafetensorsFile.open(`${base}/model.safetensors`);
    expect(f.path).toBe(`${base}/model.safetensors`);
    const afterHeader = sent;
    expect(afterHeader).toBeLessThanOrEqual(64 * 1024); // the probe: at most 64 KiB
    await expectContents(f);
  });

  it('does not download a large tensor twice: bytes past the probe come in one ranged request', async () => {
    const big = new Float32Array(40_000).map((_, i) => Math.sin(i));
    await writeSafetensors(path.join(dir, 'big.safetensors'), { big: { dtype: 'F32', shape: [40_000], data: big }, small: { dtype: 'F32', shape: [1], data: new Float32Array([3]) } });
    sent = 0;
    const f = await SafetensorsFile.fromUrl(`${base}/big.safetensors`);
    expect(Array.from(await f.readFloat32('small'))).toEqual([3]);
    const probe = sent;
    expect(await f.readFloat32('big')).toEqual(big);
    expect(sent - probe).toBeLessThanOrEqual(40_000 * 4);
    await f.close();
  });

  it('falls back to the whole body when the server ignores Range', async () => {
    honourRange = false;
    try {
      await expectContents(await SafetensorsFile.fromUrl(`${base}/model.safetensors`));
    } finally {
      honourRange = true;
    }
  });

  it('reads a fetch Response', async () => {
    await expectContents(await SafetensorsFile.fromResponse(await fetch(`${base}/model.safetensors`)));
  });

  it('opens a sharded index by URL, resolving shards against it', async () => {
    const f = await SafetensorsFile.open(`${base}/model.safetensors.index.fp16.json`);
    expect(f.files).toEqual([`${base}/shard-1.safetensors`, `${base}/shard-2.safetensors`]);
    await expectContents(f);
  });

  it('finds the fp16 variant at a URL with no fallback to fp32, and says what it tried', async () => {
    expect(await findSafetensors(base, 'model', 'fp16')).toBe(`${base}/model.safetensors.index.fp16.json`);
    expect(await findSafetensors(`${base}/`, 'model')).toBe(`${base}/model.safetensors`);
    allowHead = false; // a server without HEAD: probed with a one-byte ranged GET
    try {
      expect(await findSafetensors(base, 'model', 'fp16')).toBe(`${base}/model.safetensors.index.fp16.json`);
    } finally {
      allowHead = true;
    }
    await expect(findSafetensors(base, 'diffusion_pytorch_model', 'fp16')).rejects.toThrow(
      /no safetensors weights \(variant fp16\) for diffusion_pytorch_model at .*tried diffusion_pytorch_model\.fp16\.safetensors/,
    );
  });

  it('a missing URL is a SafetensorsError naming it', async () => {
    const err = await SafetensorsFile.open(`${base}/nope.safetensors`).catch((e) => e);
    expect(err).toBeInstanceOf(SafetensorsError);
    expect(err.message).toMatch(/nope\.safetensors does not exist \(HTTP 404\)/);
  });
});
