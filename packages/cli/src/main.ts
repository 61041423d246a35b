import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, BackendName } from '@ddsjs/nn';
import { loadStableDiffusion, StableDiffusion, loadImageForEdit, writeImage, imageStrip, inspectModel } from '@ddsjs/sd';
import { editImage } from '@ddsjs/dds';
import { defaultModelDir } from '@ddsjs/toy-shapes';
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
    steps: { type: 'string', arg: 'N', help: 'optimisation steps', default: '200' },
    lr: { type: 'string', arg: 'X', help: 'SGD learning rate', default: '0.1' },
    guidance: { type: 'string', arg: 'X', help: 'classifier-free guidance scale', default: '7.5' },
    seed: { type: 'string', arg: 'N', help: 'random seed (timesteps and noise)', default: '0' },
    size: { type: 'string', arg: 'PX', help: 'centre-crop and resize the picture to PX×PX (multiple of 8)', default: '512' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output PNG (default: <image>-edited.png)' },
    'save-every': { type: 'string', arg: 'N', help: 'also write a strip of the edit every N steps (<out>-steps.png)' },
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
    steps: { type: 'string', arg: 'N', help: 'DDIM steps', default: '50' },
    guidance: { type: 'string', arg: 'X', help: 'classifier-free guidance scale', default: '7.5' },
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

const COMMANDS = [EDIT, GENERATE, INSPECT];

function mainHelp(): string {
  return [
    'Usage: dds <command> [options]',
    '',
    'Score-distillation image editing with Stable Diffusion on TensorFlow.js.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(10)}${c.summary}`),
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

function resolveModel(values: Record<string, unknown>): string {
  const m = str(values, 'model');
  if (m !== undefined) {
    if (!fs.existsSync(m)) throw new CliError(`model not found: ${m}`);
    return m;
  }
  const d = defaultModelDir();
  if (!d) throw new CliError('no --model given and the embedded default model (@ddsjs/toy-shapes) is not installed');
  return d;
}

function checkWritable(file: string, force: boolean): void {
  if (fs.existsSync(file) && !force) throw new CliError(`${file} exists; pass --force to overwrite it`);
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new CliError(`output folder does not exist: ${dir}`);
}

async function setup(values: Record<string, unknown>, io: CliIO): Promise<StableDiffusion> {
  const backend = str(values, 'backend') ?? 'auto';
  if (!BACKENDS.includes(backend)) throw new CliError(`--backend must be one of ${BACKENDS.join(', ')}, got '${backend}'`);
  const variant = str(values, 'variant');
  if (variant !== undefined && variant !== 'fp16') throw new CliError(`--variant must be 'fp16', got '${variant}'`);
  const modelPath = resolveModel(values);
  const used = await initBackend(backend as BackendName);
  io.err(`backend: ${used}`);
  const t0 = Date.now();
  let bar: Progress | null = null;
  const sd = await loadStableDiffusion(modelPath, {
    variant: variant as 'fp16' | undefined,
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
  const steps = num(values, 'steps', { min: 1, integer: true })!;
  const lr = num(values, 'lr', { min: 0 })!;
  const guidance = num(values, 'guidance', { min: 0 })!;
  const seed = num(values, 'seed', { integer: true, min: 0 })!;
  const size = num(values, 'size', { min: 8, integer: true })!;
  if (size % 8 !== 0) throw new CliError(`--size must be a multiple of 8, got ${size}`);
  const saveEvery = num(values, 'save-every', { min: 1, integer: true });
  const force = Boolean(values.force);
  const out = str(values, 'out') ?? defaultEditOut(image);
  const stripOut = out.replace(/(\.png)?$/i, '-steps.png');
  checkWritable(out, force);
  if (saveEvery) checkWritable(stripOut, force);

  const sd = await setup(values, io);
  try {
    const input = await loadImageForEdit(image, { size }).catch((e: Error) => {
      throw new CliError(e.message);
    });
    const frames: tf.Tensor4D[] = [];
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
          if (saveEvery && ((step + 1) % saveEvery === 0 || step === 0)) frames.push(sd.decodeLatents(latent));
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

async function runGenerate(argv: string[], io: CliIO): Promise<void> {
  const { values, positionals, help } = parseCommand(GENERATE, argv);
  if (help) return io.out(commandHelp(GENERATE));
  if (positionals.length !== 1) throw new CliError('generate takes exactly one prompt (quote it)');
  const prompt = positionals[0];
  const steps = num(values, 'steps', { min: 1, max: 1000, integer: true })!;
  const guidance = num(values, 'guidance', { min: 0 })!;
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
  const modelPath = resolveModel(values);
  const text = await inspectModel(modelPath, { variant: str(values, 'variant') as 'fp16' | undefined });
  io.out(text);
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
    else throw new CliError(`unknown command '${cmd}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    return 0;
  } catch (e) {
    const err = e as Error;
    if (process.env.DDSJS_DEBUG) io.err(err.stack ?? String(err));
    io.err(`dds: error: ${(err?.message ?? String(e)).split('\n').join(' ')}`);
    return e instanceof CliError ? 2 : 1;
  }
}
