#!/usr/bin/env node
/* eslint-disable */
// ddsGrad step vs the batch-4 UNet forward alone: the score's overhead beyond the UNet must stay under 5%.
// Models: tiny-sd15 (fixtures) at a 64×64 latent; the half-width SD 1.5-shaped random model
// (`dds-weights make-random --like sd15 --width 0.5 --fp16-only`, cached in .bench-cache/) at a 32×32 latent.
// Usage: node bench/dds.js [backend] [--runs N] [--skip-half]
'use strict';
const path = require('path');
const fs = require('fs');
const tf = require('@tensorflow/tfjs');
const root = path.join(__dirname, '..');
const nn = require(path.join(root, 'packages/nn/dist'));
const sdlib = require(path.join(root, 'packages/sd/dist/internals'));
const dds = require(path.join(root, 'packages/dds/dist/internals'));

const args = process.argv.slice(2);
const backendArg = args.find((a) => !a.startsWith('--')) || 'wasm';
const runsIdx = args.indexOf('--runs');
const RUNS = runsIdx >= 0 ? Number(args[runsIdx + 1]) : 3;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(fn) {
  const once = async () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const out = fn();
    await out.data();
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    out.dispose();
    return [wall, (c.user + c.system) / 1000];
  };
  await once();
  const w = [], c = [];
  for (let i = 0; i < RUNS; i++) {
    const [a, b] = await once();
    w.push(a);
    c.push(b);
  }
  return { wall: median(w), cpu: median(c) };
}

async function benchModel(name, sd, h, w) {
  const d = sd.configs.textEncoder.hiddenSize;
  const cond = sd.encodePrompt('a photo of a tiger');
  const uncond = sd.encodePrompt('');
  const src = sd.encodePrompt('a photo of a cat');
  const zSource = tf.randomNormal([1, h, w, 4], 0, 1, 'float32', 1);
  const zTarget = tf.randomNormal([1, h, w, 4], 0, 1, 'float32', 2);
  const ctx4 = tf.concat([uncond, uncond, src, cond], 0);
  const x4 = tf.concat([zSource, zTarget, zSource, zTarget], 0);
  const unet = await time(() => sd.unet.forward(x4, 500, ctx4));
  const score = await time(() => {
    const r = dds.ddsGrad(
      sd,
      { zSource, zTarget, source: { cond: src, uncond }, target: { cond, uncond } },
      { timestep: 500, seed: 0 },
    );
    r.noise.dispose();
    return r.grad;
  });
  // Everything ddsGrad does besides the UNet, measured alone: the same call with a UNet that returns its input.
  const identity = { unet: { forward: (x) => x.clone() }, schedule: sd.schedule };
  const rest = await time(() => {
    const r = dds.ddsGrad(
      identity,
      { zSource, zTarget, source: { cond: src, uncond }, target: { cond, uncond } },
      { timestep: 500, seed: 0 },
    );
    r.noise.dispose();
    return r.grad;
  });
  const overhead = (100 * rest.cpu) / unet.cpu;
  console.log(
    `${name.padEnd(34)} latent ${h}×${w}  UNet batch 4: ${unet.wall.toFixed(0)} ms (cpu ${unet.cpu.toFixed(0)})  ` +
      `ddsGrad: ${score.wall.toFixed(0)} ms (cpu ${score.cpu.toFixed(0)})  ` +
      `score ops without the UNet: ${rest.wall.toFixed(1)} ms (cpu ${rest.cpu.toFixed(1)}) = ${overhead.toFixed(2)}% of the UNet (D=${d})`,
  );
  tf.dispose([cond, uncond, src, zSource, zTarget, ctx4, x4]);
}

async function main() {
  const backend = await nn.initBackend(backendArg, { quiet: true });
  console.log(`ddsGrad benchmark — backend ${backend}, median of ${RUNS} runs after a warm-up (ms wall, cpu = process CPU ms)`);
  const tiny = await sdlib.loadStableDiffusion(path.join(root, 'fixtures/tiny-sd15'));
  await benchModel('tiny-sd15', tiny, 64, 64);
  tiny.dispose();
  if (args.includes('--skip-half')) return;
  const dir = path.join(root, '.bench-cache', 'sd15-half');
  if (!fs.existsSync(path.join(dir, 'model_index.json'))) {
    const wt = require(path.join(root, 'weights-tools/dist'));
    console.log(`writing ${dir} (make-random --like sd15 --width 0.5 --fp16-only)…`);
    await wt.makeRandom(dir, { like: 'sd15', width: 0.5, fp16Only: true, force: true });
  }
  const half = await sdlib.loadStableDiffusion(dir, { variant: 'fp16' });
  await benchModel('SD1.5-shaped, half width (random)', half, 32, 32);
  half.dispose();
}
main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
