#!/usr/bin/env node
/* eslint-disable */
// Where the time goes, per backend, and the hot-op paths of @ddsjs/nn side by side in ONE process.
//   profile  kernel counts (and, where the backend times kernels, ms) of ten toy-model DDS steps (ddsGrad + the
//            optimiser step, as `dds edit` runs it) and of the SD 1.5-shaped UNet forward (random weights,
//            --width, --hw, --batch), aggregated by kernel name.
//   ab       the same work under two hot-op settings of @ddsjs/nn (setHotOps), alternating, --runs reps each, median;
//            --a / --b: 'portable' (PORTABLE_HOT_OPS), 'auto' (the per-backend choices of hotOps()) or a JSON
//            override such as '{"attention":"batched"}' (default --a portable --b auto). Prints ms and the load
//            average. The machine is shared: compare within one run only.
// Usage: node bench/hot-ops.js profile|ab [--backend wasm|tensorflow] [--model toy|sd15] [--width F] [--hw N]
//        [--batch N] [--runs N] [--a SETTING] [--b SETTING]
'use strict';
const path = require('path');
const os = require('os');
const ROOT = path.join(__dirname, '..');

function parseArgs(argv) {
  const o = { mode: argv[0], backend: 'wasm', model: 'toy', width: 1, hw: 64, batch: 4, runs: 5, a: 'portable', b: 'auto' };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (a === '--backend') o.backend = v;
    else if (a === '--model') o.model = v;
    else if (a === '--width') o.width = Number(v);
    else if (a === '--hw') o.hw = Number(v);
    else if (a === '--batch') o.batch = Number(v);
    else if (a === '--runs') o.runs = Number(v);
    else if (a === '--a') o.a = v;
    else if (a === '--b') o.b = v;
    else throw new Error(`bench/hot-ops.js: unknown argument ${a}`);
  }
  if (o.mode !== 'profile' && o.mode !== 'ab') throw new Error('usage: node bench/hot-ops.js profile|ab [options]');
  return o;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const load = () => os.loadavg().map((x) => x.toFixed(2)).join(' ');

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const tf = require('@tensorflow/tfjs');
  const nn = require(path.join(ROOT, 'packages', 'nn', 'dist'));
  const sdlib = require(path.join(ROOT, 'packages', 'sd', 'dist', 'internals'));
  const dds = require(path.join(ROOT, 'packages', 'dds', 'dist', 'internals'));
  await nn.initBackend(o.backend, { quiet: true });
  let work;
  if (o.model === 'toy') {
    const sd = await sdlib.loadStableDiffusion(path.join(ROOT, 'packages', 'toy-shapes', 'model'), { variant: 'fp16' });
    const enc = (p) => sd.encodePrompt(p);
    const src = enc('a red circle on a white background');
    const tgt = enc('a green circle on a white background');
    const uncond = enc('');
    const zSource = tf.randomNormal([1, 8, 8, 4], 0, 1, 'float32', 1);
    const z = tf.variable(zSource.clone());
    const opt = tf.train.sgd(0.005);
    let seed = 0;
    // Ten editLatent steps: ddsGrad, the optimiser step on the score loss, the loss read back.
    work = async () => {
      for (let i = 0; i < 10; i++) await step();
    };
    const step = async () => {
      const r = dds.ddsGrad(sd, { zSource, zTarget: z, source: { cond: src, uncond }, target: { cond: tgt, uncond } }, { seed: seed++ });
      const l = opt.minimize(() => tf.mul(dds.scoreLoss(z, r.grad), 1000), true, [z]);
      await l.data();
      l.dispose();
      r.dispose();
    };
  } else {
    const { scaleConfigs } = require(path.join(ROOT, 'weights-tools', 'dist'));
    const cfg = sdlib.parseUNetConfig(scaleConfigs('sd15', o.width).unet);
    const unet = new sdlib.UNet2DConditionModel(cfg).initialize(0);
    const x = tf.randomNormal([o.batch, o.hw, o.hw, 4], 0, 1, 'float32', 1);
    const ctx = tf.randomNormal([o.batch, 77, 768], 0, 1, 'float32', 2);
    work = async () => {
      const y = unet.forward(x, 500, ctx);
      await y.data();
      y.dispose();
    };
  }
  console.log(`${o.mode} ${o.model}${o.model === 'toy' ? '' : ` width ${o.width} ${o.hw}² batch ${o.batch}`} on ${tf.getBackend()}; load ${load()}`);
  if (o.mode === 'profile') {
    await work(); // warm-up
    const t0 = performance.now();
    const info = await tf.profile(work);
    const wall = performance.now() - t0;
    const by = new Map();
    for (const k of info.kernels) {
      const e = by.get(k.name) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      by.set(k.name, e);
    }
    const rows = [...by].sort((a, b) => b[1].ms - a[1].ms || b[1].n - a[1].n);
    const totalMs = rows.reduce((s, [, e]) => s + e.ms, 0);
    console.log(`${info.kernels.length} kernels, profiled wall ${wall.toFixed(0)} ms, kernel ms ${totalMs.toFixed(0)}`);
    console.log('| kernel | count | ms | share |\n|---|---:|---:|---:|');
    for (const [name, e] of rows) console.log(`| ${name} | ${e.n} | ${e.ms.toFixed(1)} | ${totalMs ? ((100 * e.ms) / totalMs).toFixed(1) : '-'}% |`);
  } else {
    const setting = (v) => (v === 'auto' ? null : v === 'portable' ? nn.PORTABLE_HOT_OPS : JSON.parse(v));
    const paths = [o.a, o.b];
    const times = { [o.a]: [], [o.b]: [] };
    for (const p of paths) {
      nn.setHotOps(setting(p));
      await work(); // warm-up of each setting
    }
    for (let i = 0; i < o.runs; i++) {
      for (const p of i % 2 ? [...paths].reverse() : paths) {
        nn.setHotOps(setting(p));
        const t0 = performance.now();
        await work();
        times[p].push(performance.now() - t0);
      }
    }
    nn.setHotOps(null);
    for (const p of paths) console.log(`${p}: median ${median(times[p]).toFixed(1)} ms over ${o.runs} (${times[p].map((t) => t.toFixed(0)).join(', ')})`);
    console.log(`a/b = ${(median(times[o.a]) / median(times[o.b])).toFixed(2)}; load at end ${load()}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
