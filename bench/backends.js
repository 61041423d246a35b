#!/usr/bin/env node
/* eslint-disable */
// wasm vs tensorflow (tfjs-node, `npm run setup:tensorflow`) side by side, in one run:
//   toy    the README quick start: a 200-step `dds edit` on the embedded toy model, through the built CLI, on each
//          backend and on the one `--backend auto` picks;
//   half   the SD 1.5-shaped random UNet at half width: forward at 32×32, batch 2 and 4, and one ddsGrad;
//   sd15   the full-width SD 1.5-shaped random model (fp16): load time, peak RSS, one ddsGrad at 64×64 (a batch-4
//          UNet forward: one DDS step of a 512² edit).
// Each (section, backend) runs in its own Node process (peak RSS per process; one backend's heap does not affect the
// next). Times are wall clock, median of --runs after one warm-up. The random models are written once to
// .bench-cache/ (shared with bench/sd.js).
//
// Usage: node bench/backends.js [--only toy,half,sd15] [--runs N] [--backends wasm,tensorflow]
'use strict';
const path = require('path');
const fs = require('fs');
const { spawnSync } = require('child_process');

const ROOT = path.join(__dirname, '..');
const CACHE = path.join(ROOT, '.bench-cache');
const DIRS = { half: path.join(CACHE, 'sd15-w0.5-random-fp16'), sd15: path.join(CACHE, 'sd15-random-fp16') };

function parseArgs(argv) {
  const out = { only: ['toy', 'half', 'sd15'], runs: 1, backends: ['wasm', 'tensorflow'], child: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') out.only = argv[++i].split(',');
    else if (a === '--runs') out.runs = Number(argv[++i]);
    else if (a === '--backends') out.backends = argv[++i].split(',');
    else if (a === '--child') out.child = [argv[++i], argv[++i]];
    else if (a === '--help' || a === '-h') {
      console.log('usage: node bench/backends.js [--only toy,half,sd15] [--runs N] [--backends wasm,tensorflow]');
      process.exit(0);
    } else throw new Error(`bench/backends.js: unknown argument ${a}`);
  }
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const peakRss = () => {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.memoryUsage().rss;
};

async function timeIt(runs, fn) {
  const once = async () => {
    const t0 = performance.now();
    const out = fn();
    await out.data();
    out.dispose();
    return performance.now() - t0;
  };
  await once();
  const xs = [];
  for (let i = 0; i < runs; i++) xs.push(await once());
  return median(xs);
}

async function ensureRandomModel(dir, width) {
  if (fs.existsSync(path.join(dir, '.complete'))) return;
  const wt = require(path.join(ROOT, 'weights-tools', 'dist'));
  const t0 = performance.now();
  await wt.makeRandom(dir, { like: 'sd15', width, fp16Only: true, force: true, seed: 0 });
  fs.writeFileSync(path.join(dir, '.complete'), `make-random --like sd15 --width ${width} --fp16-only --seed 0\n`);
  console.error(`created ${path.relative(ROOT, dir)} in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
}

/** One section on one backend, in this (child) process; returns { label: ms | text }. */
async function child(section, backend, runs) {
  const tf = require('@tensorflow/tfjs');
  const nn = require(path.join(ROOT, 'packages', 'nn', 'dist'));
  const sdlib = require(path.join(ROOT, 'packages', 'sd', 'dist', 'internals'));
  const dds = require(path.join(ROOT, 'packages', 'dds', 'dist', 'internals'));
  await nn.initBackend(backend, { quiet: true });
  const out = {};
  const dir = DIRS[section];
  const t0 = performance.now();
  let sd;
  try {
    sd = await sdlib.loadStableDiffusion(dir, { variant: 'fp16' });
  } catch (e) {
    out['load'] = `fails: ${e.message.split('\n')[0].slice(0, 90)}`;
    return out;
  }
  out['load (s)'] = (performance.now() - t0) / 1000;
  out['peak RSS after load (GB)'] = peakRss() / 1e9;
  const hw = section === 'half' ? 32 : 64;
  const cond = sd.encodePrompt('a photo of a tiger');
  const uncond = sd.encodePrompt('');
  const src = sd.encodePrompt('a photo of a cat');
  const zSource = tf.randomNormal([1, hw, hw, 4], 0, 1, 'float32', 1);
  const zTarget = tf.randomNormal([1, hw, hw, 4], 0, 1, 'float32', 2);
  const batches = section === 'half' ? [2, 4] : [];
  for (const b of batches) {
    const x = tf.concat(Array.from({ length: b }, (_, i) => (i % 2 ? zTarget : zSource)), 0);
    const ctx = tf.concat(Array.from({ length: b }, (_, i) => (i % 2 ? cond : uncond)), 0);
    out[`UNet ${hw}×${hw} batch ${b} (s)`] = (await timeIt(runs, () => sd.unet.forward(x, 500, ctx))) / 1000;
    tf.dispose([x, ctx]);
  }
  out[`ddsGrad ${hw}×${hw} (s)`] =
    (await timeIt(runs, () => {
      const r = dds.ddsGrad(sd, { zSource, zTarget, source: { cond: src, uncond }, target: { cond, uncond } }, { timestep: 500, seed: 0 });
      r.noise.dispose();
      return r.grad;
    })) / 1000;
  out['peak RSS (GB)'] = peakRss() / 1e9;
  tf.dispose([cond, uncond, src, zSource, zTarget]);
  sd.dispose();
  return out;
}

/** The 200-step toy edit through the built CLI on `backend`; returns wall seconds and the backend auto chose. */
function toyEdit(backend) {
  const bin = path.join(ROOT, 'packages', 'cli', 'bin', 'dds.js');
  const outFile = path.join(require('os').tmpdir(), `ddsjs-bench-${process.pid}.png`);
  const t0 = performance.now();
  const r = spawnSync(
    process.execPath,
    [bin, 'edit', '--image', path.join(ROOT, 'examples/assets/red-circle.png'), '--source', 'a red circle on a white background',
      '--target', 'a green circle on a white background', '--steps', '200', '--backend', backend, '-o', outFile, '--force'],
    { encoding: 'utf8', env: { ...process.env, DDSJS_BACKEND: '' } },
  );
  const wall = (performance.now() - t0) / 1000;
  fs.rmSync(outFile, { force: true });
  if (r.status !== 0) return { error: (r.stderr || '').trim().split('\n').pop() };
  const used = /backend: (\w+)/.exec(r.stderr)?.[1];
  const steps = /200 steps in ([\d.]+)s/.exec(r.stderr)?.[1];
  return { wall, steps: steps ? Number(steps) : null, used };
}

function fmt(v) {
  if (typeof v !== 'number') return v ?? '—';
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.child) {
    const [section, backend] = opts.child;
    const res = await child(section, backend, opts.runs);
    process.stdout.write(`BENCH ${JSON.stringify(res)}\n`);
    return;
  }
  const os = require('os');
  console.log(`wasm vs tensorflow — ${os.cpus().length} CPUs (${os.cpus()[0].model}), load average at start ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
  const rows = new Map(); // label → { backend: value }
  const put = (label, backend, v) => {
    if (!rows.has(label)) rows.set(label, {});
    rows.get(label)[backend] = v;
  };
  if (opts.only.includes('toy')) {
    for (const b of [...opts.backends, 'auto']) {
      const r = toyEdit(b);
      console.log(`toy edit on ${b}: ${JSON.stringify(r)}`);
      if (r.error) put('toy edit, 200 steps (s)', b, `fails: ${r.error}`);
      else {
        put('toy edit, 200 steps (s)', b === 'auto' ? `auto (${r.used})` : b, r.steps ?? r.wall);
        put('toy edit, whole command (s)', b === 'auto' ? `auto (${r.used})` : b, r.wall);
      }
    }
  }
  for (const section of ['half', 'sd15']) {
    if (!opts.only.includes(section)) continue;
    await ensureRandomModel(DIRS[section], section === 'half' ? 0.5 : 1);
    for (const b of opts.backends) {
      const r = spawnSync(process.execPath, ['--max-old-space-size=16384', __filename, '--child', section, b, '--runs', String(opts.runs)], {
        encoding: 'utf8',
        env: { ...process.env, DDSJS_BACKEND: '' },
        maxBuffer: 1 << 26,
      });
      const line = (r.stdout || '').split('\n').find((l) => l.startsWith('BENCH '));
      if (!line) {
        put(`${section}: run`, b, `fails: ${(r.stderr || '').trim().split('\n').pop()?.slice(0, 100)}`);
        continue;
      }
      console.log(`${section} on ${b}: ${line.slice(6)}`);
      for (const [k, v] of Object.entries(JSON.parse(line.slice(6)))) put(`${section === 'half' ? 'half width' : 'SD1.5 full'}: ${k}`, b, v);
    }
  }
  const cols = [...new Set([...rows.values()].flatMap((r) => Object.keys(r)))];
  console.log(`\n| | ${cols.join(' | ')} |\n|---|${cols.map(() => '---:').join('|')}|`);
  for (const [label, r] of rows) console.log(`| ${label} | ${cols.map((c) => fmt(r[c])).join(' | ')} |`);
  console.log(`\nload average at end ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
