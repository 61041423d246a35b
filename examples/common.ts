// Shared argument handling of the examples (not part of the library).
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { initBackend, modelWeightBytes } from '@ddsjs/nn';
import { type StableDiffusion, loadImageForEdit, loadStableDiffusion } from '@ddsjs/sd';
import { defaultModel } from '@ddsjs/toy-shapes';

/** A one-line error of the examples' flags (printed without a stack trace by {@link runExample}). */
export class ExampleUsageError extends Error {}

/**
 * Parses the examples' common flags: --model (default: the embedded toy model), --image (default: its red circle),
 * --source / --target prompts (default: red circle → green circle on white), --steps, --size, --out, --seed, and
 * --help (prints the usage of `name` and exits). Bad flags or numbers throw an {@link ExampleUsageError}.
 */
export function exampleArgs(defaults: { steps: number; out: string }, name = 'example.ts') {
  const options = {
    model: { type: 'string', help: 'diffusers folder or single-file checkpoint (default: the embedded toy model)' },
    image: { type: 'string', default: path.join(__dirname, 'assets', 'red-circle.png'), help: 'input picture' },
    source: { type: 'string', default: 'a red circle on a white background', help: 'prompt describing the picture' },
    target: { type: 'string', default: 'a green circle on a white background', help: 'prompt describing the edit' },
    steps: { type: 'string', default: String(defaults.steps), help: 'optimisation steps' },
    size: { type: 'string', default: '64', help: 'picture size in pixels, a multiple of 8' },
    out: { type: 'string', default: defaults.out, help: 'output picture' },
    seed: { type: 'string', default: '0', help: 'random seed' },
    help: { type: 'boolean', short: 'h', help: 'show this help' },
  } as const;
  let values;
  try {
    ({ values } = parseArgs({ options }));
  } catch (e) {
    throw new ExampleUsageError(`${(e as Error).message.split('\n')[0]} (see ${name} --help)`);
  }
  if (values.help) {
    const lines = Object.entries(options).map(([k, o]) => `  --${k.padEnd(8)} ${o.help}${'default' in o ? ` (default: ${path.relative(process.cwd(), String(o.default)) || o.default})` : ''}`);
    console.log([`Usage: npm run example -- examples/${name} [options]`, '', 'Options:', ...lines].join('\n'));
    process.exit(0);
  }
  const int = (flag: string, v: string, min: number): number => {
    if (!/^\d+$/.test(v) || Number(v) < min) throw new ExampleUsageError(`--${flag} must be an integer ≥ ${min}, got '${v}'`);
    return Number(v);
  };
  const size = int('size', values.size!, 8);
  if (size % 8 !== 0) throw new ExampleUsageError(`--size must be a multiple of 8, got ${size}`);
  return {
    model: values.model,
    image: values.image,
    source: values.source!,
    target: values.target!,
    steps: int('steps', values.steps!, 1),
    size,
    out: values.out!,
    seed: int('seed', values.seed!, 0),
  };
}

/** Runs an example's `main`: an error becomes one line on stderr (the stack with DDSJS_DEBUG=1) and exit code 1 (2 for bad flags). */
export function runExample(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    if (process.env.DDSJS_DEBUG) console.error(e);
    console.error(`error: ${(e as Error)?.message ?? String(e)}`);
    process.exitCode = e instanceof ExampleUsageError ? 2 : 1;
  });
}

/** The picture to edit, [1,size,size,3] in [-1,1]: `--image` prepared like the notebook's load_512, else seeded noise. */
export async function exampleInput(args: { image?: string; size: number }): Promise<tf.Tensor4D> {
  if (args.image) return loadImageForEdit(args.image, { size: args.size });
  return tf.randomUniform([1, args.size, args.size, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
}

/** The model of `--model`, else the embedded toy model (fp16), else the tiny random fixture. The caller disposes it. */
/** The model an example loads: `--model`, else the embedded toy model, else the tiny fixture model. */
function exampleModelPath(args: { model?: string }): { dir: string; variant?: 'fp16' } {
  if (args.model) return { dir: args.model };
  const toy = defaultModel();
  if (toy) return { dir: toy.dir, variant: toy.variant };
  return { dir: path.join(__dirname, '..', 'fixtures', 'tiny-sd15') };
}

/** Starts the backend `auto` picks for the example's model (by its weights' size, as the CLI does); returns its name. */
export async function exampleBackend(args: { model?: string }): Promise<string> {
  const { dir, variant } = exampleModelPath(args);
  return initBackend('auto', { modelBytes: modelWeightBytes(dir, variant) });
}

/** Loads the example's model (see {@link exampleBackend} for which). */
export async function exampleModel(args: { model?: string }): Promise<StableDiffusion> {
  const { dir, variant } = exampleModelPath(args);
  return loadStableDiffusion(dir, variant ? { variant } : {});
}
