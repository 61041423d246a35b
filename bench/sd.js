#!/usr/bin/env node
/* eslint-disable */
// Stable Diffusion benchmarks: the tiny fixture model (wasm and cpu), an SD 1.5-shaped random model (load time,
// peak RSS, the wasm heap-limit error, a UNet forward on cpu) and the same architecture at half width on wasm.
// Prints ms (median of a few runs after a warm-up) and GFLOP/s from analytically counted FLOPs (convolutions,
// linear layers and attention matmuls; norms, activations and softmax are not counted).
//
// Usage: node bench/sd.js [--only tiny,sd15,half] [--runs N] [--sd15-64]
// Needs the built packages (npx tsc -b packages/sd weights-tools). The random models are written once to
// .bench-cache/ (gitignored; SD 1.5 fp16 ≈ 2.1 GB, half width ≈ 0.9 GB) by `dds-weights make-random` and reused.
// Each section runs in its own Node process so that peak RSS and backend heaps are per section.
'use strict';
const path = require('path');
const fs = require('fs');
const { spawnSync } = require('child_process');

const ROOT = path.join(__dirname, '..');
const CACHE = path.join(ROOT, '.bench-cache');
const TINY = path.join(ROOT, 'fixtures', 'tiny-sd15');
const SD15_DIR = path.join(CACHE, 'sd15-random-fp16');
const HALF_DIR = path.join(CACHE, 'sd15-w0.5-random-fp16');

function parseArgs(argv) {
  const out = { only: null, runs: 3, section: null, sd15_64: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') out.only = argv[++i].split(',');
    else if (a === '--runs') out.runs = Number(argv[++i]);
    else if (a === '--section') out.section = argv[++i];
    else if (a === '--sd15-64') out.sd15_64 = true;
    else if (a === '--help' || a === '-h') {
      console.log('usage: node bench/sd.js [--only tiny,sd15,half] [--runs N] [--sd15-64 (also time SD 1.5 at 64×64 on cpu)]');
      process.exit(0);
    } else throw new Error(`bench/sd.js: unknown argument ${a}`);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// Analytic FLOP counts (2 × multiply-accumulates) from parsed configs
// ------------------------------------------------------------------------------------------------

/** FLOPs of one UNet2DConditionModel forward for `batch` samples of h×w latents and a context of `L` tokens. */
function unetFlops(cfg, batch, h, w, L = 77) {
  let macs = 0;
  const conv = (cin, cout, k, hh, ww) => (macs += k * k * cin * cout * hh * ww);
  const temb = cfg.timeEmbedDim;
  const resnet = (cin, cout, hh, ww) => {
    conv(cin, cout, 3, hh, ww);
    conv(cout, cout, 3, hh, ww);
    if (cin !== cout) conv(cin, cout, 1, hh, ww);
    macs += temb * cout; // time embedding projection
  };
  const transformer = (c, ctx, layers, hh, ww) => {
    const n = hh * ww;
    macs += 2 * c * c * n; // proj_in + proj_out
    for (let i = 0; i < layers; i++) {
      macs += 4 * c * c * n + 2 * n * n * c; // self-attention: q, k, v, out; QKᵀ and AV
      macs += 2 * c * c * n + 2 * ctx * c * L + 2 * n * L * c; // cross-attention: q, out; k, v of the context; scores and AV
      macs += c * 8 * c * n + 4 * c * c * n; // GEGLU feed-forward: C → 2·4C, 4C → C
    }
  };
  let hh = h;
  let ww = w;
  const boc = cfg.blockOutChannels;
  conv(cfg.inChannels, boc[0], cfg.convInKernel, hh, ww);
  macs += boc[0] * temb + temb * temb; // time embedding MLP
  const skips = [boc[0]];
  let ch = boc[0];
  cfg.downBlockTypes.forEach((type, i) => {
    for (let j = 0; j < cfg.layersPerBlock[i]; j++) {
      resnet(ch, boc[i], hh, ww);
      ch = boc[i];
      if (type.startsWith('CrossAttn')) transformer(ch, cfg.crossAttentionDim[i], cfg.transformerLayersPerBlock[i], hh, ww);
      skips.push(ch);
    }
    if (i < boc.length - 1) {
      hh = Math.ceil(hh / 2);
      ww = Math.ceil(ww / 2);
      conv(ch, ch, 3, hh, ww);
      skips.push(ch);
    }
  });
  const last = boc.length - 1;
  resnet(ch, ch, hh, ww);
  transformer(ch, cfg.crossAttentionDim[last], cfg.transformerLayersPerBlock[last], hh, ww);
  resnet(ch, ch, hh, ww);
  const rev = [...boc].reverse();
  const revLayers = [...cfg.layersPerBlock].reverse();
  const revCtx = [...cfg.crossAttentionDim].reverse();
  const revT = cfg.reverseTransformerLayersPerBlock ?? [...cfg.transformerLayersPerBlock].reverse();
  cfg.upBlockTypes.forEach((type, i) => {
    for (let j = 0; j < revLayers[i] + 1; j++) {
      const skip = skips.pop();
      resnet(ch + skip, rev[i], hh, ww);
      ch = rev[i];
      if (type.startsWith('CrossAttn')) transformer(ch, revCtx[i], revT[i], hh, ww);
    }
    if (i < rev.length - 1) {
      hh *= 2;
      ww *= 2;
      conv(ch, ch, 3, hh, ww);
    }
  });
  conv(boc[0], cfg.outChannels, cfg.convOutKernel, hh, ww);
  return 2 * macs * batch;
}

/** FLOPs of the VAE decoder (latent h×w → image 8h×8w) or encoder (image H×W → latent) for one image. */
function vaeFlops(cfg, part, h, w) {
  let macs = 0;
  const conv = (cin, cout, k, hh, ww) => (macs += k * k * cin * cout * hh * ww);
  const resnet = (cin, cout, hh, ww) => {
    conv(cin, cout, 3, hh, ww);
    conv(cout, cout, 3, hh, ww);
    if (cin !== cout) conv(cin, cout, 1, hh, ww);
  };
  const attn = (c, hh, ww) => {
    const n = hh * ww;
    macs += 4 * c * c * n + 2 * n * n * c;
  };
  const boc = cfg.blockOutChannels;
  const L = cfg.latentChannels;
  const top = boc[boc.length - 1];
  if (part === 'decode') {
    let hh = h;
    let ww = w;
    conv(L, L, 1, hh, ww); // post_quant_conv
    conv(L, top, 3, hh, ww);
    resnet(top, top, hh, ww);
    if (cfg.midBlockAddAttention) attn(top, hh, ww);
    resnet(top, top, hh, ww);
    const rev = [...boc].reverse();
    let ch = top;
    rev.forEach((c, i) => {
      for (let j = 0; j < cfg.layersPerBlock + 1; j++) {
        resnet(ch, c, hh, ww);
        ch = c;
      }
      if (i < rev.length - 1) {
        hh *= 2;
        ww *= 2;
        conv(ch, ch, 3, hh, ww);
      }
    });
    conv(boc[0], cfg.outChannels, 3, hh, ww);
  } else {
    let hh = h;
    let ww = w;
    conv(cfg.inChannels, boc[0], 3, hh, ww);
    let ch = boc[0];
    boc.forEach((c, i) => {
      for (let j = 0; j < cfg.layersPerBlock; j++) {
        resnet(ch, c, hh, ww);
        ch = c;
      }
      if (i < boc.length - 1) {
        hh /= 2;
        ww /= 2;
        conv(ch, ch, 3, hh, ww);
      }
    });
    resnet(top, top, hh, ww);
    if (cfg.midBlockAddAttention) attn(top, hh, ww);
    resnet(top, top, hh, ww);
    conv(top, 2 * L, 3, hh, ww);
    conv(2 * L, 2 * L, 1, hh, ww); // quant_conv
  }
  return 2 * macs;
}

/** FLOPs of the CLIP text encoder for `batch` sequences of `L` tokens. */
function clipFlops(cfg, batch, L = 77) {
  const D = cfg.hiddenSize;
  const perLayer = 4 * D * D * L + 2 * L * L * D + 2 * D * cfg.intermediateSize * L;
  return 2 * perLayer * cfg.numHiddenLayers * batch;
}

// ------------------------------------------------------------------------------------------------
// Timing helpers (used inside a section's process)
// ------------------------------------------------------------------------------------------------

function peakRssBytes() {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {}
  return process.memoryUsage().rss;
}
const gb = (n) => `${(n / 1024 ** 3).toFixed(2)} GiB`;

function report(label, ms, flops, note = '') {
  const gf = flops ? (flops / (ms / 1000) / 1e9).toPrecision(3) : '-';
  const fl = flops ? `${(flops / 1e9).toPrecision(3)} GFLOP` : '';
  console.log(`${label.padEnd(58)} ${ms.toFixed(1).padStart(10)} ms ${String(gf).padStart(8)} GFLOP/s  ${fl}${note ? '  ' + note : ''}`);
}

async function timeIt(tf, fn, runs, warmup = 1) {
  const once = async () => {
    const t0 = performance.now();
    const r = fn();
    const ts = Array.isArray(r) ? r : [r];
    await Promise.all(ts.map((t) => t.data()));
    const dt = performance.now() - t0;
    tf.dispose(ts);
    return dt;
  };
  for (let i = 0; i < warmup; i++) await once();
  const times = [];
  for (let i = 0; i < runs; i++) times.push(await once());
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

function libs() {
  const need = [path.join(ROOT, 'packages', 'sd', 'dist', 'index.js'), path.join(ROOT, 'weights-tools', 'dist', 'index.js')];
  for (const f of need) if (!fs.existsSync(f)) throw new Error(`bench/sd.js: ${f} is missing: build first (npx tsc -b packages/sd weights-tools)`);
  return {
    tf: require('@tensorflow/tfjs'),
    nn: require(path.join(ROOT, 'packages', 'nn', 'dist')),
    sd: require(path.join(ROOT, 'packages', 'sd', 'dist', 'internals')),
    wt: require(path.join(ROOT, 'weights-tools', 'dist')),
  };
}

async function ensureRandomModel(dir, width) {
  if (fs.existsSync(path.join(dir, '.complete'))) return false;
  const { wt } = libs();
  const t0 = performance.now();
  await wt.makeRandom(dir, { like: 'sd15', width, fp16Only: true, force: true, seed: 0 });
  fs.writeFileSync(path.join(dir, '.complete'), `make-random --like sd15 --width ${width} --fp16-only --seed 0\n`);
  console.log(`created ${path.relative(ROOT, dir)} (make-random --like sd15 --width ${width} --fp16-only) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return true;
}

// ------------------------------------------------------------------------------------------------
// Sections
// ------------------------------------------------------------------------------------------------

async function sectionTiny(backend, args) {
  const { tf, nn, sd } = libs();
  await nn.initBackend(backend, { quiet: true });
  console.log(`-- tiny-sd15 fixture on ${tf.getBackend()} (median of ${args.runs} after 1 warm-up)`);
  const m = await sd.loadStableDiffusion(TINY);
  const c = m.configs;
  const ids = m.tokenizer.encode(['a photo of a red square']);
  report('text encoder forward [1,77]', await timeIt(tf, () => m.textEncoder.forward(ids), args.runs), clipFlops(c.textEncoder, 1));
  const ctx = tf.tidy(() => tf.concat([m.encodePrompt(''), m.encodePrompt('a red square')], 0));
  const sizes = backend === 'cpu' ? [8] : [8, 64];
  for (const s of sizes) {
    const x = tf.randomNormal([2, s, s, 4], 0, 1, 'float32', 1);
    report(`UNet forward batch 2, ${s}×${s} latents`, await timeIt(tf, () => m.unet.forward(x, 500, ctx), args.runs), unetFlops(c.unet, 2, s, s));
    x.dispose();
  }
  if (backend !== 'cpu') {
    const z = tf.randomNormal([1, 64, 64, 4], 0, 1, 'float32', 2);
    report('VAE decode 64×64 latent → 512×512', await timeIt(tf, () => m.vae.decode(z), args.runs), vaeFlops(c.vae, 'decode', 64, 64));
    const img = tf.randomUniform([1, 512, 512, 3], -1, 1, 'float32', 3);
    report('VAE encode 512×512 → 64×64 latent (mean, std)', await timeIt(tf, () => { const r = m.vae.encode(img); return [r.mean, r.std]; }, args.runs), vaeFlops(c.vae, 'encode', 512, 512));
    tf.dispose([z, img]);
  }
  tf.dispose([ids, ctx]);
  m.dispose();
  console.log(`peak RSS ${gb(peakRssBytes())}`);
}

async function sectionSd15Wasm() {
  const { tf, nn, sd } = libs();
  await nn.initBackend('wasm', { quiet: true });
  console.log('-- SD 1.5-shaped random model (fp16 variant) on wasm, weights resident: expected to be refused before loading');
  let t0 = performance.now();
  try {
    const m = await sd.loadStableDiffusion(SD15_DIR, { variant: 'fp16', offloadUnet: false });
    m.dispose();
    console.log('UNEXPECTED: the full SD 1.5 model loaded on wasm with its weights resident');
    process.exitCode = 1;
  } catch (e) {
    console.log(`refused after ${(performance.now() - t0).toFixed(0)} ms with: ${e.message}`);
    console.log(`  wasm tensors allocated: ${tf.memory().numBytes} bytes; peak RSS ${gb(peakRssBytes())} (no wasm memory fault)`);
  }
  console.log('-- the same model on wasm with the UNet offloaded (the loader\'s default when weights do not fit)');
  t0 = performance.now();
  const m = await sd.loadStableDiffusion(SD15_DIR, { variant: 'fp16' });
  console.log(`load: ${((performance.now() - t0) / 1000).toFixed(1)} s; UNet offloaded: ${m.unet.isOffloaded}; wasm tensors ${gb(tf.memory().numBytes)}; peak RSS ${gb(peakRssBytes())}`);
  const ctx = tf.tidy(() => tf.concat([m.encodePrompt(''), m.encodePrompt('a photo of a cat')], 0));
  const x32 = tf.randomNormal([2, 32, 32, 4], 0, 1, 'float32', 1);
  const ms32 = await timeIt(tf, () => m.unet.forward(x32, 500, ctx), 1, 0);
  report('UNet forward batch 2, 32×32 latents, offloaded (1 run, cold)', ms32, unetFlops(m.configs.unet, 2, 32, 32));
  console.log(`peak RSS ${gb(peakRssBytes())}`);
  tf.dispose([ctx, x32]);
  m.dispose();
}

async function sectionSd15Cpu(args) {
  const { tf, nn, sd } = libs();
  await nn.initBackend('cpu', { quiet: true });
  console.log('-- SD 1.5-shaped random model (fp16 variant → float32) on cpu');
  const rss0 = peakRssBytes();
  const t0 = performance.now();
  const m = await sd.loadStableDiffusion(SD15_DIR, { variant: 'fp16' });
  const loadMs = performance.now() - t0;
  console.log(`load: ${(loadMs / 1000).toFixed(1)} s; ${(m.unet.parameterCount() / 1e6).toFixed(1)}M UNet + ${(m.vae.parameterCount() / 1e6).toFixed(1)}M VAE + ${(m.textEncoder.parameterCount() / 1e6).toFixed(1)}M text-encoder parameters; peak RSS ${gb(peakRssBytes())} (before load ${gb(rss0)}), tf memory ${gb(tf.memory().numBytes)}`);
  const c = m.configs;
  const ctx = tf.tidy(() => tf.concat([m.encodePrompt(''), m.encodePrompt('a photo of a cat')], 0));
  const x32 = tf.randomNormal([2, 32, 32, 4], 0, 1, 'float32', 1);
  const f32 = unetFlops(c.unet, 2, 32, 32);
  const f64 = unetFlops(c.unet, 2, 64, 64);
  // One cold run only: a forward takes minutes on the pure-JS cpu backend.
  const ms32 = await timeIt(tf, () => m.unet.forward(x32, 500, ctx), 1, 0);
  report('UNet forward batch 2, 32×32 latents (1 run, cold)', ms32, f32);
  const est64 = (ms32 * f64) / f32;
  if (args.sd15_64 || est64 < 5 * 60e3) {
    const x64 = tf.randomNormal([2, 64, 64, 4], 0, 1, 'float32', 1);
    report('UNet forward batch 2, 64×64 latents (1 run)', await timeIt(tf, () => m.unet.forward(x64, 500, ctx), 1, 0), f64);
    x64.dispose();
  } else {
    console.log(`UNet forward batch 2, 64×64 latents: estimated ${(est64 / 1000).toFixed(0)} s at the 32×32 rate (${(f64 / 1e12).toFixed(3)} TFLOP); not run (> 5 min; --sd15-64 runs it)`);
  }
  console.log(`peak RSS ${gb(peakRssBytes())}`);
  tf.dispose([ctx, x32]);
  m.dispose();
}

async function sectionHalf(args) {
  const { tf, nn, sd } = libs();
  await nn.initBackend('wasm', { quiet: true });
  console.log(`-- SD 1.5 architecture at half width (UNet block_out_channels 160/320/640/640; real VAE and text encoder) on wasm`);
  const t0 = performance.now();
  const m = await sd.loadStableDiffusion(HALF_DIR, { variant: 'fp16' });
  console.log(`load: ${((performance.now() - t0) / 1000).toFixed(1)} s; ${(m.unet.parameterCount() / 1e6).toFixed(1)}M UNet parameters; wasm tensors ${gb(tf.memory().numBytes)}; peak RSS ${gb(peakRssBytes())}`);
  const c = m.configs;
  const ctx = tf.tidy(() => tf.concat([m.encodePrompt(''), m.encodePrompt('a photo of a cat')], 0));
  for (const s of [32, 64]) {
    const x = tf.randomNormal([2, s, s, 4], 0, 1, 'float32', 1);
    const runs = s === 64 ? Math.min(args.runs, 2) : args.runs;
    report(`UNet forward batch 2, ${s}×${s} latents (median of ${runs})`, await timeIt(tf, () => m.unet.forward(x, 500, ctx), runs), unetFlops(c.unet, 2, s, s));
    x.dispose();
  }
  console.log(`peak RSS ${gb(peakRssBytes())}`);
  tf.dispose(ctx);
  m.dispose();
}

async function runSection(name, args) {
  if (name === 'tiny-wasm') return sectionTiny('wasm', args);
  if (name === 'tiny-cpu') return sectionTiny('cpu', args);
  if (name === 'sd15-wasm') return sectionSd15Wasm();
  if (name === 'sd15-cpu') return sectionSd15Cpu(args);
  if (name === 'half-wasm') return sectionHalf(args);
  if (name === 'make-sd15') return ensureRandomModel(SD15_DIR, 1);
  if (name === 'make-half') return ensureRandomModel(HALF_DIR, 0.5);
  if (name === 'flops') {
    const { sd } = libs();
    const c = sd.parseUNetConfig(sd.BUILTIN_CONFIGS.sd15.unet);
    for (const s of [32, 64]) console.log(`SD 1.5 UNet, batch 2, ${s}×${s}: ${(unetFlops(c, 2, s, s) / 1e12).toFixed(3)} TFLOP`);
    return;
  }
  throw new Error(`unknown section ${name}`);
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.section) return runSection(args.section, args);
  const want = (n) => !args.only || args.only.includes(n);
  const plan = [];
  if (want('tiny')) plan.push('tiny-wasm', 'tiny-cpu');
  if (want('sd15')) plan.push('make-sd15', 'sd15-wasm', 'sd15-cpu');
  if (want('half')) plan.push('make-half', 'half-wasm');
  console.log(`Stable Diffusion benchmark (node ${process.version}, ${require('os').cpus().length} CPUs); FLOPs count convs, linears and attention matmuls`);
  let failed = 0;
  for (const s of plan) {
    const extra = [...(args.runs ? ['--runs', String(args.runs)] : []), ...(args.sd15_64 ? ['--sd15-64'] : [])];
    const r = spawnSync(process.execPath, ['--max-old-space-size=16384', __filename, '--section', s, ...extra], { stdio: 'inherit' });
    if (r.status !== 0) {
      failed++;
      console.log(`section ${s} failed (exit ${r.status})`);
    }
  }
  process.exitCode = failed ? 1 : 0;
}

module.exports = { unetFlops, vaeFlops, clipFlops };
if (require.main === module) {
  main().catch((e) => {
    console.error(`bench/sd.js: ${e.message}`);
    process.exitCode = 1;
  });
}
