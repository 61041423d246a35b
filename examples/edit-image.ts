// Edit a picture with Delta Denoising Score: the shortest complete program.
//   npm run example -- examples/edit-image.ts      (the embedded toy model: red circle -> green circle, about 15 s)
//   npm run example -- examples/edit-image.ts --model path/to/stable-diffusion-v1-5 --image cat.jpg --size 512 \
//       --source "a photo of a cat" --target "a photo of a tiger"
import * as tf from '@tensorflow/tfjs';
import { writeImage } from '@ddsjs/sd';
import { editImage } from '@ddsjs/dds';
import { exampleBackend, exampleArgs, exampleInput, exampleModel, runExample } from './common';

async function main() {
  const args = exampleArgs({ steps: 200, out: 'edit-image.png' }, 'edit-image.ts');
  await exampleBackend(args);
  const sd = await exampleModel(args);
  const input = await exampleInput(args);
  const { image, latent } = await editImage(sd, input, {
    source: args.source,
    target: args.target,
    steps: args.steps,
    seed: args.seed,
    onStep: ({ step, steps, timestep, loss }) => {
      if ((step + 1) % 10 === 0 || step + 1 === steps) console.error(`step ${step + 1}/${steps} t=${timestep} loss=${loss.toExponential(3)}`);
    },
  });
  await writeImage(image, args.out, { overwrite: true });
  console.log(`wrote ${args.out}`);
  tf.dispose([input, image, latent]);
  sd.dispose();
}
runExample(main);
