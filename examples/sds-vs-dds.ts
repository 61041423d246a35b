// The paper's comparison: the same picture edited with SDS and with DDS (same steps, learning rate and seed), side by
// side in one strip: input | SDS | DDS.
//   npx ts-node examples/sds-vs-dds.ts [--model DIR] [--image FILE --size 512] [--steps 200]
import * as tf from '@tensorflow/tfjs';
import { writeImage } from '@ddsjs/sd';
import { imageStrip } from '@ddsjs/sd/internals';
import { editImage } from '@ddsjs/dds';
import { exampleBackend, exampleArgs, exampleInput, exampleModel, runExample } from './common';

async function main() {
  const args = exampleArgs({ steps: 200, out: 'sds-vs-dds.png' }, 'sds-vs-dds.ts');
  await exampleBackend(args);
  const sd = await exampleModel(args);
  const input = await exampleInput(args);
  const prompts = { source: args.source, target: args.target };
  const results = [];
  for (const method of ['sds', 'dds'] as const) {
    const r = await editImage(sd, input, { ...prompts, method, steps: args.steps, seed: args.seed });
    console.error(`${method}: final loss ${r.losses[r.losses.length - 1]?.toExponential(3)}`);
    r.latent.dispose();
    results.push(r.image);
  }
  const before = tf.tidy(() => tf.add(tf.mul(input, 0.5), 0.5) as tf.Tensor4D);
  const strip = imageStrip([before, ...results]);
  await writeImage(strip, args.out, { overwrite: true });
  console.log(`wrote ${args.out} (input | SDS | DDS)`);
  tf.dispose([input, before, strip, ...results]);
  sd.dispose();
}
runExample(main);
