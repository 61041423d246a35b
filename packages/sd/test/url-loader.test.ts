import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { loadStableDiffusion, loadStableDiffusionFromUrl, StableDiffusion } from '@ddsjs/sd';
import { imageToRgba, rgbaToEditTensor } from '@ddsjs/sd/internals';

// The browser paths of @ddsjs/sd, run in Node: a diffusers folder over HTTP (ranged reads, fp16 variant) and the
// canvas-free pixel conversions of image-browser.ts.

const TOY = path.join(__dirname, '../../toy-shapes/model');
let server: http.Server;
let base: string;
const requested: string[] = [];

beforeAll(async () => {
  await initBackend('cpu', { quiet: true });
  server = http.createServer(async (req, res) => {
    const rel = decodeURIComponent((req.url ?? '/').split('?')[0]);
    requested.push(rel);
    let body: Buffer;
    try {
      body = await fsp.readFile(path.join(TOY, rel));
    } catch {
      res.writeHead(404).end();
      return;
    }
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (m) {
      const part = body.subarray(Number(m[1]), Math.min(body.length, Number(m[2]) + 1));
      res.writeHead(206, { 'Content-Range': `bytes ${m[1]}-${Number(m[1]) + part.length - 1}/${body.length}` }).end(part);
    } else res.writeHead(200).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function same(a: tf.Tensor, b: tf.Tensor): Promise<boolean> {
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))));
  const v = (await d.data())[0];
  d.dispose();
  return v === 0;
}

describe('loadStableDiffusionFromUrl', () => {
  let fromDisk: StableDiffusion;
  let fromUrl: StableDiffusion;
  afterAll(() => {
    fromDisk?.dispose();
    fromUrl?.dispose();
  });

  test('loads the toy model (fp16 variant) over HTTP with the same weights, tokenizer and defaults as from disk', async () => {
    fromDisk = await loadStableDiffusion(TOY, { variant: 'fp16' });
    const before = tf.memory().numTensors;
    let progress = 0;
    fromUrl = await loadStableDiffusion(`${base}/`, { variant: 'fp16', onProgress: (done) => (progress = done) });
    expect(fromUrl.source).toBe(base);
    expect(progress).toBe(fromDisk.unet.namedParameters().length + fromDisk.vae.namedParameters().length + fromDisk.textEncoder.namedParameters().length);
    expect(fromUrl.defaults.edit).toEqual(fromDisk.defaults.edit);
    const where = (c: object, root: string) => JSON.parse(JSON.stringify(c).split(root).join('<root>'));
    expect(where(fromUrl.configs, base)).toEqual(where(fromDisk.configs, TOY));
    const a = fromDisk.unet.namedParameters();
    const b = fromUrl.unet.namedParameters();
    expect(b.map(([k]) => k)).toEqual(a.map(([k]) => k));
    for (let i = 0; i < a.length; i++) expect(await same(a[i][1].value, b[i][1].value)).toBe(true);
    const [ids1, ids2] = [fromDisk.tokenizer.encode(['a red circle']), fromUrl.tokenizer.encode(['a red circle'])];
    expect(await ids2.array()).toEqual(await ids1.array());
    tf.dispose([ids1, ids2]);
    expect(tf.memory().numTensors - before).toBe(fromDisk.unet.namedParameters().length + fromDisk.vae.namedParameters().length + fromDisk.textEncoder.namedParameters().length);
    // fp16 files only: the variant never falls back to the fp32 names.
    expect(requested.filter((r) => r.endsWith('.safetensors')).every((r) => r.includes('.fp16.'))).toBe(true);
  });

  test('a URL that is not a diffusers folder fails naming the missing file', async () => {
    await expect(loadStableDiffusionFromUrl(`${base}/unet`)).rejects.toThrow(/cannot fetch http:\/\/127\.0\.0\.1:\d+\/unet\/model_index\.json: HTTP 404/);
    await expect(loadStableDiffusionFromUrl('models/toy')).rejects.toThrow(/expected an http\(s\) URL/);
  });
});

describe('browser image pixels', () => {
  test('rgbaToEditTensor maps RGBA bytes to [1,H,W,3] in [-1, 1] and imageToRgba inverts it', async () => {
    const data = new Uint8ClampedArray(8 * 16 * 4).map((_, i) => (i % 4 === 3 ? 7 : (i * 37) % 256));
    const before = tf.memory().numTensors;
    const t = rgbaToEditTensor({ data, width: 16, height: 8 });
    expect(t.shape).toEqual([1, 8, 16, 3]);
    const v = await t.data();
    expect(v[0]).toBeCloseTo(data[0] / 127.5 - 1, 6);
    expect(v[5]).toBeCloseTo(data[6] / 127.5 - 1, 6);
    const unit = tf.tidy(() => tf.add(tf.div(t, 2), 0.5));
    const back = await imageToRgba(unit);
    expect(back.width).toBe(16);
    expect(back.height).toBe(8);
    expect(Array.from(back.data)).toEqual(Array.from(data).map((x, i) => (i % 4 === 3 ? 255 : x)));
    tf.dispose([t, unit]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('bad pixels are a one-line error', () => {
    expect(() => rgbaToEditTensor({ data: new Uint8ClampedArray(10), width: 2, height: 2 })).toThrow(/expected RGBA pixels .* 2×2 with 10 bytes/);
  });
});
