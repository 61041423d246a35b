import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import {
  initBackend,
  backendMemoryLimitBytes,
  assertFits,
  modelWeightBytes,
  TENSORFLOW_MIN_MODEL_BYTES,
  WASM_HEAP_LIMIT_BYTES,
} from '@ddsjs/nn';

function installed(id: string): boolean {
  try {
    require.resolve(id);
    return true;
  } catch {
    return false;
  }
}

describe('initBackend', () => {
  const saved = process.env.DDSJS_BACKEND;
  afterEach(() => {
    if (saved === undefined) delete process.env.DDSJS_BACKEND;
    else process.env.DDSJS_BACKEND = saved;
  });

  test('explicit names select that backend', async () => {
    delete process.env.DDSJS_BACKEND;
    expect(await initBackend('cpu')).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(await initBackend('wasm')).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  test('DDSJS_BACKEND overrides the argument', async () => {
    process.env.DDSJS_BACKEND = 'cpu';
    expect(await initBackend('wasm')).toBe('cpu');
    process.env.DDSJS_BACKEND = 'wasm';
    expect(await initBackend('cpu')).toBe('wasm');
  });

  test('auto takes wasm for a small model and, with tfjs-node installed, tensorflow for a large one', async () => {
    delete process.env.DDSJS_BACKEND;
    const lines: string[] = [];
    const small = await initBackend('auto', { modelBytes: 13e6, quiet: false, logger: (m) => lines.push(m) });
    expect(small).toBe(installed('@tensorflow/tfjs-node-gpu') ? 'tensorflow' : 'wasm');
    if (installed('@tensorflow/tfjs-node') && !installed('@tensorflow/tfjs-node-gpu')) {
      expect(lines).toEqual([expect.stringMatching(/'wasm' backend \(auto: the model's weights are 12 MB, under 100 MB, where wasm is faster/)]);
    }
    const large = await initBackend('auto', { modelBytes: TENSORFLOW_MIN_MODEL_BYTES, quiet: false, logger: (m) => lines.push(m) });
    expect(large).toBe(installed('@tensorflow/tfjs-node') || installed('@tensorflow/tfjs-node-gpu') ? 'tensorflow' : 'wasm');
    await initBackend('wasm');
  });

  test('auto does not load Dawn (webgpu) on a machine that shows no GPU device', () => {
    // A fresh process: Dawn prints "Couldn't load Vulkan" to stderr when it starts without a GPU.
    const hasGpuNode = fs.existsSync('/dev/dri') || fs.existsSync('/dev/nvidia0') || fs.existsSync('/dev/dxg');
    const nn = path.resolve(__dirname, '..', 'dist', 'index.js');
    const code = `require(${JSON.stringify(nn)}).initBackend('auto', { modelBytes: 1e6 }).then(() => {
      process.stdout.write(String(Boolean(globalThis.navigator && globalThis.navigator.gpu))); process.exit(0); })`;
    const env = { ...process.env };
    delete env.DDSJS_BACKEND;
    delete env.JEST_WORKER_ID;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', env });
    expect(r.status).toBe(0);
    if (process.platform === 'linux' && !hasGpuNode) {
      expect(r.stdout).toBe('false');
      expect(r.stderr).not.toMatch(/Vulkan|Dawn/);
    }
    expect(r.stderr).toMatch(/ddsjs: using the tfjs '(wasm|tensorflow|webgpu)' backend/);
  });

  test('modelWeightBytes counts the weight files one load reads', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-weights-'));
    try {
      fs.mkdirSync(path.join(dir, 'unet'));
      fs.mkdirSync(path.join(dir, 'vae'));
      fs.writeFileSync(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), Buffer.alloc(400));
      fs.writeFileSync(path.join(dir, 'unet', 'diffusion_pytorch_model.fp16.safetensors'), Buffer.alloc(200));
      fs.writeFileSync(path.join(dir, 'unet', 'diffusion_pytorch_model.bin'), Buffer.alloc(999));
      fs.writeFileSync(path.join(dir, 'vae', 'diffusion_pytorch_model.fp16.safetensors'), Buffer.alloc(30));
      fs.writeFileSync(path.join(dir, 'model_index.json'), '{}');
      expect(modelWeightBytes(dir)).toBe(430);
      expect(modelWeightBytes(dir, 'fp16')).toBe(230);
      expect(modelWeightBytes(path.join(dir, 'unet', 'diffusion_pytorch_model.bin'))).toBe(999);
      expect(() => modelWeightBytes(path.join(dir, 'missing'))).toThrow(/ENOENT/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('unknown names are rejected clearly, from the argument or the environment', async () => {
    delete process.env.DDSJS_BACKEND;
    await expect(initBackend('webgl' as never)).rejects.toThrow(/unknown backend 'webgl'; expected one of auto, tensorflow, webgpu, wasm, cpu/);
    process.env.DDSJS_BACKEND = 'cuda';
    await expect(initBackend('cpu')).rejects.toThrow(/DDSJS_BACKEND: unknown backend 'cuda'/);
  });

  test('an unavailable explicit backend says what to install', async () => {
    delete process.env.DDSJS_BACKEND;
    const hasNode = installed('@tensorflow/tfjs-node') || installed('@tensorflow/tfjs-node-gpu');
    if (!hasNode) await expect(initBackend('tensorflow')).rejects.toThrow(/npm run setup:tensorflow.*npm install @tensorflow\/tfjs-node --allow-scripts/);
    else expect(await initBackend('tensorflow')).toBe('tensorflow');
    await initBackend('wasm');
  });

  test('logs the backend once through the logger unless quiet', async () => {
    delete process.env.DDSJS_BACKEND;
    const lines: string[] = [];
    await initBackend('cpu', { quiet: false, logger: (m) => lines.push(m) });
    await initBackend('cpu', { quiet: false, logger: (m) => lines.push(m) });
    await initBackend('wasm', { quiet: true, logger: (m) => lines.push(m) });
    expect(lines).toEqual(["ddsjs: using the tfjs 'cpu' backend"]);
  });
});

describe('memory limits', () => {
  test('wasm is limited to its 4 GiB heap; others are unbounded here', () => {
    expect(backendMemoryLimitBytes('wasm')).toBe(4 * 1024 ** 3);
    expect(WASM_HEAP_LIMIT_BYTES).toBe(4294967296);
    expect(backendMemoryLimitBytes('cpu')).toBe(Infinity);
  });

  test('assertFits throws a clear error when weights cannot fit on wasm', () => {
    expect(() => assertFits(3.44e9 + 1.2e9, 'SD 1.5 UNet', 'wasm')).toThrow(
      /SD 1\.5 UNet needs 4\.6 GB of float32 weights; the wasm backend's heap stops at 4 GiB.*--backend tensorflow\|webgpu\|cpu/,
    );
    expect(() => assertFits(1e9, 'text encoder', 'wasm')).not.toThrow();
    expect(() => assertFits(1e12, 'huge', 'cpu')).not.toThrow();
    expect(() => assertFits(-1, 'bad', 'wasm')).toThrow(/non-negative/);
  });
});
