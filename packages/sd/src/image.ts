// Image IO for Stable Diffusion: decode files to NHWC float tensors, prepare pictures for editing, write PNGs.
import { promises as fs } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { assertOutputExtension, IMAGE_EXTENSIONS, writeFileAtomic } from './output';
import type { OutputPathError } from './output';
import type { StableDiffusion } from './pipeline';
import { InvalidArgumentError, IoError } from '@ddsjs/safetensors';

/** Resampling kernels {@link loadImageForEdit} can use (sharp's names). */
export type ResizeKernel = 'nearest' | 'linear' | 'cubic' | 'mitchell' | 'lanczos2' | 'lanczos3';

/** How {@link loadImageForEdit} fits a picture to the target size. */
export type ImageFitMode = 'crop' | 'pad' | 'stretch';

/** What {@link loadImageForEdit} did to a picture (see `onFit`): all sizes in pixels. */
export interface ImageFit {
  /** The mode used. */
  fit: ImageFitMode;
  /** The decoded picture's size (EXIF orientation applied). */
  sourceWidth: number;
  sourceHeight: number;
  /** The part of the picture kept: the centre crop (`crop`), else the whole picture. */
  crop: { left: number; top: number; width: number; height: number };
  /** The size the kept part was resized to (smaller than the target with `pad`). */
  resizedWidth: number;
  resizedHeight: number;
  /** White borders added around the resized part (`pad`; zeros otherwise). */
  pad: { left: number; top: number; right: number; bottom: number };
  /** The result's size. */
  width: number;
  height: number;
}

/**
 * Options of {@link loadImageForEdit}: a square `size`, or an explicit `width` × `height`, or neither: then the
 * `model`'s native size ({@link StableDiffusion.nativeSize}), else 512 (SD 1.5's).
 */
export type LoadImageForEditOptions = ({ size?: number; width?: undefined; height?: undefined } | { width: number; height: number; size?: undefined }) & {
  /** The model the picture is for: without `size`/`width`/`height`, the picture gets its native size. */
  model?: { readonly nativeSize: number };
  /**
   * How the picture meets the target aspect ratio: `'crop'` (default; the notebook's centre crop), `'pad'` (the
   * whole picture, resized to fit inside and padded with white) or `'stretch'` (the whole picture, resized to the
   * target, distorting it).
   */
  fit?: ImageFitMode;
  /**
   * Resampling kernel. Default `'cubic'` (Catmull-Rom, a = −0.5: the filter of PIL's `Image.resize` default
   * `BICUBIC`, which the DDS notebook's `load_512` uses), antialiased when shrinking as PIL does.
   */
  kernel?: ResizeKernel;
  /** The kept part must be at least this many pixels on its short side, else an error. Default 64. */
  minSize?: number;
  /** Told what was done (crop box, resize, padding) — for a caller that reports it. */
  onFit?: (fit: ImageFit) => void;
};

/** Options of {@link writeImage}. */
export interface WriteImageOptions {
  /** Replace an existing file. Default false: writing over an existing file is an error. */
  overwrite?: boolean;
}

/** Options of {@link imageStrip}. */
export interface ImageStripOptions {
  /** Pixels of background between pictures. Default 0. */
  gap?: number;
  /** Background value of the gaps, in [0, 1]. Default 1 (white). */
  background?: number;
}

const DEFAULT_EDIT_SIZE = 512;
const DEFAULT_MIN_SIZE = 64;
const KERNELS: readonly ResizeKernel[] = ['nearest', 'linear', 'cubic', 'mitchell', 'lanczos2', 'lanczos3'];
const FITS: readonly ImageFitMode[] = ['crop', 'pad', 'stretch'];

interface RawRgb {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Decodes a file to 8-bit RGB: EXIF orientation applied, alpha flattened on white, greyscale expanded to RGB. */
async function decodeFile(fn: string, file: string): Promise<RawRgb> {
  try {
    const st = await fs.stat(file);
    if (!st.isFile()) throw new IoError(`${fn}: '${file}' is not a file`);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new IoError(`${fn}: no such file '${file}'`);
    if (code) throw new IoError(`${fn}: cannot read '${file}' (${(e as Error).message})`);
    throw e;
  }
  try {
    const { data, info } = await sharp(file)
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded ${info.channels} channels, expected 3`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (e) {
    throw new InvalidArgumentError(`${fn}: cannot decode '${file}' as an image (JPEG, PNG, WebP, GIF, TIFF, AVIF): ${(e as Error).message}`);
  }
}

/** Checks an image tensor is [1,H,W,3] or [H,W,3]; returns [H, W]. */
function imageDims(fn: string, name: string, t: tf.Tensor): [number, number] {
  if (!(t instanceof tf.Tensor)) throw new InvalidArgumentError(`${fn}: ${name} must be a tensor [1, H, W, 3] or [H, W, 3]`);
  const s = t.shape;
  if (s.length === 4 && s[0] === 1 && s[3] === 3) return [s[1], s[2]];
  if (s.length === 3 && s[2] === 3) return [s[0], s[1]];
  throw new InvalidArgumentError(`${fn}: ${name} must be [1, H, W, 3] or [H, W, 3], got [${s}]`);
}

/** A [0,1] image tensor as 8-bit RGB (values clamped, rounded). */
async function tensorToRgb8(fn: string, name: string, t: tf.Tensor): Promise<RawRgb> {
  const [height, width] = imageDims(fn, name, t);
  const q = tf.tidy(() => tf.cast(tf.round(tf.mul(tf.clipByValue(tf.cast(t, 'float32'), 0, 1), 255)), 'int32'));
  try {
    return { data: Uint8Array.from(await q.data()), width, height };
  } finally {
    q.dispose();
  }
}

/**
 * Reads a picture file (JPEG, PNG, WebP, GIF, TIFF, AVIF — whatever sharp decodes) as a float32 tensor
 * `[1, H, W, 3]` in [0, 1]: EXIF orientation applied, transparency flattened onto white, greyscale expanded to RGB,
 * 16-bit images reduced to 8 bits. Throws an Error naming the file when it is missing or not a decodable image.
 * The caller owns the tensor.
 */
export async function readImage(file: string): Promise<tf.Tensor4D> {
  const { data, width, height } = await decodeFile('readImage', file);
  return tf.tidy(() => tf.div(tf.tensor4d(data, [1, height, width, 3], 'int32'), 255) as tf.Tensor4D);
}

/** The centred crop of a `w × h` picture with the aspect ratio `tw : th` (the whole picture when it already has it). */
export function centreCrop(w: number, h: number, tw: number, th: number): { left: number; top: number; width: number; height: number } {
  // Compare w/h with tw/th exactly in integers.
  if (w * th > h * tw) {
    const cw = Math.max(1, Math.round((h * tw) / th));
    return { left: Math.floor((w - cw) / 2), top: 0, width: cw, height: h };
  }
  if (w * th < h * tw) {
    const ch = Math.max(1, Math.round((w * th) / tw));
    return { left: 0, top: Math.floor((h - ch) / 2), width: w, height: ch };
  }
  return { left: 0, top: 0, width: w, height: h };
}

/**
 * Prepares a picture for editing, like the DDS notebook's `load_512`: centre-crops it to the target aspect ratio
 * (or, with `fit`, pads or stretches it), resizes it to `size × size` or `width × height` — by default the native
 * size of `opts.model` (`sd.nativeSize`: 64 px for the embedded toy model, 512 for SD 1.5), else 512 — and maps it
 * to [−1, 1] (`v/127.5 − 1` of the 8-bit values, as the notebook does). Returns `[1, H, W, 3]` float32; the caller
 * owns it. `opts.onFit` is told the crop box, the resize and the padding.
 *
 * `source` is a file path (decoded as {@link readImage} does) or a tensor `[1, H, W, 3]` / `[H, W, 3]` in [0, 1]
 * (quantised to 8 bits first, so a tensor and the same picture saved as PNG give the same result).
 * Resizing uses sharp with `opts.kernel` (default `'cubic'` = PIL's BICUBIC). Sides must be multiples of 8 (the
 * VAE's downscale factor); the kept part must be at least `opts.minSize` (default 64) pixels on its short side.
 */
export async function loadImageForEdit(source: string | tf.Tensor, opts: LoadImageForEditOptions = {}): Promise<tf.Tensor4D> {
  const fn = 'loadImageForEdit';
  const o = opts ?? {};
  let tw: number;
  let th: number;
  if (o.width !== undefined || o.height !== undefined) {
    if (o.size !== undefined) throw new InvalidArgumentError(`${fn}: give either size or width and height, not both`);
    if (o.width === undefined || o.height === undefined) throw new InvalidArgumentError(`${fn}: width and height must be given together`);
    [tw, th] = [o.width, o.height];
  } else {
    tw = th = o.size ?? o.model?.nativeSize ?? DEFAULT_EDIT_SIZE;
  }
  for (const [name, v] of [['width', tw], ['height', th]] as const) {
    if (!Number.isInteger(v) || v <= 0 || v % 8 !== 0) {
      throw new InvalidArgumentError(`${fn}: ${o.size !== undefined ? 'size' : name} must be a positive multiple of 8 (the VAE downscales by 8), got ${v}`);
    }
  }
  const kernel = o.kernel ?? 'cubic';
  if (!KERNELS.includes(kernel)) throw new InvalidArgumentError(`${fn}: kernel must be one of ${KERNELS.join(', ')}, got '${String(kernel)}'`);
  const fit = o.fit ?? 'crop';
  if (!FITS.includes(fit)) throw new InvalidArgumentError(`${fn}: fit must be one of ${FITS.join(', ')}, got '${String(fit)}'`);
  const minSize = o.minSize ?? DEFAULT_MIN_SIZE;

  const what = typeof source === 'string' ? `'${source}'` : 'the image tensor';
  const rgb = typeof source === 'string' ? await decodeFile(fn, source) : await tensorToRgb8(fn, 'source', source);
  const crop = fit === 'crop' ? centreCrop(rgb.width, rgb.height, tw, th) : { left: 0, top: 0, width: rgb.width, height: rgb.height };
  if (Math.min(crop.width, crop.height) < minSize) {
    throw new InvalidArgumentError(
      fit === 'crop'
        ? `${fn}: ${what} is too small: ${rgb.width}×${rgb.height} pixels, its centre crop to ${tw}:${th} is ` +
            `${crop.width}×${crop.height}; at least ${minSize} pixels on the short side are needed (minSize)`
        : `${fn}: ${what} is too small: ${rgb.width}×${rgb.height} pixels; at least ${minSize} pixels on the short side are needed (minSize)`,
    );
  }
  // pad: the largest size inside tw × th with the picture's aspect ratio, centred on white.
  let rw = tw;
  let rh = th;
  if (fit === 'pad') {
    const scale = Math.min(tw / rgb.width, th / rgb.height);
    rw = Math.min(tw, Math.max(1, Math.round(rgb.width * scale)));
    rh = Math.min(th, Math.max(1, Math.round(rgb.height * scale)));
  }
  const pad = { left: Math.floor((tw - rw) / 2), top: Math.floor((th - rh) / 2), right: 0, bottom: 0 };
  pad.right = tw - rw - pad.left;
  pad.bottom = th - rh - pad.top;
  let pipeline = sharp(Buffer.from(rgb.data.buffer, rgb.data.byteOffset, rgb.data.length), {
    raw: { width: rgb.width, height: rgb.height, channels: 3 },
  })
    .extract(crop)
    .resize(rw, rh, { kernel, fit: 'fill' });
  if (fit === 'pad' && (rw !== tw || rh !== th)) {
    // A second pipeline, so that the padding is added after the resize whatever order sharp applies operations in.
    const resized = await pipeline.raw().toBuffer();
    pipeline = sharp(resized, { raw: { width: rw, height: rh, channels: 3 } }).extend({ ...pad, background: { r: 255, g: 255, b: 255 } });
  }
  const out = await pipeline.raw().toBuffer({ resolveWithObject: true });
  if (out.info.width !== tw || out.info.height !== th || out.info.channels !== 3) {
    throw new Error(`${fn}: resize of ${what} produced ${out.info.width}×${out.info.height}×${out.info.channels}, expected ${tw}×${th}×3`);
  }
  o.onFit?.({ fit, sourceWidth: rgb.width, sourceHeight: rgb.height, crop, resizedWidth: rw, resizedHeight: rh, pad, width: tw, height: th });
  const data = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length);
  return tf.tidy(() => tf.sub(tf.div(tf.tensor4d(data, [1, th, tw, 3], 'int32'), 127.5), 1) as tf.Tensor4D);
}

const FORMATS: Record<string, 'png' | 'jpeg' | 'webp'> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg', '.webp': 'webp' };

/**
 * Writes an image tensor `[1, H, W, 3]` or `[H, W, 3]` with values in [0, 1] (clamped, rounded to 8 bits) to
 * `file`. The format follows the extension: `.png` (lossless), `.jpg`/`.jpeg` (quality 95) or `.webp` (lossless);
 * any other extension is an {@link OutputPathError}. The file is written atomically (a temporary file renamed
 * over it). An existing file is never replaced unless `{ overwrite: true }`; a missing directory is an
 * OutputPathError (nothing is created). Does not dispose the tensor.
 */
export async function writeImage(image: tf.Tensor, file: string, opts: WriteImageOptions = {}): Promise<void> {
  const fn = 'writeImage';
  assertOutputExtension(file, IMAGE_EXTENSIONS);
  const format = FORMATS[path.extname(file).toLowerCase()];
  const rgb = await tensorToRgb8(fn, 'image', image);
  let s = sharp(Buffer.from(rgb.data.buffer, rgb.data.byteOffset, rgb.data.length), {
    raw: { width: rgb.width, height: rgb.height, channels: 3 },
  });
  s = format === 'png' ? s.png() : format === 'jpeg' ? s.jpeg({ quality: 95 }) : s.webp({ lossless: true });
  const bytes = await s.toBuffer();
  await writeFileAtomic(file, bytes, { overwrite: opts.overwrite, forceHint: 'pass { overwrite: true } to replace it' });
}

/**
 * Places pictures side by side (e.g. a before/after strip): each `[1, H, W_i, 3]` or `[H, W_i, 3]`, all the same
 * height H, separated by `opts.gap` pixels of `opts.background`. Returns `[1, H, ΣW_i + gap·(n−1), 3]` float32;
 * the caller owns it (the inputs are not disposed).
 */
export function imageStrip(images: tf.Tensor[], opts: ImageStripOptions = {}): tf.Tensor4D {
  const fn = 'imageStrip';
  if (!Array.isArray(images) || images.length === 0) throw new InvalidArgumentError(`${fn}: give at least one image`);
  const dims = images.map((t, i) => imageDims(fn, `images[${i}]`, t));
  const h = dims[0][0];
  dims.forEach(([hi], i) => {
    if (hi !== h) throw new InvalidArgumentError(`${fn}: images[${i}] is ${hi} pixels high, images[0] is ${h}; all must have the same height`);
  });
  const gap = opts.gap ?? 0;
  if (!Number.isInteger(gap) || gap < 0) throw new InvalidArgumentError(`${fn}: gap must be a non-negative integer, got ${gap}`);
  const bg = opts.background ?? 1;
  if (!Number.isFinite(bg)) throw new InvalidArgumentError(`${fn}: background must be a number, got ${bg}`);
  return tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    images.forEach((t, i) => {
      if (i > 0 && gap > 0) parts.push(tf.fill([1, h, gap, 3], bg));
      const x = tf.cast(t, 'float32');
      parts.push(x.rank === 3 ? tf.expandDims(x, 0) : x);
    });
    return tf.concat(parts, 2) as tf.Tensor4D;
  });
}
