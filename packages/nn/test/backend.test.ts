import * as tf from '@tensorflow/tfjs';
import { initBackend, backendMemoryLimitBytes, assertFits, WASM_HEAP_LIMIT_BYTES } from '@ddsjs/nn';

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

  test('auto falls back to wasm when tfjs-node and webgpu are not installed', async () => {
    delete process.env.DDSJS_BACKEND;
    let hasNode = true;
    try {
      require.resolve('@tensorflow/tfjs-node');
    } catch {
      hasNode = false;
    }
    const got = await initBackend('auto');
    if (!hasNode) expect(['wasm', 'webgpu']).toContain(got);
    else expect(got).toBe('tensorflow');
  });

  test('unknown names are rejected clearly, from the argument or the environment', async () => {
    delete process.env.DDSJS_BACKEND;
    await expect(initBackend('webgl' as never)).rejects.toThrow(/unknown backend 'webgl'; expected one of auto, tensorflow, webgpu, wasm, cpu/);
    process.env.DDSJS_BACKEND = 'cuda';
    await expect(initBackend('cpu')).rejects.toThrow(/DDSJS_BACKEND: unknown backend 'cuda'/);
  });

  test('an unavailable explicit backend says what to install', async () => {
    delete process.env.DDSJS_BACKEND;
    let hasNode = true;
    try {
      require.resolve('@tensorflow/tfjs-node');
    } catch {
      hasNode = false;
    }
    if (!hasNode) await expect(initBackend('tensorflow')).rejects.toThrow(/npm install @tensorflow\/tfjs-node/);
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
