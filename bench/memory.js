#!/usr/bin/env node
/* eslint-disable */
// Peak backend memory of one forward, measured deterministically with tf.profile (not timed; load-independent):
//   unet  one UNet forward of the SD 1.5-shaped UNet at half width (block_out_channels [160, 320, 640, 640]) on
//         64×64 latents, batch 4, 77-token context — the UNet call of one DDS step at 512²
//   vae   one VAE decode (SD 1.5's real VAE) of 64×64 latents, batch 1 — one 512² picture
// Weights are random (Module.initialize; peak memory does not depend on their values) and built in-process.
// Prints, per section: resident bytes before the call, tf.profile's peakBytes, the peak above resident (the
// activations), newBytes / newTensors (what the call leaves behind: its result) and the kernel count.
//
// Usage: node bench/memory.js [--only unet,vae] [--backend wasm]   (needs the built packages: npm run build)
'use strict';
const path = require('path');

const ROOT = path.join(__dirname, '..');

function parseArgs(argv) {
  const out = { only: ['unet', 'vae'], backend: 'wasm' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') out.only = argv[++i].split(',');
    else if (a === '--backend') out.backend = argv[++i];
    else if (a === '--help' || a === '-h') {
      console.log('usage: node bench/memory.js [--only unet,vae] [--backend wasm|tensorflow|cpu]');
      process.exit(0);
    } else throw new Error(`bench/memory.js: unknown argument ${a}`);
  }
  for (const s of out.only) if (s !== 'unet' && s !== 'vae') throw new Error(`bench/memory.js: unknown section ${s}`);
  return out;
}

const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function measure(tf, label, fn) {
  const before = tf.memory().numBytes;
  const t0 = performance.now();
  let out;
  const p = await tf.profile(() => {
    out = fn();
    return out;
  });
  await out.data();
  const s = (performance.now() - t0) / 1000;
  out.dispose();
  const row = {
    resident: before,
    peakBytes: p.peakBytes,
    peakAboveResident: p.peakBytes - before,
    newBytes: p.newBytes,
    newTensors: p.newTensors,
    kernels: p.kernels.length,
  };
  console.log(
    `${label}: peakBytes ${p.peakBytes} (${mib(p.peakBytes)}), above resident ${mib(row.peakAboveResident)}` +
      ` [resident ${mib(before)}], newBytes ${p.newBytes}, newTensors ${p.newTensors}, kernels ${row.kernels}` +
      ` (${s.toFixed(0)} s, not a timing)`,
  );
  console.log(`MEMORY ${JSON.stringify({ section: label, ...row })}`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const tf = require('@tensorflow/tfjs');
  const nn = require(path.join(ROOT, 'packages', 'nn', 'dist'));
  const sdlib = require(path.join(ROOT, 'packages', 'sd', 'dist', 'internals'));
  const { scaleConfigs } = require(path.join(ROOT, 'weights-tools', 'dist'));
  const backend = await nn.initBackend(opts.backend, { quiet: true });
  // tf.profile would otherwise read every kernel's output back to check it for NaN (GBs of copies).
  tf.env().set('CHECK_COMPUTATION_FOR_ERRORS', false);
  const raw = scaleConfigs('sd15', 0.5);
  console.log(`bench/memory.js on ${backend}`);
  if (opts.only.includes('unet')) {
    const unet = new sdlib.UNet2DConditionModel(sdlib.parseUNetConfig(raw.unet)).initialize(0);
    const sample = tf.randomNormal([4, 64, 64, 4], 0, 1, 'float32', 1);
    const context = tf.randomNormal([4, 77, 768], 0, 1, 'float32', 2);
    await measure(tf, 'unet half-width 64x64 batch 4', () => unet.forward(sample, 500, context));
    tf.dispose([sample, context]);
    unet.dispose();
  }
  if (opts.only.includes('vae')) {
    const vae = new sdlib.AutoencoderKL(sdlib.parseVaeConfig(raw.vae)).initialize(0);
    const z = tf.randomNormal([1, 64, 64, 4], 0, 1, 'float32', 3);
    await measure(tf, 'vae decode 64x64 batch 1', () => vae.decode(z));
    z.dispose();
    vae.dispose();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
