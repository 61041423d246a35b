import * as tf from '@tensorflow/tfjs';
import { DdsError, InvalidArgumentError } from '@ddsjs/safetensors';

// Image IO for browsers (canvas, ImageData, ImageBitmap), beside image.ts, which uses sharp and stays Node-only.
// Nothing here imports a Node module; the pixel conversions also run in Node (they take plain RGBA arrays).

/** RGBA pixels row by row, as a DOM `ImageData` holds them (any object with these fields works). */
export interface RgbaPixels {
  data: Uint8ClampedArray | Uint8Array;
  width: number;
  height: number;
}

/** Anything a 2D canvas can draw: `ImageBitmap`, `HTMLImageElement`, `HTMLCanvasElement`, `OffscreenCanvas`, `VideoFrame`. */
export type Drawable = object;

/** Options of {@link loadImageForEditInBrowser}: a square `size` (default 512), or `width` × `height`. */
export interface BrowserImageOptions {
  size?: number;
  width?: number;
  height?: number;
}

interface Canvas2D {
  fillStyle: string;
  imageSmoothingEnabled: boolean;
  imageSmoothingQuality: string;
  fillRect(x: number, y: number, w: number, h: number): void;
  drawImage(img: unknown, sx: number, sy: number, sw: number, sh: number, dx: number, dy: number, dw: number, dh: number): void;
  getImageData(x: number, y: number, w: number, h: number): RgbaPixels;
  putImageData(data: unknown, x: number, y: number): void;
}
interface CanvasLike {
  width: number;
  height: number;
  getContext(kind: '2d', opts?: object): Canvas2D | null;
  convertToBlob?(opts?: { type?: string; quality?: number }): Promise<Blob>;
  toBlob?(cb: (b: Blob | null) => void, type?: string, quality?: number): void;
}

/** A canvas of `w × h`: an `OffscreenCanvas` where there is one (workers too), else a DOM `<canvas>`. */
export function makeCanvas(w: number, h: number): CanvasLike {
  const g = globalThis as unknown as {
    OffscreenCanvas?: new (w: number, h: number) => CanvasLike;
    document?: { createElement(tag: 'canvas'): CanvasLike };
  };
  let c: CanvasLike;
  if (typeof g.OffscreenCanvas === 'function') c = new g.OffscreenCanvas(w, h);
  else if (g.document) {
    c = g.document.createElement('canvas');
    c.width = w;
    c.height = h;
  } else throw new DdsError('UNSUPPORTED', 'makeCanvas: no OffscreenCanvas or document (browser image IO needs a browser; in Node use loadImageForEdit)');
  return c;
}

function context(c: CanvasLike): Canvas2D {
  const ctx = c.getContext('2d', { willReadFrequently: true });
  if (!ctx) throw new DdsError('UNSUPPORTED', 'a 2D canvas context could not be created');
  return ctx;
}

function checkSide(fn: string, name: string, v: number): number {
  if (!Number.isInteger(v) || v < 8 || v % 8 !== 0) throw new InvalidArgumentError(`${fn}: ${name} must be a positive multiple of 8 (the VAE's downscale factor), got ${v}`);
  return v;
}

/**
 * RGBA pixels (an `ImageData`) as a float32 tensor `[1, H, W, 3]` mapped to [−1, 1] by `v/127.5 − 1` (the DDS
 * notebook's mapping; alpha is dropped). The caller owns the tensor.
 */
export function rgbaToEditTensor(pixels: RgbaPixels): tf.Tensor4D {
  const { width, height, data } = pixels ?? ({} as RgbaPixels);
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || !data || data.length !== width * height * 4) {
    throw new InvalidArgumentError(`rgbaToEditTensor: expected RGBA pixels { data: width·height·4 bytes, width, height }, got ${width}×${height} with ${data?.length} bytes`);
  }
  return tf.tidy(() => {
    const rgba = tf.tensor3d(Uint8Array.from(data), [height, width, 4], 'int32');
    const rgb = tf.slice(rgba, [0, 0, 0], [height, width, 3]);
    return tf.expandDims(tf.sub(tf.div(tf.cast(rgb, 'float32'), 127.5), 1), 0) as tf.Tensor4D;
  });
}

/**
 * An image tensor `[1, H, W, 3]` or `[H, W, 3]` with values in [0, 1] (clamped, rounded to 8 bits) as RGBA pixels
 * (alpha 255), ready for `new ImageData(p.data, p.width, p.height)`. Does not dispose the tensor.
 */
export async function imageToRgba(image: tf.Tensor): Promise<{ data: Uint8ClampedArray; width: number; height: number }> {
  const ok = image instanceof tf.Tensor && ((image.rank === 4 && image.shape[0] === 1 && image.shape[3] === 3) || (image.rank === 3 && image.shape[2] === 3));
  if (!ok) throw new InvalidArgumentError(`imageToRgba: expected an image tensor [1, H, W, 3] or [H, W, 3], got ${image instanceof tf.Tensor ? `[${image.shape}]` : typeof image}`);
  const [height, width] = image.rank === 4 ? image.shape.slice(1, 3) : image.shape.slice(0, 2);
  const rgba = tf.tidy(() => {
    const rgb = tf.round(tf.mul(tf.clipByValue(tf.reshape(image, [height, width, 3]), 0, 1), 255));
    return tf.cast(tf.concat([rgb, tf.fill([height, width, 1], 255)], 2), 'int32');
  });
  try {
    const values = await rgba.data();
    return { data: Uint8ClampedArray.from(values), width, height };
  } finally {
    rgba.dispose();
  }
}

/**
 * Decodes a picture file (a `Blob` / `File` the user picked or dropped: JPEG, PNG, WebP, GIF, whatever the browser
 * decodes) to an `ImageBitmap`, EXIF orientation applied. Throws an Error naming the file when it cannot be decoded.
 */
export async function decodeImageBlob(blob: Blob & { name?: string }): Promise<Drawable> {
  const create = (globalThis as unknown as { createImageBitmap?: (b: Blob, o?: object) => Promise<Drawable> }).createImageBitmap;
  if (typeof create !== 'function') throw new DdsError('UNSUPPORTED', 'decodeImageBlob: createImageBitmap is not available (a browser is needed)');
  try {
    return await create(blob, { imageOrientation: 'from-image' });
  } catch (e) {
    throw new InvalidArgumentError(`${blob.name ?? 'the picture'} is not an image the browser can decode (${(e as Error).message})`);
  }
}

function sizeOf(img: Drawable): { w: number; h: number } {
  const o = img as { width?: number; height?: number; naturalWidth?: number; naturalHeight?: number; displayWidth?: number; displayHeight?: number };
  const w = o.naturalWidth || o.displayWidth || o.width || 0;
  const h = o.naturalHeight || o.displayHeight || o.height || 0;
  return { w, h };
}

/**
 * Prepares a picture for editing in a browser, as `loadImageForEdit` does in Node: centre-crops it to the target
 * aspect ratio (a square by default), resizes it to `size × size` (default 512) or `width × height` with the
 * canvas's high-quality smoothing, flattens transparency onto white, and maps it to [−1, 1] (`v/127.5 − 1`).
 * `source` is RGBA pixels (`ImageData`), a `Blob`/`File` (decoded by {@link decodeImageBlob}) or anything a canvas
 * draws (`ImageBitmap`, `<img>`, `<canvas>`). Returns `[1, H, W, 3]` float32; the caller owns it.
 */
export async function loadImageForEditInBrowser(source: RgbaPixels | Blob | Drawable, opts: BrowserImageOptions = {}): Promise<tf.Tensor4D> {
  const fn = 'loadImageForEditInBrowser';
  const W = checkSide(fn, opts.size !== undefined ? 'size' : 'width', opts.width ?? opts.size ?? 512);
  const H = checkSide(fn, opts.size !== undefined ? 'size' : 'height', opts.height ?? opts.size ?? 512);
  let drawable: Drawable;
  const maybePixels = source as RgbaPixels;
  if (maybePixels && maybePixels.data !== undefined && typeof maybePixels.width === 'number') {
    if (maybePixels.width === W && maybePixels.height === H) return rgbaToEditTensor(maybePixels);
    const c = makeCanvas(maybePixels.width, maybePixels.height);
    const ImageDataCtor = (globalThis as unknown as { ImageData?: new (d: Uint8ClampedArray, w: number, h: number) => unknown }).ImageData;
    if (!ImageDataCtor) throw new DdsError('UNSUPPORTED', `${fn}: resizing pixels needs a browser (ImageData)`);
    context(c).putImageData(new ImageDataCtor(Uint8ClampedArray.from(maybePixels.data), maybePixels.width, maybePixels.height), 0, 0);
    drawable = c;
  } else if (typeof (source as Blob).arrayBuffer === 'function' && typeof (source as Blob).type === 'string') {
    drawable = await decodeImageBlob(source as Blob);
  } else {
    drawable = source as Drawable;
  }
  const { w, h } = sizeOf(drawable);
  if (w < 1 || h < 1) throw new InvalidArgumentError(`${fn}: the picture has no size (${w}×${h}); is it loaded?`);
  // The centred crop with the aspect ratio W : H.
  let cw = w;
  let ch = Math.round((w * H) / W);
  if (ch > h) {
    ch = h;
    cw = Math.round((h * W) / H);
  }
  const left = Math.floor((w - cw) / 2);
  const top = Math.floor((h - ch) / 2);
  const canvas = makeCanvas(W, H);
  const ctx = context(canvas);
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W, H);
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(drawable, left, top, cw, ch, 0, 0, W, H);
  return rgbaToEditTensor(ctx.getImageData(0, 0, W, H));
}

/**
 * Encodes an image tensor `[1, H, W, 3]` / `[H, W, 3]` in [0, 1] as a picture file `Blob` (default PNG; the browser
 * decides which other types it encodes, e.g. `'image/jpeg'`, `'image/webp'`). Does not dispose the tensor.
 */
export async function imageToBlob(image: tf.Tensor, type = 'image/png', quality?: number): Promise<Blob> {
  const px = await imageToRgba(image);
  const canvas = makeCanvas(px.width, px.height);
  const ImageDataCtor = (globalThis as unknown as { ImageData?: new (d: Uint8ClampedArray, w: number, h: number) => unknown }).ImageData;
  if (!ImageDataCtor) throw new DdsError('UNSUPPORTED', 'imageToBlob: ImageData is not available (a browser is needed; in Node use writeImage)');
  context(canvas).putImageData(new ImageDataCtor(px.data, px.width, px.height), 0, 0);
  if (canvas.convertToBlob) return canvas.convertToBlob({ type, quality });
  return new Promise((resolve, reject) =>
    canvas.toBlob!((b) => (b ? resolve(b) : reject(new Error(`imageToBlob: the browser could not encode ${type}`))), type, quality),
  );
}
