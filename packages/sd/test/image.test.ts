import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { initBackend } from '@ddsjs/nn';
import { centreCrop, ImageFit, imageStrip, loadImageForEdit, readImage, writeImage } from '../src/image';

let dir: string;

/** Writes raw 8-bit pixels (`channels` per pixel) as an image file with sharp; returns the path. */
async function makeImage(
  name: string,
  width: number,
  height: number,
  channels: 1 | 2 | 3 | 4,
  pixel: (x: number, y: number) => number[],
  fmt: (s: sharp.Sharp) => sharp.Sharp = (s) => s.png(),
): Promise<string> {
  const buf = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = pixel(x, y);
      for (let c = 0; c < channels; c++) buf[(y * width + x) * channels + c] = p[c];
    }
  }
  const file = path.join(dir, name);
  await fmt(sharp(buf, { raw: { width, height, channels } })).toFile(file);
  return file;
}

/** Pixel (x, y) of an NHWC [1,H,W,3] tensor. */
async function pixelAt(t: tf.Tensor, x: number, y: number): Promise<number[]> {
  const w = t.shape[2]!;
  const d = await t.data();
  const i = (y * w + x) * 3;
  return [d[i], d[i + 1], d[i + 2]];
}

beforeAll(async () => {
  await initBackend('cpu');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ddsjs-image-'));
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

describe('readImage', () => {
  it('decodes an RGB PNG to [1,H,W,3] float32 in [0,1], exactly', async () => {
    const file = await makeImage('rgb.png', 5, 3, 3, (x, y) => [x * 50, y * 100, 7]);
    const t = await readImage(file);
    expect(t.shape).toEqual([1, 3, 5, 3]);
    expect(t.dtype).toBe('float32');
    expect(await pixelAt(t, 4, 2)).toEqual([200 / 255, 200 / 255, 7 / 255].map(Math.fround));
    expect(await pixelAt(t, 0, 1)).toEqual([0, 100 / 255, 7 / 255].map(Math.fround));
    t.dispose();
  });

  it('flattens transparency onto white and expands greyscale (with and without alpha) to RGB', async () => {
    const rgba = await makeImage('rgba.png', 2, 1, 4, (x) => (x === 0 ? [0, 0, 0, 0] : [0, 0, 0, 255]));
    const t = await readImage(rgba);
    expect(await pixelAt(t, 0, 0)).toEqual([1, 1, 1]);
    expect(await pixelAt(t, 1, 0)).toEqual([0, 0, 0]);
    const grey = await makeImage('grey.png', 3, 2, 1, (x) => [x * 100]);
    const g = await readImage(grey);
    expect(g.shape).toEqual([1, 2, 3, 3]);
    expect(await pixelAt(g, 2, 1)).toEqual([200, 200, 200].map((v) => Math.fround(v / 255)));
    const greyAlpha = await makeImage('grey-alpha.png', 1, 1, 2, () => [0, 0]);
    const ga = await readImage(greyAlpha);
    expect(await pixelAt(ga, 0, 0)).toEqual([1, 1, 1]);
    tf.dispose([t, g, ga]);
  });

  it('applies the EXIF orientation (a JPEG tagged orientation 6 comes out rotated, sides swapped)', async () => {
    // 40 wide × 20 high: left half red, right half blue. Orientation 6 = rotate 90° clockwise to display,
    // so the displayed picture is 20 wide × 40 high with red on top.
    const file = await makeImage('exif6.jpg', 40, 20, 3, (x) => (x < 20 ? [255, 0, 0] : [0, 0, 255]), (s) =>
      s.jpeg({ quality: 95 }).withMetadata({ orientation: 6 }),
    );
    expect((await sharp(file).metadata()).orientation).toBe(6);
    const t = await readImage(file);
    expect(t.shape).toEqual([1, 40, 20, 3]);
    const top = await pixelAt(t, 10, 5);
    const bottom = await pixelAt(t, 10, 35);
    expect(top[0]).toBeGreaterThan(0.9);
    expect(top[2]).toBeLessThan(0.1);
    expect(bottom[2]).toBeGreaterThan(0.9);
    expect(bottom[0]).toBeLessThan(0.1);
    t.dispose();
  });

  it('reads WebP', async () => {
    const file = await makeImage('x.webp', 4, 4, 3, () => [10, 20, 30], (s) => s.webp({ lossless: true }));
    const t = await readImage(file);
    expect(t.shape).toEqual([1, 4, 4, 3]);
    expect(await pixelAt(t, 3, 3)).toEqual([10, 20, 30].map((v) => Math.fround(v / 255)));
    t.dispose();
  });

  it('names the file when it is missing or not an image', async () => {
    const missing = path.join(dir, 'nope.png');
    await expect(readImage(missing)).rejects.toThrow(`readImage: no such file '${missing}'`);
    const text = path.join(dir, 'notes.png');
    await fs.writeFile(text, 'not a picture');
    await expect(readImage(text)).rejects.toThrow(`readImage: cannot decode '${text}' as an image`);
    await expect(readImage(dir)).rejects.toThrow(`is not a file`);
  });
});

describe('loadImageForEdit', () => {
  let stripes: string;
  beforeAll(async () => {
    // 100 × 60: 20 red columns, 60 green, 20 blue. The centred square crop is exactly the green part.
    stripes = await makeImage('stripes.png', 100, 60, 3, (x) => (x < 20 ? [255, 0, 0] : x < 80 ? [0, 255, 0] : [0, 0, 255]));
  });

  it('centre-crops to a square, resizes and maps to [-1, 1] like load_512', async () => {
    const before = tf.memory().numTensors;
    const t = await loadImageForEdit(stripes, { size: 32, minSize: 16 });
    expect(t.shape).toEqual([1, 32, 32, 3]);
    const d = await t.data();
    for (let i = 0; i < d.length; i += 3) {
      expect([d[i], d[i + 1], d[i + 2]]).toEqual([-1, 1, -1]);
    }
    t.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('crops to the target aspect for width × height (non-square)', async () => {
    // 48:32 = 3:2 → crop 90 × 60 from x = 5: red columns 5..19 (15 of 90 → 8 of 48 px) remain on the left.
    expect(centreCrop(100, 60, 48, 32)).toEqual({ left: 5, top: 0, width: 90, height: 60 });
    expect(centreCrop(60, 100, 8, 8)).toEqual({ left: 0, top: 20, width: 60, height: 60 });
    const t = await loadImageForEdit(stripes, { width: 48, height: 32, minSize: 16, kernel: 'nearest' });
    expect(t.shape).toEqual([1, 32, 48, 3]);
    expect(await pixelAt(t, 2, 10)).toEqual([1, -1, -1]);
    expect(await pixelAt(t, 24, 10)).toEqual([-1, 1, -1]);
    expect(await pixelAt(t, 45, 10)).toEqual([-1, -1, 1]);
    t.dispose();
  });

  it('gives the same result for a [0,1] tensor as for the file', async () => {
    const file = await makeImage('noise.png', 70, 90, 3, (x, y) => [(x * 37 + y * 11) % 256, (x * 5) % 256, (y * 9) % 256]);
    const img = await readImage(file);
    const a = await loadImageForEdit(file, { size: 64 });
    const b = await loadImageForEdit(img, { size: 64 });
    const c = await loadImageForEdit(tf.squeeze(img, [0]), { size: 64 });
    expect(Array.from(await b.data())).toEqual(Array.from(await a.data()));
    expect(Array.from(await c.data())).toEqual(Array.from(await a.data()));
    const [mn, mx] = [tf.min(a), tf.max(a)];
    expect((await mn.data())[0]).toBeGreaterThanOrEqual(-1);
    expect((await mx.data())[0]).toBeLessThanOrEqual(1);
    tf.dispose([img, a, b, c, mn, mx]);
  });

  it("defaults to the model's native size, and reports the crop box and the resize", async () => {
    const fits: ImageFit[] = [];
    const t = await loadImageForEdit(stripes, { model: { nativeSize: 16 }, minSize: 16, onFit: (f) => fits.push(f) });
    expect(t.shape).toEqual([1, 16, 16, 3]);
    expect(fits).toEqual([
      {
        fit: 'crop',
        sourceWidth: 100,
        sourceHeight: 60,
        crop: { left: 20, top: 0, width: 60, height: 60 },
        resizedWidth: 16,
        resizedHeight: 16,
        pad: { left: 0, top: 0, right: 0, bottom: 0 },
        width: 16,
        height: 16,
      },
    ]);
    t.dispose();
    const sized = await loadImageForEdit(stripes, { model: { nativeSize: 16 }, size: 24, minSize: 16 }); // size wins
    expect(sized.shape).toEqual([1, 24, 24, 3]);
    sized.dispose();
  });

  it("fit 'pad' keeps the whole picture on white; 'stretch' keeps it all, distorted", async () => {
    let fit: ImageFit | undefined;
    const padded = await loadImageForEdit(stripes, { size: 40, fit: 'pad', minSize: 16, kernel: 'nearest', onFit: (f) => (fit = f) });
    // 100×60 into 40×40: resized to 40×24, 8 rows of white above and below.
    expect([fit?.resizedWidth, fit?.resizedHeight, fit?.pad]).toEqual([40, 24, { left: 0, top: 8, right: 0, bottom: 8 }]);
    expect(await pixelAt(padded, 20, 2)).toEqual([1, 1, 1]);
    expect(await pixelAt(padded, 2, 20)).toEqual([1, -1, -1]); // the red columns are kept
    expect(await pixelAt(padded, 38, 20)).toEqual([-1, -1, 1]); // and the blue ones
    const stretched = await loadImageForEdit(stripes, { size: 40, fit: 'stretch', minSize: 16, kernel: 'nearest' });
    expect(await pixelAt(stretched, 2, 2)).toEqual([1, -1, -1]);
    expect(await pixelAt(stretched, 38, 38)).toEqual([-1, -1, 1]);
    tf.dispose([padded, stretched]);
    await expect(loadImageForEdit(stripes, { size: 40, fit: 'squash' as never })).rejects.toThrow(/fit must be one of crop, pad, stretch/);
  });

  it('rejects sides that are not multiples of 8, too-small pictures, and bad arguments, naming them', async () => {
    await expect(loadImageForEdit(stripes, { size: 500 })).rejects.toThrow(/size must be a positive multiple of 8.*got 500/);
    await expect(loadImageForEdit(stripes, { width: 64, height: 36 })).rejects.toThrow(/height must be a positive multiple of 8.*got 36/);
    await expect(loadImageForEdit(stripes)).rejects.toThrow(
      `loadImageForEdit: '${stripes}' is too small: 100×60 pixels, its centre crop to 512:512 is 60×60; at least 64 pixels`,
    );
    await expect(loadImageForEdit(stripes, { size: 64, kernel: 'bogus' as never })).rejects.toThrow(/kernel must be one of/);
    const bad = tf.zeros([2, 8, 8, 3]);
    await expect(loadImageForEdit(bad)).rejects.toThrow(/source must be \[1, H, W, 3\] or \[H, W, 3\], got \[2,8,8,3\]/);
    bad.dispose();
    await expect(loadImageForEdit(path.join(dir, 'missing.jpg'))).rejects.toThrow(/no such file/);
  });
});

describe('writeImage', () => {
  it('writes a PNG that reads back identically (8-bit), and refuses to overwrite unless asked', async () => {
    const img = tf.tidy(() => tf.div(tf.cast(tf.reshape(tf.range(0, 4 * 6 * 3), [1, 4, 6, 3]), 'float32'), 71));
    const file = path.join(dir, 'out.png');
    await writeImage(img, file);
    const back = await readImage(file);
    const expected = tf.tidy(() => tf.div(tf.round(tf.mul(tf.clipByValue(img, 0, 1), 255)), 255));
    expect(Array.from(await back.data())).toEqual(Array.from(await expected.data()));
    await expect(writeImage(img, file)).rejects.toThrow(`output ${file} exists; pass { overwrite: true } to replace it`);
    const white = tf.ones([4, 6, 3]);
    await writeImage(white, file, { overwrite: true });
    const back2 = await readImage(file);
    expect(Array.from(await back2.data()).every((v) => v === 1)).toBe(true);
    tf.dispose([img, back, expected, white, back2]);
  });

  it('picks the format from the extension and rejects unknown extensions, missing folders and bad shapes', async () => {
    const img = tf.fill([1, 8, 8, 3], 0.5);
    await writeImage(img, path.join(dir, 'a.jpg'));
    await writeImage(img, path.join(dir, 'a.webp'));
    expect((await sharp(path.join(dir, 'a.jpg')).metadata()).format).toBe('jpeg');
    expect((await sharp(path.join(dir, 'a.webp')).metadata()).format).toBe('webp');
    await expect(writeImage(img, path.join(dir, 'a.bmp'))).rejects.toThrow(/a\.bmp: unknown format '\.bmp'; use \.png, \.jpg, \.jpeg, \.webp$/);
    await expect(writeImage(img, path.join(dir, 'no', 'such', 'dir.png'))).rejects.toThrow(/^output folder .*no[\/]such does not exist$/);
    // Atomic: no temporary file is left beside the outputs.
    expect((await fs.readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const bad = tf.zeros([1, 8, 8, 4]);
    await expect(writeImage(bad, path.join(dir, 'b.png'))).rejects.toThrow(/image must be \[1, H, W, 3\] or \[H, W, 3\], got \[1,8,8,4\]/);
    tf.dispose([img, bad]);
  });
});

describe('imageStrip', () => {
  it('places pictures side by side with an optional gap', async () => {
    const a = tf.zeros([1, 4, 3, 3]);
    const b = tf.ones([4, 2, 3]);
    const before = tf.memory().numTensors;
    const s = imageStrip([a, b]);
    expect(s.shape).toEqual([1, 4, 5, 3]);
    expect(await pixelAt(s, 2, 0)).toEqual([0, 0, 0]);
    expect(await pixelAt(s, 3, 3)).toEqual([1, 1, 1]);
    const g = imageStrip([a, a], { gap: 2, background: 0.25 });
    expect(g.shape).toEqual([1, 4, 8, 3]);
    expect(await pixelAt(g, 4, 1)).toEqual([0.25, 0.25, 0.25]);
    tf.dispose([s, g]);
    expect(tf.memory().numTensors).toBe(before);
    const c = tf.zeros([1, 5, 3, 3]);
    expect(() => imageStrip([a, c])).toThrow('imageStrip: images[1] is 5 pixels high, images[0] is 4; all must have the same height');
    expect(() => imageStrip([])).toThrow(/at least one image/);
    tf.dispose([a, b, c]);
  });
});
