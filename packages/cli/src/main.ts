import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, BackendName, modelWeightBytes } from '@ddsjs/nn';
import { loadStableDiffusion, StableDiffusion, loadImageForEdit, writeImage, imageStrip, inspectModel } from '@ddsjs/sd';
import { editImage, DEFAULT_EDIT_LR, DEFAULT_EDIT_STEPS, DEFAULT_GUIDANCE_SCALE, loadTranslator, readTranslatorMeta, trainTranslator, Translator, TranslatorDivergedError, TRANSLATOR_FILES } from '@ddsjs/dds';
import { defaultModel, defaultTranslatorDir } from '@ddsjs/toy-shapes';
import { CliError, CommandSpec, commandHelp, parseCommand, num, str } from './args';
import { Progress } from './progress';

const BACKENDS = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'];

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
    method: { type: 'string', arg: 'dds|sds', help: 'score to optimise', default: 'dds' },
    steps: { type: 'string', arg: 'N', help: "optimisation steps (default: the model's ddsjs_defaults.json, else 200)" },
    lr: { type: 'string', arg: 'X', help: "SGD learning rate (default: the model's ddsjs_defaults.json, else 0.1; the embedded model's 0.005)" },
    guidance: { type: 'string', arg: 'X', help: "classifier-free guidance scale (default: the model's ddsjs_defaults.json, else 7.5)" },
    seed: { type: 'string', arg: 'N', help: 'random seed (timesteps and noise)', default: '0' },
    size: { type: 'string', arg: 'PX', help: "centre-crop and resize the picture to PX×PX (multiple of 8; default: the model's native size, as diffusers)" },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output PNG (default: <image>-edited.png)' },
    'save-every': { type: 'string', arg: 'N', help: 'also write a strip: the input, then the edit every N steps (<out>-steps.png)' },
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
    steps: { type: 'string', arg: 'N', help: "DDIM steps (default: the model's ddsjs_defaults.json, else 50)" },
    guidance: { type: 'string', arg: 'X', help: "classifier-free guidance scale (default: the model's ddsjs_defaults.json, else 7.5; the embedded model's 3)" },
    seed: { type: 'string', arg: 'N', help: 'random seed', default: '0' },
    height: { type: 'string', arg: 'PX', help: 'height in pixels (default: the model sample size)' },
    width: { type: 'string', arg: 'PX', help: 'width in pixels (default: the model sample size)' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output PNG', default: 'generated.png' },
    force: { type: 'boolean', short: 'f', help: 'overwrite an existing output file' },
  },
};

/** `dds inspect`. */
export const INSPECT: CommandSpec = {
  name: 'inspect',
  summary: 'Describe a Stable Diffusion model folder or checkpoint: components, architecture, parameter counts.',
  usage: 'dds inspect [--model DIR|FILE]',
  options: { model: common.model, variant: common.variant },
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
    size: { type: 'string', arg: 'PX', help: 'centre-crop and resize the picture to PX×PX (default: the training size)' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output PNG (default: <image>-translated.png)' },
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
    'Run `dds <command> --help` for the options of a command.',
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

function checkWritable(file: string, force: boolean): void {
  if (fs.existsSync(file) && !force) throw new CliError(`${file} exists; pass --force to overwrite it`);
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new CliError(`output folder does not exist: ${dir}`);
}

async function setup(values: Record<string, unknown>, io: CliIO): Promise<StableDiffusion> {
  const backend = str(values, 'backend') ?? 'auto';
  if (!BACKENDS.includes(backend)) throw new CliError(`--backend must be one of ${BACKENDS.join(', ')}, got '${backend}'`);
  const { path: modelPath, variant } = resolveModel(values);
  const used = await initBackend(backend as BackendName, { modelBytes: modelWeightBytes(modelPath, variant) });
  io.err(`backend: ${used}`);
  const t0 = Date.now();
  let bar: Progress | null = null;
  const sd = await loadStableDiffusion(modelPath, {
    variant,
    onProgress: (done, total) => {
      bar ??= new Progress('loading', total);
      bar.update(done);
    },
  });
  (bar as Progress | null)?.stop();
  io.err(`loaded ${modelPath} in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  return sd;
}

function defaultEditOut(image: string): string {
  const ext = path.extname(image);
  return `${path.basename(image, ext)}-edited.png`;
}

async function runEdit(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(EDIT, argv);
  if (help) return io.out(commandHelp(EDIT));
  const image = str(values, 'image', true)!;
  if (!fs.existsSync(image)) throw new CliError(`image not found: ${image}`);
  const source = str(values, 'source') ?? '';
  const target = str(values, 'target', true)!;
  const method = str(values, 'method') ?? 'dds';
  if (method !== 'dds' && method !== 'sds') throw new CliError(`--method must be dds or sds, got '${method}'`);
  const stepsArg = num(values, 'steps', { min: 1, integer: true });
  const lrArg = num(values, 'lr', { min: 0 });
  if (lrArg === 0) throw new CliError('--lr must be > 0');
  const guidanceArg = num(values, 'guidance', { min: 0 });
  const seed = num(values, 'seed', { integer: true, min: 0 })!;
  const sizeArg = num(values, 'size', { min: 8, integer: true });
  if (sizeArg !== undefined && sizeArg % 8 !== 0) throw new CliError(`--size must be a multiple of 8, got ${sizeArg}`);
  const saveEvery = num(values, 'save-every', { min: 1, integer: true });
  const force = Boolean(values.force);
  const out = str(values, 'out') ?? defaultEditOut(image);
  const stripOut = out.replace(/(\.png)?$/i, '-steps.png');
  checkWritable(out, force);
  if (saveEvery) checkWritable(stripOut, force);

  const sd = await setup(values, io);
  try {
    // Options not given: the model's own defaults (its ddsjs_defaults.json), else the DDS notebook's.
    const own = sd.defaults.edit ?? {};
    const steps = stepsArg ?? own.steps ?? DEFAULT_EDIT_STEPS;
    const lr = lrArg ?? own.lr ?? DEFAULT_EDIT_LR;
    const guidance = guidanceArg ?? own.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
    const fromModel = ([['steps', stepsArg, own.steps], ['lr', lrArg, own.lr], ['guidance', guidanceArg, own.guidanceScale]] as const)
      .filter(([, arg, m]) => arg === undefined && m !== undefined)
      .map(([n]) => n);
    io.err(`${method}: ${steps} steps, lr ${lr}, guidance ${guidance}${fromModel.length ? ` (${fromModel.join(', ')} from ${sd.defaults.file})` : ''}`);
    const size = sizeArg ?? nativeSize(sd);
    const input = await loadImageForEdit(image, { size }).catch((e: Error) => {
      throw new CliError(e.message);
    });
    // The strip starts with the input (before), then every saveEvery-th step, the last being the result (after).
    const frames: tf.Tensor4D[] = saveEvery ? [tf.tidy(() => tf.add(tf.mul(input, 0.5), 0.5) as tf.Tensor4D)] : [];
    const bar = new Progress(method, steps, (f) => `t ${f.t} | loss ${f.loss}`);
    const t0 = Date.now();
    let result;
    try {
      result = await editImage(sd, input, {
        source,
        target,
        method,
        steps,
        lr,
        guidanceScale: guidance,
        seed,
        onStep: ({ step, timestep, loss, latent }) => {
          bar.update(step + 1, { t: timestep, loss: Number.isFinite(loss) ? loss.toExponential(3) : String(loss) });
          if (saveEvery && ((step + 1) % saveEvery === 0 || step + 1 === steps)) frames.push(sd.decodeLatents(latent));
        },
      });
    } finally {
      bar.stop();
      input.dispose();
    }
    try {
      await writeImage(result.image, out, { overwrite: force });
      io.err(`${method} edit: ${steps} steps in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      io.out(`wrote ${out}`);
      if (saveEvery) {
        const strip = imageStrip(frames);
        await writeImage(strip, stripOut, { overwrite: force });
        strip.dispose();
        io.out(`wrote ${stripOut} (${frames.length} frames, every ${saveEvery} steps)`);
      }
    } finally {
      result.image.dispose();
      result.latent.dispose();
      frames.forEach((f) => f.dispose());
    }
  } finally {
    sd.dispose();
  }
}

/** The model's native picture size (UNet `sample_size` × the VAE's downscale factor), diffusers' default. */
function nativeSize(sd: StableDiffusion): number {
  return (sd.configs.unet.sampleSize ?? 64) * sd.vaeScaleFactor;
}

async function runGenerate(argv: string[], io: CliIO): Promise<void> {
  const { values, positionals, help } = parseCommand(GENERATE, argv);
  if (help) return io.out(commandHelp(GENERATE));
  if (positionals.length !== 1) throw new CliError('generate takes exactly one prompt (quote it)');
  const prompt = positionals[0];
  const stepsArg = num(values, 'steps', { min: 1, max: 1000, integer: true });
  const guidanceArg = num(values, 'guidance', { min: 0 });
  const seed = num(values, 'seed', { integer: true, min: 0 })!;
  const height = num(values, 'height', { min: 8, integer: true });
  const width = num(values, 'width', { min: 8, integer: true });
  for (const [n, v] of [['height', height], ['width', width]] as const) {
    if (v !== undefined && v % 8 !== 0) throw new CliError(`--${n} must be a multiple of 8, got ${v}`);
  }
  const out = str(values, 'out')!;
  const force = Boolean(values.force);
  checkWritable(out, force);
  const sd = await setup(values, io);
  try {
    // Without --steps / --guidance: the model's own defaults (its ddsjs_defaults.json: the embedded toy model's
    // guidance 3 was chosen on a validation set, 7.5 overshoots its colours), else diffusers' 50 and 7.5.
    const steps = stepsArg ?? sd.defaults.generate?.steps ?? 50;
    const guidance = guidanceArg ?? sd.defaults.generate?.guidanceScale ?? 7.5;
    io.err(`guidance: ${guidance}`);
    const bar = new Progress('ddim', steps, (f) => `t ${f.t}`);
    const t0 = Date.now();
    let image: tf.Tensor4D;
    try {
      const r = await sd.generate(prompt, {
        steps,
        guidanceScale: guidance,
        negativePrompt: str(values, 'negative') ?? '',
        seed,
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
      await writeImage(image, out, { overwrite: force });
    } finally {
      image.dispose();
    }
    io.err(`generated in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    io.out(`wrote ${out}`);
  } finally {
    sd.dispose();
  }
}

async function runInspect(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(INSPECT, argv);
  if (help) return io.out(commandHelp(INSPECT));
  const { path: modelPath, variant } = resolveModel(values);
  const text = await inspectModel(modelPath, { variant });
  io.out(text);
}

/** Library errors that are the user's input (bad options, data, folders) become one-line usage errors. */
function asCliError(e: unknown): unknown {
  if (e instanceof TranslatorDivergedError || e instanceof CliError) return e;
  const m = (e as Error)?.message ?? '';
  return /^(trainTranslator|loadTranslator|createTranslator|Translator[.\w]*|loadImageForEdit): /.test(m) ? new CliError(m) : e;
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
  const lr = num(values, 'lr', { min: 0 })!;
  if (lr === 0) throw new CliError('--lr must be > 0');
  const guidanceScale = num(values, 'guidance', { min: 0 })!;
  const seed = num(values, 'seed', { integer: true, min: 0 })!;
  const size = num(values, 'size', { min: 8, integer: true });
  if (size !== undefined && size % 8 !== 0) throw new CliError(`--size must be a multiple of 8, got ${size}`);
  const cycleWeight = num(values, 'cycle', { min: 0 })!;
  const identityWeight = num(values, 'identity', { min: 0 })!;
  const genSteps = num(values, 'gen-steps', { min: 1, max: 1000, integer: true })!;
  const checkpointEvery = num(values, 'checkpoint-every', { min: 0, integer: true })!;
  const out = str(values, 'out')!;
  const force = Boolean(values.force);
  const cacheDir = str(values, 'cache') ?? path.join(out, 'data-cache');
  if (fs.existsSync(out) && !fs.statSync(out).isDirectory()) throw new CliError(`--out ${out} exists and is not a folder`);
  let resumeFrom: string | undefined;
  if (fs.existsSync(path.join(out, TRANSLATOR_FILES.meta)) && !force) {
    if (!fs.existsSync(path.join(out, TRANSLATOR_FILES.optimizer))) {
      throw new CliError(`${out} holds a translator without training state; pass --force to replace it`);
    }
    resumeFrom = out;
  }

  const sd = await setup(values, io);
  let translator: Translator | null = null;
  const ctrl = new AbortController();
  const onSigint = () => {
    io.err('interrupted: stopping after this step (a checkpoint will be written)');
    ctrl.abort();
  };
  process.once('SIGINT', onSigint);
  try {
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
  } catch (e) {
    throw asCliError(e);
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
  let size = num(values, 'size', { min: 8, integer: true });
  if (size !== undefined && size % 8 !== 0) throw new CliError(`--size must be a multiple of 8, got ${size}`);
  const force = Boolean(values.force);
  const out = str(values, 'out') ?? defaultTranslateOut(image);
  checkWritable(out, force);
  let meta;
  try {
    meta = readTranslatorMeta(dir);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (!meta.prompts.includes(task)) {
    throw new CliError(`unknown task ${JSON.stringify(task)}; ${dir} was trained for ${meta.tasks.map((t) => JSON.stringify(t.target)).join(', ')}`);
  }
  if (size === undefined) {
    const shape = meta.training?.data.shape;
    size = shape && shape[0] === shape[1] ? shape[0] * 8 : 512;
  }
  // The teacher's VAE encodes and decodes: --model, else the model the translator was trained with, else the default.
  const modelValues = { ...values };
  const recorded = meta.teacher?.source;
  if (str(values, 'model') === undefined && recorded && fs.existsSync(recorded) && path.resolve(recorded) !== path.resolve(defaultModel()?.dir ?? '')) {
    modelValues.model = recorded;
  }
  const sd = await setup(modelValues, io);
  let translator: Translator | null = null;
  try {
    translator = await loadTranslator(dir, sd);
    const input = await loadImageForEdit(image, { size });
    const t0 = Date.now();
    let result;
    try {
      result = translator.translateImage(input, task);
    } finally {
      input.dispose();
    }
    try {
      await writeImage(result.image, out, { overwrite: force });
    } finally {
      result.image.dispose();
      result.latent.dispose();
    }
    io.err(`translated in ${((Date.now() - t0) / 1000).toFixed(2)}s`);
    io.out(`wrote ${out}`);
  } catch (e) {
    throw asCliError(e);
  } finally {
    translator?.dispose();
    sd.dispose();
  }
}

/**
 * Runs the `dds` command line. Returns the exit code: 0 on success, 2 on a usage or input error (printed as one
 * line, no stack trace; set DDSJS_DEBUG=1 for the stack), 1 on an unexpected failure.
 */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      io.out(mainHelp());
      return cmd ? 0 : 2;
    }
    if (cmd === 'edit') await runEdit(rest, io);
    else if (cmd === 'generate') await runGenerate(rest, io);
    else if (cmd === 'inspect') await runInspect(rest, io);
    else if (cmd === 'train-translator') await runTrainTranslator(rest, io);
    else if (cmd === 'translate') await runTranslate(rest, io);
    else throw new CliError(`unknown command '${cmd}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    return 0;
  } catch (e) {
    const err = e as Error;
    if (process.env.DDSJS_DEBUG) io.err(err.stack ?? String(err));
    io.err(`dds: error: ${(err?.message ?? String(e)).split('\n').join(' ')}`);
    return e instanceof CliError ? 2 : 1;
  }
}
