// The Node figure beside the page's: the same 40-step DDS edit of the same toy picture as web/test/browser.test.mjs
// (lr 0.02, a preview decoded every 5 steps, as the page does), timed with @ddsjs/* in Node on the given backend
// (default wasm). `node web/test/node-steps.mjs [backend]` after `npm run build`. Prints steps/s of each of 3 runs.
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
const { initBackend } = require('@ddsjs/nn');
const { loadStableDiffusion } = require('@ddsjs/sd');
const { rgbaToEditTensor } = require('@ddsjs/sd/internals');
const { editImage } = require('@ddsjs/dds');
const world = require('@ddsjs/toy-shapes');

const backend = await initBackend(process.argv[2] ?? 'wasm', { quiet: true });
const sd = await loadStableDiffusion(world.MODEL_DIR, { variant: 'fp16' });
const scene = world.renderScene({ shape: 'circle', colour: 'red', background: 'gray', cx: 32, cy: 32, radius: 16, width: 64, height: 64 });
const rgba = new Uint8ClampedArray(64 * 64 * 4);
for (let i = 0; i < 64 * 64; i++) {
  rgba.set(scene.image.subarray(i * 3, i * 3 + 3), i * 4);
  rgba[i * 4 + 3] = 255;
}
const image = rgbaToEditTensor({ data: rgba, width: 64, height: 64 });
const runs = [];
for (let r = 0; r < 3; r++) {
  const t0 = performance.now();
  const res = await editImage(sd, image, {
    source: scene.caption,
    target: 'a blue circle on a gray background',
    steps: 40,
    lr: 0.02,
    seed: 1,
    onStep: async (info) => {
      if ((info.step + 1) % 5 === 0 && info.step + 1 < info.steps) {
        const p = sd.decodeLatents(info.latent);
        await p.data();
        p.dispose();
      }
    },
  });
  await res.image.data();
  runs.push(40 / ((performance.now() - t0) / 1000));
  tf.dispose([res.image, res.latent]);
}
console.log(JSON.stringify({ backend, stepsPerSecond: runs.map((v) => Number(v.toFixed(2))) }));
