// Edit a picture with Delta Denoising Score: the shortest complete program.
//   npx ts-node examples/edit-image.ts --model path/to/stable-diffusion-v1-5 --image cat.jpg --size 512 --steps 200
// (defaults: the tiny fixture model and a generated picture, so it runs anywhere in seconds)
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { loadStableDiffusion, writeImage } from '@ddsjs/sd';
import { editImage } from '@ddsjs/dds';
import { exampleArgs, exampleInput } from './common';

async function main() {
  const args = exampleArgs({ steps: 20, out: 'edit-image.png' });
  await initBackend();
  const sd = await loadStableDiffusion(args.model);
  const input = await exampleInput(args);
  const { image, latent } = await editImage(sd, input, {
    source: 'a flamingo rollerskating',
    target: 'a bronze sculpture of a flamingo rollerskating',
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
main();
