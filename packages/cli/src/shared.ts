// What the dds commands share: the I/O, the model and backend options, output checks, the picture options and
// the early picture decoding.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, BackendName, modelWeightBytes } from '@ddsjs/nn';
import {
  checkOutputPath,
  loadImageForEdit,
  loadStableDiffusion,
  StableDiffusion,
} from '@ddsjs/sd';
import {
  IMAGE_EXTENSIONS,
  ImageFit,
  ImageFitMode,
  LoadImageForEditOptions,
} from '@ddsjs/sd/internals';
import { defaultModel } from '@ddsjs/toy-shapes';
import { CliError, num, str } from './args';
import { Progress } from './progress';
import { BACKENDS } from './commands';

/** The I/O a command writes to (replaceable in tests). */
export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** The process's stdout and stderr, one line per call. */
export const defaultIO: CliIO = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};

/** The model path and weights variant: `--model` (with `--variant`), else the embedded toy model (fp16 variant). */
export function resolveModel(values: Record<string, unknown>): { path: string; variant: 'fp16' | undefined } {
  const variant = str(values, 'variant');
  if (variant !== undefined && variant !== 'fp16') throw new CliError(`--variant must be 'fp16', got '${variant}'`);
  const m = str(values, 'model');
  if (m !== undefined) {
    if (!fs.existsSync(m)) throw new CliError(`model not found: ${m}`);
    return { path: m, variant };
  }
  const d = defaultModel();
  if (!d) throw new CliError('no --model given and the embedded default model (@ddsjs/toy-shapes) is not installed');
  return { path: d.dir, variant: d.variant };
}

/**
 * Checks an output before any heavy work (see `checkOutputPath`): a picture with a known extension (or a folder,
 * for `kind: 'folder'`) in a writable folder, none of `inputs`, not replacing a file without --force.
 */
export function checkOutput(file: string, force: boolean, inputs: string[] = [], kind: 'file' | 'folder' = 'file'): void {
  checkOutputPath(file, { kind, force, inputs, extensions: kind === 'file' ? IMAGE_EXTENSIONS : undefined });
}

/** `--backend`: validated, then the backend started (before anything that makes tensors). */
export async function startBackend(values: Record<string, unknown>, io: CliIO): Promise<void> {
  const backend = str(values, 'backend') ?? 'auto';
  if (!BACKENDS.includes(backend)) throw new CliError(`--backend must be one of ${BACKENDS.join(', ')}, got '${backend}'`);
  const { path: modelPath, variant } = resolveModel(values);
  const used = await initBackend(backend as BackendName, { modelBytes: modelWeightBytes(modelPath, variant) });
  io.err(`backend: ${used}`);
}

/** {@link loadModel}, disposing `pending` (a picture prepared before the load) when the load fails. */
export async function loadModelDisposing(model: { path: string; variant: 'fp16' | undefined }, io: CliIO, pending: tf.Tensor | null): Promise<StableDiffusion> {
  try {
    return await loadModel(model, io);
  } catch (e) {
    pending?.dispose();
    throw e;
  }
}

/** Loads the model with a progress bar on stderr and reports the load time. */
export async function loadModel(model: { path: string; variant: 'fp16' | undefined }, io: CliIO): Promise<StableDiffusion> {
  const t0 = Date.now();
  let bar: Progress | null = null;
  const sd = await loadStableDiffusion(model.path, {
    variant: model.variant,
    onProgress: (done, total) => {
      bar ??= new Progress('loading', total);
      bar.update(done);
    },
  });
  (bar as Progress | null)?.stop();
  io.err(`loaded ${model.path} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return sd;
}

/** `<base><suffix><ext>` of a file name, keeping its folder: `a/x.webp` + `-steps` → `a/x-steps.webp`. */
export function withSuffix(file: string, suffix: string): string {
  const ext = path.extname(file);
  return file.slice(0, file.length - ext.length) + suffix + ext;
}

/** The default output of `dds edit IMAGE`: `<name>-edited.png` in the working folder. */
export function defaultEditOut(image: string): string {
  const ext = path.extname(image);
  return `${path.basename(image, ext)}-edited.png`;
}

/** The picture-size options of edit and translate: --size, or --width with --height, and --fit. */
export function imageSizeArgs(values: Record<string, unknown>): { size?: number; width?: number; height?: number; fit: ImageFitMode; given: boolean } {
  const side = (name: string): number | undefined => {
    const v = num(values, name, { min: 8, integer: true });
    if (v !== undefined && v % 8 !== 0) throw new CliError(`--${name} must be a multiple of 8, got ${v}`);
    return v;
  };
  const size = side('size');
  const width = side('width');
  const height = side('height');
  if (size !== undefined && (width !== undefined || height !== undefined)) throw new CliError('give --size, or --width and --height, not both');
  if ((width === undefined) !== (height === undefined)) throw new CliError('give --width and --height together');
  const fit = str(values, 'fit') ?? 'crop';
  if (!['crop', 'pad', 'stretch'].includes(fit)) throw new CliError(`--fit must be crop, pad or stretch, got '${fit}'`);
  return { size, width, height, fit: fit as ImageFitMode, given: size !== undefined || width !== undefined };
}

/** One line saying what was done to the picture: its size, the part kept, the resize and padding. */
export function describeFit(file: string, f: ImageFit): string {
  const from = `${path.basename(file)} ${f.sourceWidth}×${f.sourceHeight}`;
  if (f.fit === 'pad') {
    const padded = f.resizedWidth !== f.width || f.resizedHeight !== f.height;
    return `${from} → resized to ${f.resizedWidth}×${f.resizedHeight}${padded ? `, padded with white to ${f.width}×${f.height}` : ''}`;
  }
  if (f.fit === 'stretch') return `${from} → stretched to ${f.width}×${f.height}`;
  const c = f.crop;
  const cropped = c.width !== f.sourceWidth || c.height !== f.sourceHeight;
  if (cropped) {
    return `${from} → centre crop ${c.width}×${c.height} at (${c.left}, ${c.top}), resized to ${f.width}×${f.height} (--fit pad or stretch keeps the whole picture)`;
  }
  return f.width === f.sourceWidth && f.height === f.sourceHeight ? `${from}, used as is` : `${from} → resized to ${f.width}×${f.height}`;
}

/** `loadImageForEdit` for the CLI, reporting the fit. */
export async function prepareImage(image: string, opts: LoadImageForEditOptions, io: CliIO | null): Promise<tf.Tensor4D> {
  return loadImageForEdit(image, { ...opts, onFit: io ? (f) => io.err(`image: ${describeFit(image, f)}`) : undefined });
}

/**
 * Decodes and checks the input picture before the model loads (a slow load must not precede "not a picture" or
 * "too small"): with a size given, the prepared picture itself; else a probe at 64 px, the smallest size the
 * short side must have whatever the model (the caller prepares it again at the model's size).
 */
export async function preparePictureEarly(image: string, sizes: ReturnType<typeof imageSizeArgs>, io: CliIO): Promise<tf.Tensor4D | null> {
  const { size, width, height, fit, given } = sizes;
  if (given) return prepareImage(image, width !== undefined ? { width, height: height!, fit } : { size, fit }, io);
  (await prepareImage(image, { size: 64, fit }, null)).dispose();
  return null;
}

/** Warns once per prompt the text encoder cannot read whole: how many tokens are dropped, and where the cut falls. */
export function warnTruncated(sd: StableDiffusion, prompts: [string, string][], io: CliIO): void {
  const room = sd.tokenizer.maxLength - 2;
  for (const [what, text] of prompts) {
    const toks = sd.tokenizer.tokenize(text);
    if (toks.length <= room) continue;
    const dropped = sd.tokenizer.decode(toks.slice(room));
    const shown = dropped.length > 60 ? `${dropped.slice(0, 60)}…` : dropped;
    io.err(`warning: ${what} is ${toks.length} tokens; the text encoder reads ${room}: the last ${toks.length - room} are dropped, from "${shown}"`);
  }
}
