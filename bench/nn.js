#!/usr/bin/env node
/* eslint-disable */
// Micro-benchmarks of @ddsjs/nn's hot ops at Stable Diffusion 1.5 sizes (64×64 latents).
// Usage: node bench/nn.js [auto|wasm|cpu|tensorflow|webgpu] [--runs N] [--only conv,matmul,...] [--grad]
// Needs the built package: npx tsc -b packages/nn
'use strict';
const path = require('path');
const nn = require(path.join(__dirname, '..', 'packages', 'nn', 'dist'));
const tf = require('@tensorflow/tfjs');

function parseArgs(argv) {
  const out = { backend: 'auto', runs: 5, only: null, grad: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--runs') out.runs = Number(argv[++i]);
    else if (a === '--only') out.only = argv[++i].split(',');
    else if (a === '--grad') out.grad = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: node bench/nn.js [backend] [--runs N] [--only conv,conv1x1,matmul,attention,groupnorm,upsample] [--grad]');
      process.exit(0);
    } else out.backend = a;
  }
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Median wall-clock ms and median process CPU ms (user+system) of `fn` over `runs` runs after one warm-up. */
async function timeIt(fn, runs) {
  // fn returns a tensor (or array of tensors); we wait for its data so async backends are timed fully.
  const once = async () => {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const r = fn();
    const ts = Array.isArray(r) ? r : [r];
    await Promise.all(ts.map((t) => t.data()));
    const dt = performance.now() - t0;
    const c = process.cpuUsage(c0);
    ts.forEach((t) => t.dispose());
    return [dt, (c.user + c.system) / 1000];
  };
  await once(); // warm-up (kernel compilation, allocation)
  const wall = [];
  const cpu = [];
  for (let i = 0; i < runs; i++) {
    const [w, c] = await once();
    wall.push(w);
    cpu.push(c);
  }
  return { ms: median(wall), cpuMs: median(cpu) };
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const backend = await nn.initBackend(args.backend, { quiet: true });
  console.log(`@ddsjs/nn benchmark — backend: ${backend}, median of ${args.runs} runs after 1 warm-up`);
  const rows = [];
  const want = (name) => !args.only || args.only.includes(name);
  // CPU ms is what a single-threaded backend (wasm in Node) really spent, even when other processes compete
  // for the cores; on multi-threaded or GPU backends read the wall-clock column.
  console.log(`${'op'.padEnd(50)} ${'wall ms'.padStart(9)} ${'GFLOP/s'.padStart(8)} ${'cpu ms'.padStart(9)} ${'GFLOP/cpu-s'.padStart(11)}`);
  const report = (name, { ms, cpuMs }, flops) => {
    const gf = flops ? (flops / (ms / 1000) / 1e9).toFixed(1) : '-';
    const gfc = flops ? (flops / (cpuMs / 1000) / 1e9).toFixed(1) : '-';
    rows.push({ op: name, ms: ms.toFixed(1), 'GFLOP/s': gf, cpuMs: cpuMs.toFixed(1) });
    console.log(`${name.padEnd(50)} ${ms.toFixed(1).padStart(9)} ${String(gf).padStart(8)} ${cpuMs.toFixed(1).padStart(9)} ${String(gfc).padStart(11)}`);
  };

  if (want('conv')) {
    const x = tf.randomNormal([1, 64, 64, 320]);
    const w = tf.randomNormal([3, 3, 320, 320], 0, 0.05);
    const b = tf.randomNormal([320]);
    const flops = 2 * 64 * 64 * 320 * 320 * 9;
    report('conv3x3 1×64×64×320→320 (pad 1)', await timeIt(() => nn.conv2dOp(x, w, b, { padding: [1, 1, 1, 1] }), args.runs), flops);
    if (args.grad) {
      const dy = tf.randomNormal([1, 64, 64, 320]);
      const g = () =>
        tf.tidy(() => {
          const f = (xx, ww) => tf.sum(tf.mul(nn.conv2dOp(xx, ww, undefined, { padding: [1, 1, 1, 1], gradient: 'composed' }), dy));
          return tf.grads(f)([x, w]);
        });
      report('  forward + backward (dx, dW composed)', await timeIt(g, Math.min(args.runs, 3)), 3 * flops);
      const xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]);
      report('  dW: conv2dFilterGrad', await timeIt(() => nn.conv2dFilterGrad(xp, dy, [3, 3, 320, 320], 1), Math.min(args.runs, 3)), flops);
      report('  dx: conv2dInputGrad', await timeIt(() => nn.conv2dInputGrad(dy, w, xp.shape, 1), Math.min(args.runs, 3)), flops);
      report('  dx: tf.conv2dTranspose (for comparison)', await timeIt(() => tf.conv2dTranspose(dy, w, xp.shape, 1, 'valid'), 1), flops);
      tf.dispose([dy, xp]);
    }
    const ws = tf.randomNormal([3, 3, 320, 320], 0, 0.05);
    report('conv3x3 stride 2 1×64×64×320→320', await timeIt(() => nn.conv2dOp(x, ws, b, { stride: 2, padding: [1, 1, 1, 1] }), args.runs), flops / 4);
    tf.dispose([x, w, b, ws]);
  }
  if (want('conv1x1')) {
    const x = tf.randomNormal([1, 64, 64, 320]);
    const w = tf.randomNormal([1, 1, 320, 320], 0, 0.05);
    report('conv1x1 1×64×64×320→320', await timeIt(() => nn.conv2dOp(x, w, undefined), args.runs), 2 * 4096 * 320 * 320);
    tf.dispose([x, w]);
  }
  if (want('matmul')) {
    const a = tf.randomNormal([4096, 320]);
    const m = tf.randomNormal([320, 320]);
    report('matMul 4096×320 · 320×320', await timeIt(() => tf.matMul(a, m), args.runs), 2 * 4096 * 320 * 320);
    const lin = new nn.Linear(320, 320).initialize(1);
    const a3 = a.reshape([1, 4096, 320]);
    report('Linear(320,320) on 1×4096×320', await timeIt(() => lin.forward(a3), args.runs), 2 * 4096 * 320 * 320);
    lin.dispose();
    tf.dispose([a, m, a3]);
  }
  if (want('attention')) {
    const q = tf.randomNormal([1, 4096, 320]);
    const k = tf.randomNormal([1, 4096, 320]);
    const v = tf.randomNormal([1, 4096, 320]);
    const flops = 8 * (2 * 4096 * 4096 * 40 * 2);
    report('attention self 8 heads × 4096 × 40', await timeIt(() => nn.attention(q, k, v, { heads: 8 }), args.runs), flops);
    const kc = tf.randomNormal([1, 77, 320]);
    const vc = tf.randomNormal([1, 77, 320]);
    report('attention cross 8 heads × 4096 q × 77 k × 40', await timeIt(() => nn.attention(q, kc, vc, { heads: 8 }), args.runs), 8 * 2 * 2 * 4096 * 77 * 40);
    tf.dispose([q, k, v, kc, vc]);
  }
  if (want('groupnorm')) {
    const x = tf.randomNormal([1, 64, 64, 320]);
    const gn = new nn.GroupNorm(32, 320, 1e-5).initialize(1);
    report('GroupNorm(32, 320) on 1×64×64×320', await timeIt(() => gn.forward(x), args.runs), 0);
    gn.dispose();
    x.dispose();
  }
  if (want('upsample')) {
    const x = tf.randomNormal([1, 32, 32, 640]);
    report('upsampleNearest 2× 1×32×32×640', await timeIt(() => nn.upsampleNearest(x), args.runs), 0);
    x.dispose();
  }
  if (tf.memory().numTensors > 0 && process.env.DDSJS_BENCH_DEBUG) console.log('live tensors', tf.memory().numTensors);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : e);
  process.exit(1);
});
