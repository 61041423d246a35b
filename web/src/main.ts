// The ddsjs editing page: loads a diffusers model folder over HTTP (the embedded toy model by default), edits a
// picture with DDS or SDS on WebGPU (else wasm), previews every few steps. Everything is freed on Stop.
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { initBackend, type BackendName } from '@ddsjs/nn';
import { imageToBlob, imageToRgba, loadImageForEditInBrowser, loadStableDiffusion, type StableDiffusion } from '@ddsjs/sd';
import { editImage } from '@ddsjs/dds';
import { BACKGROUND_NAMES, COLOUR_NAMES, SHAPES, caption, captions, renderScene, type RenderedScene } from '@ddsjs/toy-shapes';

/** What the page exposes for tests and the console (`window.ddsjs`). */
interface PageState {
  backend: string;
  backendNote: string;
  ready: boolean;
  model: string | null;
  running: boolean;
  /** Set after each run (finished or stopped). */
  lastRun: null | {
    method: string;
    steps: number;
    requested: number;
    seconds: number;
    stepsPerSecond: number;
    stopped: boolean;
    numTensorsBefore: number;
    numTensorsAfter: number;
  };
  /** numTensors when the model was loaded (weights only). */
  numTensorsLoaded: number;
  /** The preview steps drawn during the last run. */
  previews: number[];
  error: string | null;
}

const state: PageState = {
  backend: '',
  backendNote: '',
  ready: false,
  model: null,
  running: false,
  lastRun: null,
  numTensorsLoaded: 0,
  previews: [],
  error: null,
};
(window as unknown as { ddsjs: unknown }).ddsjs = {
  tf,
  state,
  run: () => run(),
  stop: () => stop(),
  /** The loaded pipeline (for the console), or null. */
  get sd() {
    return sd;
  },
};

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el as T;
};
const input = (id: string) => $<HTMLInputElement>(id);
const select = (id: string) => $<HTMLSelectElement>(id);

let sd: StableDiffusion | null = null;
/** The picture to edit: pixels (a toy picture) or something a canvas can draw (a decoded file). */
let picture: ImageData | ImageBitmap | null = null;
let pictureName = 'picture';
let abort: AbortController | null = null;

function showError(e: unknown): void {
  const msg = e instanceof Error ? e.message : String(e);
  state.error = msg;
  const el = $('error');
  el.textContent = msg;
  el.hidden = false;
  console.error(e);
}
function clearError(): void {
  state.error = null;
  $('error').hidden = true;
}

function showMemory(): void {
  const m = tf.memory();
  $('memory').textContent = `tensors: ${m.numTensors} · ${(m.numBytes / 1e6).toFixed(1)} MB on ${tf.getBackend()}`;
}

/** Draws RGBA pixels on a canvas (resizing the canvas to them). */
function draw(canvasId: string, px: { data: Uint8ClampedArray; width: number; height: number }): void {
  const c = $<HTMLCanvasElement>(canvasId);
  c.width = px.width;
  c.height = px.height;
  c.getContext('2d')!.putImageData(new ImageData(px.data as Uint8ClampedArray<ArrayBuffer>, px.width, px.height), 0, 0);
}

async function drawTensor(canvasId: string, image: tf.Tensor4D): Promise<void> {
  draw(canvasId, await imageToRgba(image));
}

// ---- backend -------------------------------------------------------------------------------------------------

async function startBackend(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const want = (params.get('backend') ?? 'auto') as BackendName;
  select('backend-choice').value = want;
  setWasmPaths(new URL('wasm/', location.href).href);
  let note = '';
  const backend = await initBackend(want, { logger: (m) => console.info(m) });
  if (backend === 'wasm') {
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const threads = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
    note = `(SIMD ${simd ? 'on' : 'off'}, threads ${threads ? 'on' : 'off'})`;
    if (want === 'auto') note += ' — no WebGPU adapter in this browser';
  } else if (backend === 'webgpu') {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<{ info?: { vendor?: string; architecture?: string; description?: string } } | null> } }).gpu;
    const adapter = await gpu?.requestAdapter();
    const info = adapter?.info;
    note = info ? `(${[info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'adapter'})` : '';
  }
  state.backend = backend;
  state.backendNote = note;
  $('backend').textContent = backend;
  $('backend-note').textContent = note;
}

// ---- model -----------------------------------------------------------------------------------------------------

async function loadModel(): Promise<void> {
  clearError();
  const url = new URL(input('model-url').value.trim() || 'models/toy-shapes/', location.href).href;
  const status = $('model-status');
  $<HTMLButtonElement>('run').disabled = true;
  sd?.dispose();
  sd = null;
  state.model = null;
  const started = performance.now();
  status.textContent = `loading ${url} …`;
  try {
    sd = await loadStableDiffusion(url, {
      variant: input('model-fp16').checked ? 'fp16' : undefined,
      onProgress: (done, total) => (status.textContent = `loading ${url}: ${done}/${total} tensors`),
    });
  } catch (e) {
    status.textContent = 'not loaded';
    showError(e);
    return;
  }
  const native = (sd.configs.unet.sampleSize ?? 64) * sd.vaeScaleFactor;
  input('size').value = String(native);
  const params = sd.unet.parameterCount() + sd.vae.parameterCount() + sd.textEncoder.parameterCount();
  status.textContent = `loaded ${url} in ${((performance.now() - started) / 1000).toFixed(1)} s: ${(params / 1e6).toFixed(2)} M parameters, native size ${native} px${sd.defaults.edit?.lr ? `, its edit lr ${sd.defaults.edit.lr}` : ''}`;
  input('lr').placeholder = `model default ${sd.defaults.edit?.lr ?? 0.1}`;
  state.model = url;
  state.numTensorsLoaded = tf.memory().numTensors;
  $<HTMLButtonElement>('run').disabled = false;
  showMemory();
}

// ---- picture ---------------------------------------------------------------------------------------------------

function toyPicture(size: number): RenderedScene {
  return renderScene({
    shape: select('toy-shape').value as (typeof SHAPES)[number],
    colour: select('toy-colour').value as (typeof COLOUR_NAMES)[number],
    background: select('toy-background').value as (typeof BACKGROUND_NAMES)[number],
    cx: size / 2,
    cy: size / 2,
    radius: size / 4,
    width: size,
    height: size,
  });
}

function useToyPicture(): void {
  const size = Number(input('size').value) || 64;
  const scene = toyPicture(size);
  const rgba = new Uint8ClampedArray(size * size * 4);
  for (let i = 0; i < size * size; i++) {
    rgba.set(scene.image.subarray(i * 3, i * 3 + 3), i * 4);
    rgba[i * 4 + 3] = 255;
  }
  picture = new ImageData(rgba, size, size);
  pictureName = scene.caption.replace(/\s+/g, '-');
  draw('before', { data: rgba, width: size, height: size });
  input('source').value = scene.caption;
  if (!input('target').value) {
    const other = COLOUR_NAMES.find((c) => c !== select('toy-colour').value)!;
    input('target').value = caption(other, select('toy-shape').value as (typeof SHAPES)[number], select('toy-background').value as (typeof BACKGROUND_NAMES)[number]);
  }
}

async function useFile(file: File): Promise<void> {
  clearError();
  try {
    picture = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch (e) {
    showError(new Error(`${file.name} is not a picture this browser can decode (${(e as Error).message})`));
    return;
  }
  pictureName = file.name.replace(/\.[^.]*$/, '');
  const preview = await loadImageForEditInBrowser(picture, { size: Number(input('size').value) || 64 });
  const unit = tf.tidy(() => tf.add(tf.div(preview, 2), 0.5) as tf.Tensor4D);
  await drawTensor('before', unit);
  tf.dispose([preview, unit]);
}

// ---- the edit --------------------------------------------------------------------------------------------------

function numberField(id: string, fallback?: number): number | undefined {
  const v = input(id).value.trim();
  if (v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${id}: not a number: ${JSON.stringify(v)}`);
  return n;
}

async function run(): Promise<void> {
  if (state.running) return;
  clearError();
  if (!sd) return showError(new Error('load a model first'));
  if (!picture) useToyPicture();
  const before = tf.memory().numTensors;
  state.running = true;
  state.previews = [];
  abort = new AbortController();
  $<HTMLButtonElement>('run').disabled = true;
  $<HTMLButtonElement>('stop').disabled = false;
  $<HTMLAnchorElement>('download').hidden = true;
  const progress = $<HTMLProgressElement>('progress');
  const text = $('progress-text');
  const started = performance.now();
  let taken = 0;
  let requested = 0;
  let image: tf.Tensor4D | null = null;
  try {
    const method = select('method').value as 'dds' | 'sds';
    const steps = numberField('steps', 40)!;
    requested = steps;
    const every = Math.max(1, numberField('preview-every', 5)!);
    const size = numberField('size', 64)!;
    image = await loadImageForEditInBrowser(picture!, { size });
    progress.max = steps;
    progress.value = 0;
    const res = await editImage(sd, image, {
      source: input('source').value,
      target: input('target').value,
      method,
      steps,
      lr: numberField('lr'),
      guidanceScale: numberField('guidance', 7.5),
      seed: numberField('seed'),
      signal: abort.signal,
      onStep: async (info) => {
        taken = info.step + 1;
        progress.value = taken;
        text.textContent = `step ${taken}/${info.steps} · ${(taken / (info.elapsedMs / 1000)).toFixed(2)} steps/s · t=${info.timestep}`;
        if (taken % every === 0 && taken < info.steps) {
          const preview = sd!.decodeLatents(info.latent);
          try {
            await drawTensor('after', preview);
          } finally {
            preview.dispose();
          }
          state.previews.push(taken);
        }
        showMemory();
      },
    });
    try {
      await drawTensor('after', res.image);
      const blob = await imageToBlob(res.image);
      const link = $<HTMLAnchorElement>('download');
      if (link.href) URL.revokeObjectURL(link.href);
      link.href = URL.createObjectURL(blob);
      link.download = `${pictureName}-${method}.png`;
      link.hidden = false;
    } finally {
      tf.dispose([res.image, res.latent]);
    }
    const seconds = (performance.now() - started) / 1000;
    text.textContent = `${abort.signal.aborted ? 'stopped after' : 'done:'} ${res.steps} steps in ${seconds.toFixed(1)} s · ${(res.steps / seconds).toFixed(2)} steps/s`;
    state.lastRun = {
      method,
      steps: res.steps,
      requested,
      seconds,
      stepsPerSecond: res.steps / seconds,
      stopped: abort.signal.aborted,
      numTensorsBefore: before,
      numTensorsAfter: 0,
    };
  } catch (e) {
    showError(e);
    state.lastRun = null;
  } finally {
    image?.dispose();
    state.running = false;
    abort = null;
    $<HTMLButtonElement>('run').disabled = false;
    $<HTMLButtonElement>('stop').disabled = true;
    if (state.lastRun) state.lastRun.numTensorsAfter = tf.memory().numTensors;
    showMemory();
    void taken;
  }
}

function stop(): void {
  abort?.abort();
}

// ---- wiring ------------------------------------------------------------------------------------------------------

function fillSelect(id: string, values: readonly string[], value: string): void {
  const s = select(id);
  for (const v of values) s.add(new Option(v, v));
  s.value = value;
}

async function main(): Promise<void> {
  fillSelect('toy-colour', COLOUR_NAMES, 'red');
  fillSelect('toy-shape', SHAPES, 'circle');
  fillSelect('toy-background', BACKGROUND_NAMES, 'gray');
  const list = $('vocabulary');
  for (const c of captions('all')) list.appendChild(new Option(c));
  $('vocab-line').textContent = `The toy model knows: a {${COLOUR_NAMES.join(', ')}} {${SHAPES.join(', ')}} on a {${BACKGROUND_NAMES.join(', ')}} background.`;
  $('use-toy').addEventListener('click', () => {
    input('target').value = '';
    useToyPicture();
  });
  input('file').addEventListener('change', () => {
    const f = input('file').files?.[0];
    if (f) void useFile(f);
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files?.[0];
    if (f) void useFile(f);
  });
  $('load-model').addEventListener('click', () => void loadModel());
  $('run').addEventListener('click', () => void run());
  $('stop').addEventListener('click', stop);
  select('backend-choice').addEventListener('change', () => {
    const p = new URLSearchParams(location.search);
    p.set('backend', select('backend-choice').value);
    location.search = p.toString();
  });
  window.addEventListener('unhandledrejection', (e) => showError(e.reason));
  await startBackend();
  useToyPicture();
  await loadModel();
  state.ready = true;
}

main().catch(showError);
