// Shared argument handling of the examples (not part of the library).
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { loadImageForEdit } from '@ddsjs/sd';

/** Parses the examples' common flags: --model, --image, --steps, --size, --out, --seed. */
export function exampleArgs(defaults: { steps: number; out: string }) {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: path.join(__dirname, '..', 'fixtures', 'tiny-sd15') },
      image: { type: 'string' },
      steps: { type: 'string', default: String(defaults.steps) },
      size: { type: 'string', default: '64' },
      out: { type: 'string', default: defaults.out },
      seed: { type: 'string', default: '0' },
    },
  });
  return {
    model: values.model!,
    image: values.image,
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
