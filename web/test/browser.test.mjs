// The page in a real browser: headless Chromium (Debian's `chromium` package, driven by puppeteer-core; no browser
// is downloaded) loads the built page from a local static server, edits a toy picture with 40 DDS steps on wasm
// (and on WebGPU when the browser offers an adapter), and checks: no console errors, the shape's colour moved toward
// the target, tf.memory().numTensors came back to its value before the run, Stop frees everything. It saves a
// screenshot taken mid-edit to docs/assets/web-page.png. Run `npm run test:browser` (builds first).
// CHROMIUM=/path/to/chrome overrides the browser; TEST_BACKENDS=wasm,webgpu picks the backends tried.
// On a software WebGPU adapter (SwiftShader, llvmpipe: what headless Chromium offers on a machine without a GPU) a
// 40-step edit takes minutes (12 min on the 2-core machine this was written on), so there the WebGPU check is a
// smoke run of 4 steps (backend, previews, no console errors, no tensor left) unless TEST_WEBGPU=full;
// TEST_WEBGPU=off skips it. On a hardware adapter it is the full check.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';
import { serveStatic } from './static-server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const dist = path.join(here, '..', 'dist');
const require = createRequire(import.meta.url);
const world = require('@ddsjs/toy-shapes');

const CHROMIUM = process.env.CHROMIUM ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
const SCREENSHOT = path.join(repo, 'docs', 'assets', 'web-page.png');
const STEPS = Number(process.env.TEST_STEPS ?? 40);
// 40 steps at the toy model's own lr (0.005, tuned for its 200-step loop) move the colour only a little; 0.02 lets a
// 40-step run of the page show the edit (the model's README: at higher lr the loop reaches the edit in few steps).
const LR = 0.02;
const SPEC = { shape: 'circle', colour: 'red', background: 'gray', cx: 32, cy: 32, radius: 16, width: 64, height: 64 };
const TARGET_COLOUR = 'blue';

if (!existsSync(path.join(dist, 'index.html'))) {
  console.error(`browser test: ${dist}/index.html is missing; run npm run web:build first`);
  process.exit(1);
}
if (!CHROMIUM) {
  console.error('browser test: no Chromium found; apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)');
  process.exit(1);
}

const server = await serveStatic(dist);
const browser = await puppeteer.launch({
  executablePath: CHROMIUM,
  headless: true,
  // A step on a software WebGPU adapter compiles its shaders on the page's thread: allow long calls.
  protocolTimeout: 900_000,
  // --no-sandbox: CI containers run as root. The WebGPU flags let Chromium offer an adapter where it can
  // (on a machine without a GPU: SwiftShader's Vulkan, if the build ships it).
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader', '--disable-dev-shm-usage'],
});
const failures = [];
const summary = { chromium: await browser.version(), backends: {} };

/** The median colour of the shape's pixels in RGBA bytes (the shape mask of SPEC). */
function shapeColour(rgba) {
  const scene = world.renderScene(SPEC);
  const rgb = new Uint8Array(64 * 64 * 3);
  for (let i = 0; i < 64 * 64; i++) rgb.set(rgba.slice(i * 4, i * 4 + 3), i * 3);
  return world.medianColour(rgb, scene.mask);
}

async function openPage(backend) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1000, height: 1000 });
  const errors = [];
  page.on('console', (m) => {
    // The loader probes the tokenizer's optional added_tokens.json (most models have none): a 404 the browser logs.
    if (m.type() === 'error' && !/added_tokens\.json$/.test(m.location()?.url ?? '')) errors.push(`${m.text()} ${m.location()?.url ?? ''}`);
    if (process.env.VERBOSE) console.log(`[page ${m.type()}] ${m.text()} ${m.location()?.url ?? ""}`);
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  // Chromium reports every HEAD request (the loader's probes for weight files) as "failed: net::ERR_ABORTED" even when
  // it answered 200, and logs nothing to the console for it: only other failures count.
  page.on('requestfailed', (r) => {
    if (r.method() !== 'HEAD') errors.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`);
  });
  await page.goto(`${server.url}?backend=${backend}`, { waitUntil: 'load' });
  await page.waitForFunction(() => window.ddsjs?.state.ready || window.ddsjs?.state.error, { timeout: 180_000 });
  const error = await page.evaluate(() => window.ddsjs.state.error);
  if (error) throw new Error(`the page did not start on ${backend}: ${error}`);
  return { page, errors };
}

async function setField(page, id, value) {
  await page.$eval(`#${id}`, (el, v) => (el.value = v), String(value));
}

async function runEdit(page, { screenshot, steps, every }) {
  await page.select('#toy-colour', SPEC.colour);
  await page.select('#toy-shape', SPEC.shape);
  await page.select('#toy-background', SPEC.background);
  await page.click('#use-toy');
  await setField(page, 'target', world.caption(TARGET_COLOUR, SPEC.shape, SPEC.background));
  await setField(page, 'method', 'dds');
  await setField(page, 'steps', steps);
  await setField(page, 'lr', LR);
  await setField(page, 'preview-every', every);
  const input = await page.evaluate(() => Array.from(document.getElementById('before').getContext('2d').getImageData(0, 0, 64, 64).data));
  await page.click('#run');
  const ticker = process.env.VERBOSE
    ? setInterval(() => page.$eval('#progress-text', (el) => el.textContent).then((t) => console.log(`[progress] ${t}`), () => undefined), 15_000)
    : undefined;
  if (screenshot) {
    await page.waitForFunction(() => window.ddsjs.state.previews.length >= 6 || !window.ddsjs.state.running, { timeout: 600_000 });
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }
  await page.waitForFunction(() => !window.ddsjs.state.running, { timeout: 600_000, polling: 200 });
  clearInterval(ticker);
  const result = await page.evaluate(() => ({
    state: window.ddsjs.state,
    output: Array.from(document.getElementById('after').getContext('2d').getImageData(0, 0, 64, 64).data),
    download: !document.getElementById('download').hidden,
  }));
  return { input, ...result };
}

async function checkBackend(backend, screenshot, smoke = false) {
  const { page, errors } = await openPage(backend);
  const got = await page.evaluate(() => window.ddsjs.state.backend);
  const note = await page.evaluate(() => window.ddsjs.state.backendNote);
  assert.equal(got, backend, `asked for ${backend}, the page runs on ${got}`);
  const steps = smoke ? 4 : STEPS;
  const r = await runEdit(page, { screenshot, steps, every: smoke ? 1 : 5 });
  assert.equal(r.state.error, null, `the edit failed on ${backend}: ${r.state.error}`);
  const run = r.state.lastRun;
  assert.equal(run.steps, steps);
  assert.ok(r.state.previews.length >= 3, `previews drawn at steps ${r.state.previews}`);
  assert.ok(r.output.some((v, i) => v !== r.input[i]), 'the result differs from the input');
  assert.equal(run.numTensorsAfter, run.numTensorsBefore, `numTensors ${run.numTensorsBefore} before the run, ${run.numTensorsAfter} after`);
  assert.deepEqual(errors, [], `console errors on ${backend}`);
  if (smoke) {
    summary.backends[backend] = { note, smoke: `${steps} steps`, stepsPerSecond: Number(run.stepsPerSecond.toFixed(3)), seconds: Number(run.seconds.toFixed(1)), numTensors: run.numTensorsAfter };
    await page.close();
    return;
  }
  assert.ok(r.download, 'the download link is shown after a run');
  const target = world.COLOURS[TARGET_COLOUR];
  const before = shapeColour(r.input);
  const after = shapeColour(r.output);
  const dBefore = world.colourDistance(before, target);
  const dAfter = world.colourDistance(after, target);
  assert.ok(dAfter < dBefore - 30, `the shape's colour should move toward ${TARGET_COLOUR} ${target}: ${before} → ${after} (distance ${dBefore.toFixed(0)} → ${dAfter.toFixed(0)})`);

  // The same edit again, timed warm (shaders compiled, buffers allocated): the steps/s the README reports.
  await page.click('#run');
  await page.waitForFunction(() => !window.ddsjs.state.running, { timeout: 600_000, polling: 200 });
  const warm = await page.evaluate(() => window.ddsjs.state.lastRun);
  assert.equal(warm.numTensorsAfter, warm.numTensorsBefore, 'no tensor growth over a second run');

  // Stop: a long run stopped after a few steps returns what it has and frees everything.
  await setField(page, 'steps', 1000);
  await page.click('#run');
  await page.waitForFunction(() => window.ddsjs.state.previews.length >= 1, { timeout: 300_000 });
  await page.click('#stop');
  await page.waitForFunction(() => !window.ddsjs.state.running, { timeout: 300_000 });
  const stopped = await page.evaluate(() => window.ddsjs.state.lastRun);
  assert.ok(stopped.stopped && stopped.steps < 1000, `Stop ends the run early (${stopped.steps} steps)`);
  assert.equal(stopped.numTensorsAfter, stopped.numTensorsBefore, `after Stop numTensors ${stopped.numTensorsAfter}, before ${stopped.numTensorsBefore}`);
  const loaded = await page.evaluate(() => window.ddsjs.state.numTensorsLoaded);
  assert.equal(stopped.numTensorsAfter, loaded, 'only the model weights remain');
  assert.deepEqual(errors, [], `console errors on ${backend}`);
  summary.backends[backend] = {
    note,
    stepsPerSecond: Number(run.stepsPerSecond.toFixed(2)),
    warmStepsPerSecond: Number(warm.stepsPerSecond.toFixed(2)),
    seconds: Number(run.seconds.toFixed(1)),
    colour: { before, after, target, distance: [Number(dBefore.toFixed(1)), Number(dAfter.toFixed(1))] },
    numTensors: run.numTensorsAfter,
  };
  await page.close();
}

async function webgpuAdapter() {
  const page = await browser.newPage();
  await page.goto(server.url + 'style.css');
  const info = await page.evaluate(async () => {
    if (!navigator.gpu) return null;
    const a = await navigator.gpu.requestAdapter().catch(() => null);
    return a ? [a.info?.vendor, a.info?.architecture, a.info?.description].filter(Boolean).join(' ') || 'adapter' : null;
  });
  await page.close();
  return info;
}

try {
  const wanted = (process.env.TEST_BACKENDS ?? 'wasm,webgpu').split(',');
  if (wanted.includes('wasm')) {
    try {
      await checkBackend('wasm', true);
    } catch (e) {
      failures.push(`wasm: ${e.message}`);
    }
  }
  if (wanted.includes('webgpu')) {
    const adapter = await webgpuAdapter();
    summary.webgpuAdapter = adapter;
    const software = /swiftshader|llvmpipe|software/i.test(adapter ?? '');
    const mode = process.env.TEST_WEBGPU ?? (software ? 'smoke' : 'full');
    if (!adapter) console.log('browser test: this headless Chromium offers no WebGPU adapter; the WebGPU run is skipped');
    else if (mode === 'off') console.log(`browser test: WebGPU (${adapter}) skipped (TEST_WEBGPU=off)`);
    else {
      if (mode === 'smoke') console.log(`browser test: WebGPU adapter ${adapter} is a software one: a 4-step smoke run (TEST_WEBGPU=full for the 40-step edit)`);
      try {
        await checkBackend('webgpu', !wanted.includes('wasm'), mode === 'smoke');
      } catch (e) {
        failures.push(`webgpu (${adapter}): ${e.message}${process.env.VERBOSE ? `\n${e.stack}\ncause: ${e.cause?.stack ?? e.cause}` : ""}`);
      }
    }
  }
} finally {
  await browser.close();
  await server.close();
}
console.log(JSON.stringify(summary, null, 2));
await writeFile(path.join(dist, 'browser-test-summary.json'), JSON.stringify(summary, null, 2));
if (failures.length) {
  console.error(`browser test FAILED:\n- ${failures.join('\n- ')}`);
  process.exit(1);
}
console.log(`browser test passed (${Object.keys(summary.backends).join(', ')}); screenshot ${path.relative(repo, SCREENSHOT)}`);
