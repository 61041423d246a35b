import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { DdsError, InvalidArgumentError } from '@ddsjs/safetensors';

// Plain `require` so that bundlers and tsc do not try to resolve the optional peer dependencies.
declare const require: (id: string) => unknown;

/**
 * Node's `fs` and `path`, loaded on first use through {@link tryRequire} (a variable id, which bundlers do not
 * follow): this module is bundled for browsers too, which never reach the code that reads files.
 */
function nodeFs(): typeof import('node:fs') {
  return tryRequire('node:fs') as typeof import('node:fs');
}
function nodePath(): typeof import('node:path') {
  return tryRequire('node:path') as typeof import('node:path');
}

/** Backends ddsjs can run on. `'auto'` picks the best one installed. */
export type BackendName = 'auto' | 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';

/** The concrete backends {@link initBackend} can select (everything but `'auto'`). */
export const BACKEND_NAMES: readonly Exclude<BackendName, 'auto'>[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /**
   * Do not log the selected backend. Defaults to true under Jest (`JEST_WORKER_ID` set) so test output stays
   * clean, false otherwise.
   */
  quiet?: boolean;
  /** Where the one-line "backend: …" message goes (default `console.error`, so stdout stays clean for pipes). */
  logger?: (message: string) => void;
  /**
   * For `'auto'`: the size in bytes of the model's weights on disk (see {@link modelWeightBytes}). With the CPU
   * build of tfjs-node installed, models under {@link TENSORFLOW_MIN_MODEL_BYTES} run on wasm (tensorflow's per-op
   * cost dominates on small models), larger ones on tensorflow. Unknown (undefined): tensorflow when installed.
   */
  modelBytes?: number;
}

/**
 * The weight size from which `initBackend('auto')` prefers tfjs-node's CPU `tensorflow` backend over wasm.
 * Measured (bench/backends.js, 2 quiet cores): the 11 MB toy model's 200-step DDS edit takes 7.8 s on wasm and
 * 16.3 s on tensorflow; a half-width SD1.5-shaped UNet (~430 MB in fp16) at 32×32 batch 4 12.1 s and 1.7 s.
 */
export const TENSORFLOW_MIN_MODEL_BYTES = 100 * 1024 ** 2;

const WEIGHT_FILE = /\.(safetensors|bin|ckpt|pt|pth)$/i;

/**
 * The size in bytes of the weights at `modelPath`: the file itself, or, per folder (recursively), the weight files
 * one load would read — `.safetensors` when present, else `.bin`/`.ckpt`/`.pt`/`.pth`; of those, the
 * `*.<variant>.*` files when `variant` is given and present, else the untagged ones (the fp16/bf16 ones when they are
 * all there is). Returns 0 when nothing matches; throws when the path does not exist.
 */
export function modelWeightBytes(modelPath: string, variant?: string): number {
  const st = nodeFs().statSync(modelPath);
  if (st.isFile()) return st.size;
  const tagged = (n: string, v: string) => n.includes(`.${v}.`);
  let total = 0;
  const walk = (dir: string): void => {
    const entries = nodeFs().readdirSync(dir, { withFileTypes: true });
    let files = entries.filter((e) => e.isFile() && WEIGHT_FILE.test(e.name)).map((e) => e.name);
    if (files.some((n) => n.endsWith('.safetensors'))) files = files.filter((n) => n.endsWith('.safetensors'));
    const ofVariant = variant ? files.filter((n) => tagged(n, variant)) : [];
    const untagged = files.filter((n) => !tagged(n, 'fp16') && !tagged(n, 'bf16'));
    const pick = ofVariant.length ? ofVariant : untagged.length ? untagged : files;
    for (const n of pick) total += nodeFs().statSync(nodePath().join(dir, n)).size;
    for (const e of entries) if (e.isDirectory() && !e.name.startsWith('.') && e.name !== 'node_modules') walk(nodePath().join(dir, e.name));
  };
  walk(modelPath);
  return total;
}

/** Why a backend could not be loaded, to tell the user what to install. */
const INSTALL_HINT: Record<Exclude<BackendName, 'auto'>, string> = {
  tensorflow:
    'in a ddsjs clone run `npm run setup:tensorflow` (offline, from a pip TensorFlow wheel; `-- --gpu` for CUDA 12), ' +
    'else `npm install @tensorflow/tfjs-node --allow-scripts=@tensorflow/tfjs-node` (its install script downloads ' +
    'libtensorflow and must be allowed to run; @tensorflow/tfjs-node-gpu for CUDA 11)',
  webgpu: 'npm install webgpu @tensorflow/tfjs-backend-webgpu (and a GPU driver with Vulkan/Metal/D3D12 support, or Mesa\'s OpenGL ES (libegl-mesa0, libgles2) for the slow compatibility adapter)',
  wasm: 'npm install @tensorflow/tfjs-backend-wasm',
  cpu: 'npm install @tensorflow/tfjs',
};

let loggedBackend: string | null = null;

/** An environment variable, or undefined where there is no `process` (a browser). */
const envVar = (name: string): string | undefined => (typeof process !== 'undefined' ? process.env?.[name] : undefined);


function tryRequire(id: string): unknown {
  try {
    return require(id);
  } catch {
    return undefined;
  }
}

/** Which tfjs-node package registered the 'tensorflow' backend in this process (null: none yet). */
let tensorflowPackage: string | null = null;

function resolvable(id: string): boolean {
  try {
    (require as unknown as { resolve(id: string): string }).resolve(id);
    return true;
  } catch {
    return false;
  }
}

/**
 * Loads tfjs-node(-gpu), which registers the 'tensorflow' backend. Returns the package loaded, or null.
 * TensorFlow's C++ info lines ("oneDNN custom operations are on…") are silenced unless TF_CPP_MIN_LOG_LEVEL is set.
 */
function loadTensorflow(): string | null {
  if (tf.findBackendFactory('tensorflow')) return tensorflowPackage ?? 'already registered';
  process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';
  for (const id of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    if (tryRequire(id) !== undefined && tf.findBackendFactory('tensorflow')) return (tensorflowPackage = id);
  }
  return null;
}

/**
 * Whether this machine shows a GPU device to user space (Linux: a DRM render node or an NVIDIA device; other
 * systems: assumed). `'auto'` probes WebGPU only then, so that Dawn (and its "Couldn't load Vulkan" warning) is never
 * loaded on a machine without a GPU unless webgpu is asked for.
 */
function gpuDeviceVisible(): boolean {
  if (process.platform !== 'linux') return true;
  try {
    if (nodeFs().readdirSync('/dev/dri').some((n) => n.startsWith('renderD'))) return true;
  } catch {
    /* no /dev/dri */
  }
  return nodeFs().existsSync('/dev/nvidia0') || nodeFs().existsSync('/dev/dxg');
}

interface DawnModule {
  create(flags: string[]): unknown;
  globals?: Record<string, unknown>;
}

/** What the last successful {@link loadWebgpu} found, for the "backend: …" log line (empty: a regular adapter). */
let webgpuNote = '';

/**
 * The Dawn bindings of the `webgpu` npm package. The package is an ES module, which `require` loads on Node ≥ 20.19
 * but not on older Node 20 nor inside Jest's module system; then its platform binary (`dist/<platform>-<arch>/
 * dawn.node`, the same `{ create, globals }` the module re-exports) is loaded directly.
 */
function loadDawn(): DawnModule | undefined {
  const m = tryRequire('webgpu') as DawnModule | undefined;
  if (m && typeof m.create === 'function') return m;
  try {
    const resolve = (require as unknown as { resolve(id: string): string }).resolve;
    const dir = resolve('webgpu/package.json').replace(/[\\/]package\.json$/, '');
    const arch = process.platform === 'darwin' ? 'universal' : process.arch;
    const native = tryRequire(`${dir}/dist/${process.platform}-${arch}/dawn.node`) as DawnModule | undefined;
    return native && typeof native.create === 'function' ? native : undefined;
  } catch {
    return undefined;
  }
}

interface GpuLike {
  requestAdapter(o?: Record<string, unknown>): Promise<{ info?: { description?: string } } | null>;
}

/**
 * Exposes a Dawn (`webgpu` npm package) GPU as `globalThis.navigator.gpu`, then loads
 * @tensorflow/tfjs-backend-webgpu and checks that an adapter exists. Returns an error text, or null on success.
 *
 * With `allowCompat` (an explicit `initBackend('webgpu')`), when Dawn finds no Vulkan/Metal/D3D12 adapter it tries
 * Dawn's OpenGL ES backend with a WebGPU *compatibility-mode* adapter (`featureLevel: 'compatibility'`; on a machine
 * without a GPU that is Mesa's software renderer, with `EGL_PLATFORM=surfaceless` unless set). tfjs-backend-webgpu
 * asks for a core adapter, so `navigator.gpu.requestAdapter` is then wrapped to ask for a compatibility one.
 * `'auto'` never takes such an adapter (on software GL it is slower than wasm).
 */
async function loadWebgpu(allowCompat: boolean): Promise<string | null> {
  const g = globalThis as unknown as { navigator?: { gpu?: unknown } };
  const expose = (gpu: unknown): string | null => {
    if (g.navigator) {
      try {
        Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
      } catch {
        return 'could not expose navigator.gpu';
      }
    } else {
      g.navigator = { gpu };
    }
    return null;
  };
  let dawn: DawnModule | undefined;
  if (!g.navigator?.gpu) {
    dawn = loadDawn();
    if (!dawn) return 'the `webgpu` (Dawn) package is not installed';
    if (dawn.globals) Object.assign(globalThis, dawn.globals);
    const err = expose(dawn.create([]));
    if (err) return err;
  }
  const gpu = g.navigator?.gpu as GpuLike | undefined;
  const request = async (o: Record<string, unknown>, from: GpuLike | undefined = gpu) => {
    try {
      return from ? await from.requestAdapter(o) : null;
    } catch {
      return null;
    }
  };
  let adapter = await request({ powerPreference: 'high-performance' });
  if (adapter) webgpuNote = '';
  if (!adapter && allowCompat) {
    dawn ??= loadDawn();
    if (dawn) {
      process.env.EGL_PLATFORM ??= 'surfaceless';
      const gles = dawn.create(['backend=opengles']) as GpuLike & Record<string | symbol, unknown>;
      adapter = await request({ featureLevel: 'compatibility' }, gles);
      if (adapter) {
        const compat = new Proxy(gles, {
          get(target, prop) {
            if (prop === 'requestAdapter') return (o: Record<string, unknown> = {}) => target.requestAdapter({ ...o, featureLevel: 'compatibility' });
            const v = target[prop];
            return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
          },
        });
        const err = expose(compat);
        if (err) return err;
        webgpuNote = ` (WebGPU compatibility adapter on OpenGL ES: ${adapter.info?.description || 'unknown driver'}; on a software renderer such as Mesa's llvmpipe it is slower than wasm)`;
      }
    }
  }
  if (!adapter) return 'no WebGPU adapter was found';
  if (!tf.findBackendFactory('webgpu') && tryRequire('@tensorflow/tfjs-backend-webgpu') === undefined) {
    return '@tensorflow/tfjs-backend-webgpu is not installed';
  }
  if (!tf.findBackendFactory('webgpu')) return '@tensorflow/tfjs-backend-webgpu did not register a backend';
  return null;
}

function mb(bytes: number): string {
  return `${Math.round(bytes / 1024 ** 2)} MB`;
}

/**
 * Why `'auto'` passes over an installed CPU tfjs-node for this model (null: it does not). The GPU build is always
 * taken; the CPU build only for models of at least {@link TENSORFLOW_MIN_MODEL_BYTES}.
 */
function tensorflowSkipReason(modelBytes: number | undefined): string | null {
  if (modelBytes === undefined || modelBytes >= TENSORFLOW_MIN_MODEL_BYTES) return null;
  if (tensorflowPackage === '@tensorflow/tfjs-node-gpu' || (tensorflowPackage === null && resolvable('@tensorflow/tfjs-node-gpu'))) return null;
  if (!resolvable('@tensorflow/tfjs-node') && !tf.findBackendFactory('tensorflow')) return null; // tryBackend says why
  return `the model's weights are ${mb(modelBytes)}, under ${mb(TENSORFLOW_MIN_MODEL_BYTES)}, where wasm is faster than tfjs-node's CPU build; --backend tensorflow overrides`;
}

function tensorflowChoiceReason(modelBytes: number | undefined): string {
  if (tensorflowPackage === '@tensorflow/tfjs-node-gpu') return 'tfjs-node-gpu is installed';
  if (modelBytes === undefined) return 'tfjs-node is installed and no model size was given';
  return `the model's weights are ${mb(modelBytes)}, at least ${mb(TENSORFLOW_MIN_MODEL_BYTES)}, where tfjs-node is faster than wasm`;
}

/** Makes `name` the active backend; returns an error text or null. */
async function activate(name: string): Promise<string | null> {
  try {
    const ok = await tf.setBackend(name);
    if (!ok) return `tf.setBackend('${name}') failed`;
    await tf.ready();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

async function tryBackend(name: Exclude<BackendName, 'auto'>, explicit: boolean): Promise<string | null> {
  if (name === 'tensorflow') {
    if (!loadTensorflow()) return 'neither @tensorflow/tfjs-node-gpu nor @tensorflow/tfjs-node is installed';
  } else if (name === 'webgpu') {
    const err = await loadWebgpu(explicit);
    if (err) return err;
  }
  return activate(name);
}

/**
 * Selects and initialises the tfjs backend and returns the name of the backend in use.
 *
 * `'auto'` (the default) picks the first that works of: `'tensorflow'` (when @tensorflow/tfjs-node-gpu is installed;
 * or @tensorflow/tfjs-node and the model is large — `options.modelBytes` unknown or at least
 * {@link TENSORFLOW_MIN_MODEL_BYTES}, as measured: below it wasm is faster), `'webgpu'` (when a GPU device is visible,
 * the `webgpu` Dawn package and @tensorflow/tfjs-backend-webgpu are installed and an adapter is found; Dawn is not
 * loaded otherwise), `'wasm'`, `'cpu'`; the log line gives the reason for the choice. An explicit `'webgpu'`
 * also accepts, when no Vulkan/Metal/D3D12 adapter exists, Dawn's OpenGL ES compatibility-mode adapter (on a machine
 * without a GPU: Mesa's software renderer — correct, but slower than wasm; the log line says so).
 * The `DDSJS_BACKEND` environment variable, when set, overrides `name`.
 *
 * An explicit name that cannot be loaded throws an Error saying what to install; an unknown name throws an
 * Error listing the valid ones. The chosen backend is logged once per process (see {@link InitBackendOptions}).
 */
export async function initBackend(name: BackendName = 'auto', options: InitBackendOptions = {}): Promise<string> {
  const env = envVar('DDSJS_BACKEND')?.trim();
  const want = (env ? env : name) as string;
  const source = env ? 'DDSJS_BACKEND' : 'initBackend';
  if (want !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(want)) {
    throw new InvalidArgumentError(`${source}: unknown backend '${want}'; expected one of auto, ${BACKEND_NAMES.join(', ')}`);
  }
  let reason = '';
  if (want === 'auto') {
    const failures: string[] = [];
    let found: string | null = null;
    for (const candidate of BACKEND_NAMES) {
      if (candidate === 'webgpu' && !gpuDeviceVisible()) {
        failures.push('webgpu: no GPU device');
        continue;
      }
      if (candidate === 'tensorflow') {
        const skip = tensorflowSkipReason(options.modelBytes);
        if (skip) {
          failures.push(`tensorflow: ${skip}`);
          reason = skip;
          continue;
        }
      }
      const err = await tryBackend(candidate, false);
      if (!err) {
        found = candidate;
        if (candidate === 'tensorflow') reason = tensorflowChoiceReason(options.modelBytes);
        break;
      }
      failures.push(`${candidate}: ${err}`);
    }
    if (!found) throw new DdsError('UNSUPPORTED', `initBackend: no tfjs backend could be started (${failures.join('; ')})`);
    reason = reason ? ` (auto: ${reason})` : '';
  } else {
    const target = want as Exclude<BackendName, 'auto'>;
    if (tf.getBackend() !== target || !tf.findBackend(target)) {
      const err = await tryBackend(target, true);
      if (err) {
        throw new DdsError('UNSUPPORTED', `${source}: the '${target}' backend is not available (${err}); to use it: ${INSTALL_HINT[target]}`);
      }
    }
  }
  const active = tf.getBackend();
  const quiet = options.quiet ?? envVar('JEST_WORKER_ID') !== undefined;
  if (active === 'cpu' && quiet) {
    // tfjs-backend-cpu prints a "install tfjs-node" banner on first use; the caller chose cpu knowingly.
    const cpu = tf.backend() as unknown as { firstUse?: boolean };
    if (cpu.firstUse) cpu.firstUse = false;
  }
  if (!quiet && loggedBackend !== active) {
    (options.logger ?? ((m: string) => console.error(m)))(`ddsjs: using the tfjs '${active}' backend${active === 'webgpu' ? webgpuNote : ''}${reason}`);
    loggedBackend = active;
  }
  return active;
}

/** 4 GiB: the most a wasm32 heap can address. */
export const WASM_HEAP_LIMIT_BYTES = 4 * 1024 ** 3;

/**
 * The most tensor memory the active backend can hold, in bytes, or `Infinity` when the backend has no fixed
 * limit ddsjs knows of (cpu, tensorflow, webgpu are bounded by host/GPU memory only). For wasm it is the
 * wasm32 heap limit (4 GiB), shared by every tensor, weights and activations alike.
 */
export function backendMemoryLimitBytes(backend: string = tf.getBackend()): number {
  return backend === 'wasm' ? WASM_HEAP_LIMIT_BYTES : Infinity;
}

function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1024 ** 2) return `${(n / 1e6).toFixed(1)} MB`;
  return `${n} bytes`;
}

/**
 * Throws a clear Error when `bytesNeeded` bytes (e.g. a model's float32 weights, `what` names them) plus
 * `headroomBytes` (e.g. an estimate of the activations) cannot fit in the backend's memory limit
 * ({@link backendMemoryLimitBytes}) alongside what is already allocated on it, instead of a later wasm memory
 * fault. `backend` defaults to the active one. Returns normally on backends without a fixed limit.
 */
export function assertFits(bytesNeeded: number, what: string, backend: string = tf.getBackend(), headroomBytes = 0): void {
  if (!Number.isFinite(bytesNeeded) || bytesNeeded < 0) {
    throw new InvalidArgumentError(`assertFits: bytesNeeded must be a non-negative number, got ${bytesNeeded} (for ${what})`);
  }
  const limit = backendMemoryLimitBytes(backend);
  if (!Number.isFinite(limit)) return;
  const used = backend === tf.getBackend() ? tf.memory().numBytes : 0;
  if (bytesNeeded + headroomBytes + used > limit) {
    const extra = [used > 0 ? `${formatBytes(used)} already allocated` : '', headroomBytes > 0 ? `${formatBytes(headroomBytes)} kept free for activations` : '']
      .filter(Boolean)
      .join(', ');
    const already = extra ? ` (${extra})` : '';
    throw new InvalidArgumentError(
      `${what} needs ${formatBytes(bytesNeeded)} of float32 weights; the ${backend} backend's heap stops at ` +
        `${limit / 1024 ** 3} GiB${already}. Use --backend tensorflow|webgpu|cpu (DDSJS_BACKEND=…) instead.`,
    );
  }
}
