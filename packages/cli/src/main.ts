import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, BackendName, modelWeightBytes } from '@ddsjs/nn';
import {
  checkOutputPath,
  inspect,
  loadImageForEdit,
  loadStableDiffusion,
  resolveGenerateDefaults,
  StableDiffusion,
  writeImage,
} from '@ddsjs/sd';
import {
  IMAGE_EXTENSIONS,
  ImageFit,
  ImageFitMode,
  imageStrip,
  LoadImageForEditOptions,
} from '@ddsjs/sd/internals';
import { editImage, EDIT_METHODS, EditMethod, resolveEditDefaults, listTranslatorImages, loadTranslator, readTranslatorMeta, trainTranslator, Translator, TRANSLATOR_FILES } from '@ddsjs/dds';
import { defaultModel, defaultTranslatorDir } from '@ddsjs/toy-shapes';
import { CliError, CommandSpec, commandHelp, parseCommand, num, str, MAX_SEED } from './args';
import { Progress } from './progress';
import { exitCodeFor, userMessage } from './errors';

const BACKENDS = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'];

/** The version of @ddsjs/cli (its package.json, one folder above dist/ and src/). */
const VERSION: string = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;

const common: CommandSpec['options'] = {
  model: { type: 'string', arg: 'DIR|FILE', help: 'diffusers folder or single-file checkpoint (default: the embedded toy model)' },
  variant: { type: 'string', arg: 'fp16', help: 'load the *.fp16.safetensors variant of a diffusers folder' },
  backend: { type: 'string', arg: 'NAME', help: `tfjs backend: ${BACKENDS.join('|')}`, default: 'auto' },
};

/** `dds edit`. */
export const EDIT: CommandSpec = {
  name: 'edit',
  summary: 'Edit a picture towards a target prompt with Delta Denoising Score (or SDS), and write a PNG.',
  usage: 'dds edit --image IN --source "what the picture shows" --target "what it should show" [options]',
  options: {
    image: { type: 'string', short: 'i', arg: 'FILE', help: 'input picture (JPEG, PNG or WebP)' },
    source: { type: 'string', arg: 'TEXT', help: 'prompt describing the input picture' },
    target: { type: 'string', arg: 'TEXT', help: 'prompt describing the edited picture' },
    ...common,
    method: { type: 'string', arg: EDIT_METHODS.join('|'), help: 'score to optimise, or flowedit (defaults per method: docs/scores.md)', default: 'dds' },
    mask: { type: 'string', arg: 'FILE', help: 'edit only where this picture is white (black = keep; cropped and resized as the image)' },
    steps: { type: 'string', arg: 'N', help: "optimisation steps (default: the model's ddsjs_defaults.json, else the method's; printed at the start)" },
    lr: { type: 'string', arg: 'X', help: "SGD learning rate (default: the model's ddsjs_defaults.json, else the method's; printed at the start)" },
    guidance: { type: 'string', arg: 'X', help: "classifier-free guidance scale (default: the model's ddsjs_defaults.json, else the method's; printed at the start)" },
    seed: { type: 'string', arg: 'N', help: 'random seed (timesteps and noise)', default: '0' },
    size: { type: 'string', arg: 'PX', help: "edit at PX×PX (multiple of 8; default: the model's native size, as diffusers)" },
    width: { type: 'string', arg: 'PX', help: 'edit at this width (multiple of 8; with --height)' },
    height: { type: 'string', arg: 'PX', help: 'edit at this height (multiple of 8; with --width)' },
    fit: { type: 'string', arg: 'crop|pad|stretch', help: 'how the picture meets that size: centre crop, pad with white, or stretch', default: 'crop' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output picture, .png/.jpg/.webp (default: <image>-edited.png)' },
    'save-every': { type: 'string', arg: 'N', help: 'also write a strip: the input, then the edit every N steps (<out>-steps.<ext>), updated as it goes' },
    'save-on-interrupt': { type: 'boolean', help: 'on Ctrl-C, write the edit reached so far to --out' },
    force: { type: 'boolean', short: 'f', help: 'overwrite existing output files' },
  },
};

/** `dds generate`. */
export const GENERATE: CommandSpec = {
  name: 'generate',
  summary: 'Generate a picture from a prompt with DDIM sampling and classifier-free guidance.',
  usage: 'dds generate "PROMPT" [options]',
  positionals: true,
  options: {
    ...common,
    negative: { type: 'string', arg: 'TEXT', help: 'negative prompt', default: '' },
    steps: { type: 'string', arg: 'N', help: "DDIM steps (default: the model's ddsjs_defaults.json, else diffusers'; printed at the start)" },
    guidance: { type: 'string', arg: 'X', help: "classifier-free guidance scale (default: the model's ddsjs_defaults.json, else diffusers'; printed at the start)" },
    seed: { type: 'string', arg: 'N', help: 'random seed (picture i of --num-images uses seed + i)', default: '0' },
    'num-images': { type: 'string', arg: 'N', help: 'pictures to generate (written as <out>-1, <out>-2, …)', default: '1' },
    height: { type: 'string', arg: 'PX', help: 'height in pixels (default: the model sample size)' },
    width: { type: 'string', arg: 'PX', help: 'width in pixels (default: the model sample size)' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output picture, .png/.jpg/.webp', default: 'generated.png' },
    force: { type: 'boolean', short: 'f', help: 'overwrite existing output files' },
  },
};

/** `dds inspect`. */
export const INSPECT: CommandSpec = {
  name: 'inspect',
  summary: 'Describe a Stable Diffusion model folder or checkpoint: components, architecture, parameter counts.',
  usage: 'dds inspect [--model DIR|FILE] [--all]',
  options: { model: common.model, variant: common.variant, all: { type: 'boolean', help: 'list every tensor of a .safetensors file' } },
};

/** `dds train-translator`. */
export const TRAIN_TRANSLATOR: CommandSpec = {
  name: 'train-translator',
  summary: 'Train a network that edits a picture in one pass (DDS paper, Section 5), with DDS as its only signal.',
  usage: 'dds train-translator --source "TEXT" --target "TEXT" [--target "TEXT" …] (--images DIR | --generate N) [options]',
  options: {
    source: { type: 'string', arg: 'TEXT', help: 'prompt describing the training pictures' },
    target: { type: 'string', multiple: true, arg: 'TEXT', help: 'prompt of a task to learn (repeat for several tasks)' },
    images: { type: 'string', arg: 'DIR', help: 'folder of training pictures (all showing --source)' },
    generate: { type: 'string', arg: 'N', help: 'instead, generate N training pictures from --source with the model' },
    ...common,
    steps: { type: 'string', arg: 'N', help: 'training steps (in all, resumed steps included)', default: '1000' },
    batch: { type: 'string', arg: 'N', help: 'pictures per step', default: '1' },
    lr: { type: 'string', arg: 'X', help: 'Adam learning rate', default: '1e-5' },
    guidance: { type: 'string', arg: 'X', help: 'classifier-free guidance scale of the DDS teacher', default: '7.5' },
    seed: { type: 'string', arg: 'N', help: 'random seed (initialisation, data order, timesteps and noise)', default: '0' },
    size: { type: 'string', arg: 'PX', help: 'training picture size, multiple of 8 (default: the model sample size)' },
    cycle: { type: 'string', arg: 'W', help: 'weight of the cycle-consistency regulariser', default: '0' },
    identity: { type: 'string', arg: 'W', help: 'weight of the identity regulariser', default: '0' },
    'gen-steps': { type: 'string', arg: 'N', help: 'DDIM steps per generated picture', default: '50' },
    cache: { type: 'string', arg: 'DIR', help: 'cache of generated latents (default: <out>/data-cache)' },
    'checkpoint-every': { type: 'string', arg: 'N', help: 'write a checkpoint to --out every N steps', default: '100' },
    out: { type: 'string', short: 'o', arg: 'DIR', help: 'translator folder (resumed when it holds a checkpoint)', default: 'translator' },
    force: { type: 'boolean', short: 'f', help: 'start over, replacing a translator in --out' },
  },
};

/** `dds translate`. */
export const TRANSLATE: CommandSpec = {
  name: 'translate',
  summary: 'Edit a picture in one forward pass with a trained translator (dds train-translator), and write a PNG.',
  usage: 'dds translate [--translator DIR] --image IN --task "target prompt" [options]',
  options: {
    translator: {
      type: 'string',
      short: 't',
      arg: 'DIR',
      help: 'translator folder (dds train-translator --out; default: the toy translator shipped with the embedded model)',
    },
    image: { type: 'string', short: 'i', arg: 'FILE', help: 'input picture (JPEG, PNG or WebP)' },
    task: { type: 'string', arg: 'TEXT', help: 'target prompt of the task to run (one the translator was trained on)' },
    model: {
      type: 'string',
      arg: 'DIR|FILE',
      help: "the translator's teacher, for its VAE (default: the model it was trained with when found, else the embedded toy model)",
    },
    variant: common.variant,
    backend: common.backend,
    size: { type: 'string', arg: 'PX', help: 'translate at PX×PX (multiple of 8; default: the training size)' },
    width: { type: 'string', arg: 'PX', help: 'translate at this width (multiple of 8; with --height)' },
    height: { type: 'string', arg: 'PX', help: 'translate at this height (multiple of 8; with --width)' },
    fit: EDIT.options.fit,
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output picture, .png/.jpg/.webp (default: <image>-translated.png)' },
    force: { type: 'boolean', short: 'f', help: 'overwrite an existing output file' },
  },
};

const COMMANDS = [EDIT, GENERATE, INSPECT, TRAIN_TRANSLATOR, TRANSLATE];

function mainHelp(): string {
  return [
    'Usage: dds <command> [options]',
    '',
    'Score-distillation image editing with Stable Diffusion on TensorFlow.js.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(Math.max(...COMMANDS.map((k) => k.name.length)) + 2)}${c.summary}`),
    '',
    'Run `dds <command> --help` for the options of a command; `dds --version` prints the version.',
  ].join('\n');
}

/** The I/O a command writes to (replaceable in tests). */
export interface CliIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

const defaultIO: CliIO = {
  out: (l) => process.stdout.write(l + '\n'),
  err: (l) => process.stderr.write(l + '\n'),
};

/** The model path and weights variant: `--model` (with `--variant`), else the embedded toy model (fp16 variant). */
function resolveModel(values: Record<string, unknown>): { path: string; variant: 'fp16' | undefined } {
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
function checkOutput(file: string, force: boolean, inputs: string[] = [], kind: 'file' | 'folder' = 'file'): void {
  checkOutputPath(file, { kind, force, inputs, extensions: kind === 'file' ? IMAGE_EXTENSIONS : undefined });
}

/** `--backend`: validated, then the backend started (before anything that makes tensors). */
async function startBackend(values: Record<string, unknown>, io: CliIO): Promise<void> {
  const backend = str(values, 'backend') ?? 'auto';
  if (!BACKENDS.includes(backend)) throw new CliError(`--backend must be one of ${BACKENDS.join(', ')}, got '${backend}'`);
  const { path: modelPath, variant } = resolveModel(values);
  const used = await initBackend(backend as BackendName, { modelBytes: modelWeightBytes(modelPath, variant) });
  io.err(`backend: ${used}`);
}

/** {@link loadModel}, disposing `pending` (a picture prepared before the load) when the load fails. */
async function loadModelDisposing(model: { path: string; variant: 'fp16' | undefined }, io: CliIO, pending: tf.Tensor | null): Promise<StableDiffusion> {
  try {
    return await loadModel(model, io);
  } catch (e) {
    pending?.dispose();
    throw e;
  }
}

async function loadModel(model: { path: string; variant: 'fp16' | undefined }, io: CliIO): Promise<StableDiffusion> {
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
function withSuffix(file: string, suffix: string): string {
  const ext = path.extname(file);
  return file.slice(0, file.length - ext.length) + suffix + ext;
}

function defaultEditOut(image: string): string {
  const ext = path.extname(image);
  return `${path.basename(image, ext)}-edited.png`;
}

/** The picture-size options of edit and translate: --size, or --width with --height, and --fit. */
function imageSizeArgs(values: Record<string, unknown>): { size?: number; width?: number; height?: number; fit: ImageFitMode; given: boolean } {
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
function describeFit(file: string, f: ImageFit): string {
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
async function prepareImage(image: string, opts: LoadImageForEditOptions, io: CliIO | null): Promise<tf.Tensor4D> {
  return loadImageForEdit(image, { ...opts, onFit: io ? (f) => io.err(`image: ${describeFit(image, f)}`) : undefined });
}

/**
 * Decodes and checks the input picture before the model loads (a slow load must not precede "not a picture" or
 * "too small"): with a size given, the prepared picture itself; else a probe at 64 px, the smallest size the
 * short side must have whatever the model (the caller prepares it again at the model's size).
 */
async function preparePictureEarly(image: string, sizes: ReturnType<typeof imageSizeArgs>, io: CliIO): Promise<tf.Tensor4D | null> {
  const { size, width, height, fit, given } = sizes;
  if (given) return prepareImage(image, width !== undefined ? { width, height: height!, fit } : { size, fit }, io);
  (await prepareImage(image, { size: 64, fit }, null)).dispose();
  return null;
}

/** Warns once per prompt the text encoder cannot read whole: how many tokens are dropped, and where the cut falls. */
function warnTruncated(sd: StableDiffusion, prompts: [string, string][], io: CliIO): void {
  const room = sd.tokenizer.maxLength - 2;
  for (const [what, text] of prompts) {
    const toks = sd.tokenizer.tokenize(text);
    if (toks.length <= room) continue;
    const dropped = sd.tokenizer.decode(toks.slice(room));
    const shown = dropped.length > 60 ? `${dropped.slice(0, 60)}…` : dropped;
    io.err(`warning: ${what} is ${toks.length} tokens; the text encoder reads ${room}: the last ${toks.length - room} are dropped, from "${shown}"`);
  }
}

async function runEdit(argv: string[], io: CliIO): Promise<number> {
  const { values, help } = parseCommand(EDIT, argv);
  if (help) return io.out(commandHelp(EDIT)), 0;
  const image = str(values, 'image', true)!;
  if (!fs.existsSync(image)) throw new CliError(`image not found: ${image}`);
  const source = str(values, 'source') ?? '';
  const target = str(values, 'target', true)!;
  const method = str(values, 'method') ?? 'dds';
  if (!EDIT_METHODS.includes(method as EditMethod)) throw new CliError(`--method must be one of ${EDIT_METHODS.join(', ')}, got '${method}'`);
  const maskFile = str(values, 'mask');
  if (maskFile !== undefined && !fs.existsSync(maskFile)) throw new CliError(`mask not found: ${maskFile}`);
  const stepsArg = num(values, 'steps', { min: 1, integer: true });
  const lrArg = num(values, 'lr', { above: 0 });
  const guidanceArg = num(values, 'guidance', { min: 0 });
  const seed = num(values, 'seed', { integer: true, min: 0, max: MAX_SEED })!;
  const sizes = imageSizeArgs(values);
  const saveEvery = num(values, 'save-every', { min: 1, integer: true });
  const saveOnInterrupt = Boolean(values['save-on-interrupt']);
  const force = Boolean(values.force);
  const out = str(values, 'out') ?? defaultEditOut(image);
  const inputs = maskFile ? [image, maskFile] : [image];
  checkOutput(out, force, inputs);
  const stripOut = withSuffix(out, '-steps');
  if (saveEvery) checkOutput(stripOut, force, inputs);
  const model = resolveModel(values);

  await startBackend(values, io);
  let input = await preparePictureEarly(image, sizes, io);
  if (maskFile) {
    try {
      // decoded before the model loads, like the picture; prepared at the model's size below
      (await prepareImage(maskFile, { size: 8, minSize: 1 }, null)).dispose();
    } catch (e) {
      input?.dispose();
      throw e;
    }
  }
  const sd = await loadModelDisposing(model, io, input);
  let mask: tf.Tensor4D | undefined;
  const ctrl = new AbortController();
  let stoppedAt = 0;
  const onSigint = () => ctrl.abort();
  process.once('SIGINT', onSigint);
  const frames: tf.Tensor4D[] = [];
  let stripWritten = false;
  try {
    // Options not given: the model's own defaults (its ddsjs_defaults.json), else the library's.
    const settings = resolveEditDefaults(sd, { method: method as EditMethod, steps: stepsArg, lr: lrArg, guidanceScale: guidanceArg });
    const [steps, lr, guidance] = [settings.steps.value, settings.lr.value, settings.guidanceScale.value];
    const fromModel = ([['steps', settings.steps], ['lr', settings.lr], ['guidance', settings.guidanceScale]] as const)
      .filter(([, r]) => r.source === 'model')
      .map(([n]) => n);
    io.err(`${method}: ${steps} steps, lr ${lr}, guidance ${guidance}${fromModel.length ? ` (${fromModel.join(', ')} from ${sd.defaults.file})` : ''}`);
    warnTruncated(sd, [['--source', source], ['--target', target]], io);
    input ??= await prepareImage(image, { model: sd, fit: sizes.fit }, io);
    // White = edit: the mask picture in [0, 1], channel mean, cropped and resized as the picture (the scores
    // average it to the latents).
    if (maskFile) {
      const [h, w] = [input.shape[1], input.shape[2]];
      const m = await prepareImage(maskFile, { width: w, height: h, fit: sizes.fit, minSize: 1 }, null);
      mask = tf.tidy(() => tf.mean(tf.add(tf.mul(m, 0.5), 0.5), 3, true) as tf.Tensor4D);
      m.dispose();
    }
    // The strip starts with the input (before), then every saveEvery-th step, the last being the result (after);
    // it is rewritten at every frame, so that an interrupted run keeps the frames so far.
    if (saveEvery) frames.push(tf.tidy(() => tf.add(tf.mul(input!, 0.5), 0.5) as tf.Tensor4D));
    const writeStrip = async () => {
      const strip = imageStrip(frames);
      try {
        await writeImage(strip, stripOut, { overwrite: force || stripWritten });
        stripWritten = true;
      } finally {
        strip.dispose();
      }
    };
    const bar = new Progress(method, steps, (f) => `t ${f.t} | loss ${f.loss}`);
    const t0 = Date.now();
    let result;
    try {
      result = await editImage(sd, input, {
        source,
        target,
        method: method as EditMethod,
        mask,
        steps,
        lr,
        guidanceScale: guidance,
        seed,
        signal: ctrl.signal,
        onStep: async ({ step, steps: total, timestep, loss, latent }) => {
          stoppedAt = step + 1;
          bar.update(step + 1, { t: timestep, loss: Number.isFinite(loss) ? loss.toExponential(3) : String(loss) });
          if (saveEvery && ((step + 1) % saveEvery === 0 || step + 1 === total)) {
            frames.push(sd.decodeLatents(latent));
            await writeStrip();
          }
        },
      });
    } finally {
      bar.stop();
      input.dispose();
      input = null;
    }
    try {
      if (ctrl.signal.aborted) {
        const kept = saveEvery && stripWritten ? `; kept ${stripOut} (${frames.length} frames)` : '';
        if (saveOnInterrupt) await writeImage(result.image, out, { overwrite: force });
        const res = saveOnInterrupt ? `; wrote the edit so far to ${out}` : `; ${out} not written (--save-on-interrupt writes the edit so far)`;
        io.err(`dds: interrupted: ${method} edit stopped after step ${stoppedAt} of ${steps}${kept}${res}`);
        return 130;
      }
      await writeImage(result.image, out, { overwrite: force });
      io.err(`${method} edit: ${steps} steps in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      io.out(`wrote ${out}`);
      if (saveEvery) io.out(`wrote ${stripOut} (${frames.length} frames, every ${saveEvery} steps)`);
      return 0;
    } finally {
      result.image.dispose();
      result.latent.dispose();
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    input?.dispose();
    mask?.dispose();
    frames.forEach((f) => f.dispose());
    sd.dispose();
  }
}

async function runGenerate(argv: string[], io: CliIO): Promise<void> {
  const { values, positionals, help } = parseCommand(GENERATE, argv);
  if (help) return io.out(commandHelp(GENERATE));
  if (positionals.length !== 1) throw new CliError('generate takes exactly one prompt (quote it)');
  const prompt = positionals[0];
  const stepsArg = num(values, 'steps', { min: 1, max: 1000, integer: true });
  const guidanceArg = num(values, 'guidance', { min: 0 });
  const seed = num(values, 'seed', { integer: true, min: 0, max: MAX_SEED })!;
  const count = num(values, 'num-images', { integer: true, min: 1, max: 1000 })!;
  if (seed + count - 1 > MAX_SEED) throw new CliError(`--seed + --num-images − 1 must be ≤ ${MAX_SEED}, got ${seed + count - 1}`);
  const height = num(values, 'height', { min: 8, integer: true });
  const width = num(values, 'width', { min: 8, integer: true });
  for (const [n, v] of [['height', height], ['width', width]] as const) {
    if (v !== undefined && v % 8 !== 0) throw new CliError(`--${n} must be a multiple of 8, got ${v}`);
  }
  const out = str(values, 'out')!;
  const force = Boolean(values.force);
  const outs = count === 1 ? [out] : Array.from({ length: count }, (_, i) => withSuffix(out, `-${i + 1}`));
  for (const o of outs) checkOutput(o, force);
  const model = resolveModel(values);
  await startBackend(values, io);
  const sd = await loadModel(model, io);
  try {
    // Without --steps / --guidance: the model's own defaults (its ddsjs_defaults.json: the embedded toy model's
    // guidance 3 was chosen on a validation set, 7.5 overshoots its colours), else diffusers' 50 and 7.5.
    const resolved = resolveGenerateDefaults(sd.defaults, { steps: stepsArg, guidanceScale: guidanceArg });
    const [steps, guidance] = [resolved.steps.value, resolved.guidanceScale.value];
    const negative = str(values, 'negative') ?? '';
    io.err(`guidance: ${guidance}`);
    io.err(`seed: ${count === 1 ? seed : `${seed}…${seed + count - 1}`}`);
    warnTruncated(sd, [['the prompt', prompt], ['--negative', negative]], io);
    for (let i = 0; i < count; i++) {
      const bar = new Progress(count === 1 ? 'ddim' : `ddim #${i + 1}`, steps, (f) => `t ${f.t}`);
      const t0 = Date.now();
      let image: tf.Tensor4D;
      try {
        const r = await sd.generate(prompt, {
          steps,
          guidanceScale: guidance,
          negativePrompt: negative,
          seed: seed + i,
          height,
          width,
          onStep: ({ step, timestep }) => bar.update(step + 1, { t: timestep }),
        });
        r.latents.dispose();
        image = r.image;
      } finally {
        bar.stop();
      }
      try {
        await writeImage(image, outs[i], { overwrite: force });
      } finally {
        image.dispose();
      }
      io.err(`generated in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      io.out(`wrote ${outs[i]} (seed ${seed + i})`);
    }
  } finally {
    sd.dispose();
  }
}

async function runInspect(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(INSPECT, argv);
  if (help) return io.out(commandHelp(INSPECT));
  const { path: modelPath, variant } = resolveModel(values);
  const text = await inspect(modelPath, { variant, all: Boolean(values.all) });
  io.out(text);
}

async function runTrainTranslator(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(TRAIN_TRANSLATOR, argv);
  if (help) return io.out(commandHelp(TRAIN_TRANSLATOR));
  const source = str(values, 'source', true)!;
  const targets = values.target as string[] | undefined;
  if (!targets || targets.length === 0) throw new CliError('missing --target (give one per task)');
  if (targets.some((t) => t.trim() === '')) throw new CliError('--target must not be empty');
  const images = str(values, 'images');
  const generate = num(values, 'generate', { min: 1, integer: true });
  if ((images === undefined) === (generate === undefined)) throw new CliError('give exactly one of --images DIR or --generate N');
  if (images !== undefined && (!fs.existsSync(images) || !fs.statSync(images).isDirectory())) throw new CliError(`image folder not found: ${images}`);
  const steps = num(values, 'steps', { min: 0, integer: true })!;
  const batchSize = num(values, 'batch', { min: 1, integer: true })!;
  const lr = num(values, 'lr', { above: 0 })!;
  const guidanceScale = num(values, 'guidance', { min: 0 })!;
  const seed = num(values, 'seed', { integer: true, min: 0, max: MAX_SEED })!;
  const size = num(values, 'size', { min: 8, integer: true });
  if (size !== undefined && size % 8 !== 0) throw new CliError(`--size must be a multiple of 8, got ${size}`);
  const cycleWeight = num(values, 'cycle', { min: 0 })!;
  const identityWeight = num(values, 'identity', { min: 0 })!;
  const genSteps = num(values, 'gen-steps', { min: 1, max: 1000, integer: true })!;
  const checkpointEvery = num(values, 'checkpoint-every', { min: 0, integer: true })!;
  const out = str(values, 'out')!;
  const force = Boolean(values.force);
  const cacheDir = str(values, 'cache') ?? path.join(out, 'data-cache');
  checkOutput(out, force, images !== undefined ? [images] : [], 'folder');
  if (str(values, 'cache') !== undefined) checkOutput(cacheDir, force, images !== undefined ? [images] : [], 'folder');
  let resumeFrom: string | undefined;
  if (fs.existsSync(path.join(out, TRANSLATOR_FILES.meta)) && !force) {
    if (!fs.existsSync(path.join(out, TRANSLATOR_FILES.optimizer))) {
      throw new CliError(`${out} holds a translator without training state; pass --force to replace it`);
    }
    resumeFrom = out;
  }

  const model = resolveModel(values);
  await startBackend(values, io);
  // Every training picture is decoded (and checked for size) before the model loads.
  if (images !== undefined) {
    for (const f of listTranslatorImages(images)) (await prepareImage(path.join(images, f), { size: size ?? 64 }, null)).dispose();
  }
  const sd = await loadModel(model, io);
  let translator: Translator | null = null;
  const ctrl = new AbortController();
  const onSigint = () => {
    io.err('interrupted: stopping after this step (a checkpoint will be written)');
    ctrl.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    warnTruncated(sd, [['--source', source], ...targets.map((t): [string, string] => ['--target', t])], io);
    if (resumeFrom) io.err(`resuming ${out} from step ${readTranslatorMeta(out).training?.step ?? 0}`);
    let dataBar: Progress | null = null;
    let trainBar: Progress | null = null;
    const t0 = Date.now();
    try {
      translator = await trainTranslator(sd, {
        tasks: targets.map((target) => ({ source, target })),
        data: images !== undefined ? { images, prompt: source, size } : { generate: generate!, prompt: source, size, steps: genSteps, cacheDir },
        steps,
        batchSize,
        lr,
        guidanceScale,
        seed,
        cycleWeight,
        identityWeight,
        checkpointDir: out,
        checkpointEvery,
        resumeFrom,
        overwrite: force,
        signal: ctrl.signal,
        onData: ({ kind, done, total }) => {
          dataBar ??= new Progress(kind === 'images' ? 'encoding' : kind === 'generate' ? 'generating' : 'cached', total);
          dataBar.update(done);
          if (done === total) {
            dataBar.stop();
            dataBar = null;
          }
        },
        onStep: ({ step, loss, task, checkpointed }) => {
          trainBar ??= new Progress('train', steps, (f) => `loss ${f.loss} | task ${f.task}${f.ckpt ? ' | checkpoint' : ''}`);
          trainBar.update(step + 1, { loss: loss.toExponential(3), task, ckpt: checkpointed ? 1 : 0 });
        },
      });
    } finally {
      (dataBar as Progress | null)?.stop();
      (trainBar as Progress | null)?.stop();
    }
    const done = translator.stepsDone;
    io.err(`trained ${done} steps in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    if (ctrl.signal.aborted) io.err(`stopped at step ${done} of ${steps}; run the same command again to resume`);
    io.out(`wrote ${out} (${done} steps)`);
  } finally {
    process.removeListener('SIGINT', onSigint);
    translator?.dispose();
    sd.dispose();
  }
}

function defaultTranslateOut(image: string): string {
  const ext = path.extname(image);
  return `${path.basename(image, ext)}-translated.png`;
}

async function runTranslate(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(TRANSLATE, argv);
  if (help) return io.out(commandHelp(TRANSLATE));
  const dir = str(values, 'translator') ?? defaultTranslatorDir();
  if (!dir) throw new CliError('missing --translator (and @ddsjs/toy-shapes ships no default translator)');
  const image = str(values, 'image', true)!;
  const task = str(values, 'task', true)!;
  if (!fs.existsSync(path.join(dir, TRANSLATOR_FILES.meta))) throw new CliError(`not a translator folder (no ${TRANSLATOR_FILES.meta}): ${dir}`);
  if (!fs.existsSync(image)) throw new CliError(`image not found: ${image}`);
  const sizes = imageSizeArgs(values);
  const force = Boolean(values.force);
  const out = str(values, 'out') ?? defaultTranslateOut(image);
  checkOutput(out, force, [image]);
  let meta;
  try {
    meta = readTranslatorMeta(dir);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (!meta.prompts.includes(task)) {
    throw new CliError(`unknown task ${JSON.stringify(task)}; ${dir} was trained for ${meta.tasks.map((t) => JSON.stringify(t.target)).join(', ')}`);
  }
  if (!sizes.given) {
    // The training size (latent shape × 8), else 512.
    const shape = meta.training?.data.shape;
    sizes.size = shape && shape[0] === shape[1] ? shape[0] * 8 : 512;
    sizes.given = true;
  }
  // The teacher's VAE encodes and decodes: --model, else the model the translator was trained with, else the default.
  const modelValues = { ...values };
  const recorded = meta.teacher?.source;
  if (str(values, 'model') === undefined && recorded && fs.existsSync(recorded) && path.resolve(recorded) !== path.resolve(defaultModel()?.dir ?? '')) {
    modelValues.model = recorded;
  }
  const model = resolveModel(modelValues);
  await startBackend(values, io);
  let input = await preparePictureEarly(image, sizes, io);
  const sd = await loadModelDisposing(model, io, input);
  let translator: Translator | null = null;
  try {
    translator = await loadTranslator(dir, sd);
    input ??= await prepareImage(image, { model: sd, fit: sizes.fit }, io);
    const t0 = Date.now();
    let result;
    try {
      result = translator.translateImage(input, task);
    } finally {
      input.dispose();
      input = null;
    }
    try {
      await writeImage(result.image, out, { overwrite: force });
    } finally {
      result.image.dispose();
      result.latent.dispose();
    }
    // The task applied, as the network saw it (issue 26: a task with no effect went unnoticed).
    const applied = meta.tasks.filter((t) => t.target === task);
    io.err(`task: ${applied.length ? applied.map((t) => `${JSON.stringify(t.source)} → ${JSON.stringify(t.target)}`).join(', ') : `${JSON.stringify(task)} (a source prompt: the picture's own domain)`}`);
    io.err(`translated in ${((Date.now() - t0) / 1000).toFixed(2)}s`);
    io.out(`wrote ${out}`);
  } finally {
    input?.dispose();
    translator?.dispose();
    sd.dispose();
  }
}

/**
 * Runs the `dds` command line. Returns the exit code: 0 on success, 2 on a usage or input error (a `CliError`, or a
 * library `DdsError` whose code names the user's input: see errors.ts; printed as one line, no stack trace; set
 * DDSJS_DEBUG=1 for the stack), 1 on an unexpected failure.
 */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      io.out(mainHelp());
      return cmd ? 0 : 2;
    }
    if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
      io.out(`dds ${VERSION}`);
      return 0;
    }
    if (cmd === 'edit') return await runEdit(rest, io);
    else if (cmd === 'generate') await runGenerate(rest, io);
    else if (cmd === 'inspect') await runInspect(rest, io);
    else if (cmd === 'train-translator') await runTrainTranslator(rest, io);
    else if (cmd === 'translate') await runTranslate(rest, io);
    else throw new CliError(`unknown command '${cmd}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    return 0;
  } catch (e) {
    if (process.env.DDSJS_DEBUG) io.err((e as Error)?.stack ?? String(e));
    io.err(`dds: error: ${userMessage(e)}`);
    return exitCodeFor(e);
  }
}
