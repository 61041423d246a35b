// Shared argument handling of the examples (not part of the library).
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { type StableDiffusion, loadImageForEdit, loadStableDiffusion } from '@ddsjs/sd';
import { defaultModel } from '@ddsjs/toy-shapes';

/**
 * Parses the examples' common flags: --model (default: the embedded toy model), --image (default: its red circle),
 * --source / --target prompts (default: red circle → green circle on white), --steps, --size, --out, --seed.
 */
export function exampleArgs(defaults: { steps: number; out: string }) {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      image: { type: 'string', default: path.join(__dirname, 'assets', 'red-circle.png') },
      source: { type: 'string', default: 'a red circle on a white background' },
      target: { type: 'string', default: 'a green circle on a white background' },
      steps: { type: 'string', default: String(defaults.steps) },
      size: { type: 'string', default: '64' },
      out: { type: 'string', default: defaults.out },
      seed: { type: 'string', default: '0' },
    },
  });
  return {
    model: values.model,
    image: values.image,
    source: values.source!,
    target: values.target!,
    steps: Number(values.steps),
    size: Number(values.size),
    out: values.out!,
    seed: Number(values.seed),
  };
}

/** The picture to edit, [1,size,size,3] in [-1,1]: `--image` prepared like the notebook's load_512, else seeded noise. */
export async function exampleInput(args: { image?: string; size: number }): Promise<tf.Tensor4D> {
  if (args.image) return loadImageForEdit(args.image, { size: args.size });
  return tf.randomUniform([1, args.size, args.size, 3], -1, 1, 'float32', 7) as tf.Tensor4D;
}

/** The model of `--model`, else the embedded toy model (fp16), else the tiny random fixture. The caller disposes it. */
export async function exampleModel(args: { model?: string }): Promise<StableDiffusion> {
  if (args.model) return loadStableDiffusion(args.model);
  const toy = defaultModel();
  if (toy) return loadStableDiffusion(toy.dir, { variant: toy.variant });
  return loadStableDiffusion(path.join(__dirname, '..', 'fixtures', 'tiny-sd15'));
}
