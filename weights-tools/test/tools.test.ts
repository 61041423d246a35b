import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { SafetensorsFile, writeSafetensors } from '@ddsjs/safetensors';
import { f32ToF16Bits } from '@ddsjs/safetensors/internals';
import { loadStableDiffusion } from '@ddsjs/sd';
import { convertSingleFile, toFp16, f32ArrayToF16, SafetensorsStreamWriter, inspect, inspectModel, main } from '@ddsjs/weights-tools';
import { TINY_SD15 } from '../../test-utils';

const SINGLE = path.join(TINY_SD15, 'single-file.safetensors');
let tmp: string;

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dds-weights-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Copies a folder tree with writable folders (the fixtures are read-only), skipping files `skip` matches. */
function copyTree(src: string, dst: string, skip: (name: string) => boolean): void {
  fs.mkdirSync(dst, { recursive: true });
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    if (skip(e.name)) continue;
    if (e.isDirectory()) copyTree(path.join(src, e.name), path.join(dst, e.name), skip);
    else fs.copyFileSync(path.join(src, e.name), path.join(dst, e.name));
  }
}

async function rawBits(file: string): Promise<Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>> {
  const f = await SafetensorsFile.open(file);
  try {
    const out = new Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>();
    for (const k of f.keys()) out.set(k, { dtype: f.info(k).dtype, shape: f.info(k).shape, bytes: await f.readBytes(k) });
    return out;
  } finally {
    await f.close();
  }
}

describe('f32ArrayToF16', () => {
  it('matches f32ToF16Bits (round to nearest even) on random, tie, subnormal and overflow values', () => {
    const n = 200_000;
    const x = new Float32Array(n);
    for (let i = 0; i < n; i++) x[i] = (Math.random() - 0.5) * 10 ** (Math.random() * 12 - 8);
    const special = [0, -0, 1, 65504, 65519.99, 65520, -70000, 1e-8, 2.98e-8, 5.96e-8, 6.1e-5, 1 + 2 ** -11, 1 + 3 * 2 ** -11, NaN, Infinity, -Infinity];
    x.set(special, 0);
    const { bits, overflow } = f32ArrayToF16(x);
    let mismatches = 0;
    for (let i = 0; i < n; i++) if (bits[i] !== f32ToF16Bits(x[i])) mismatches++;
    expect(mismatches).toBe(0);
    // 65520 and -70000 overflow (finite inputs that became inf); ±Infinity inputs are not counted.
    const expectedOverflow = Array.from(x).filter((v) => Number.isFinite(v) && Math.abs(v) >= 65520).length;
    expect(overflow).toBe(expectedOverflow);
    expect(overflow).toBeGreaterThanOrEqual(2);
    expect(bits[11]).toBe(0x3c00); // 1 + 2^-11 is a tie → rounds to even (1.0)
    expect(bits[12]).toBe(0x3c02); // 1 + 3·2^-11 is a tie → rounds to even (1 + 2^-9)
  });
});

describe('SafetensorsStreamWriter', () => {
  it('writes the same bytes as writeSafetensors and rejects out-of-order or mis-sized data', async () => {
    const a = Float32Array.from({ length: 12 }, (_, i) => i * 0.5 - 2);
    const b = Float32Array.from({ length: 3 }, (_, i) => i + 0.25);
    const ref = path.join(tmp, 'ref.safetensors');
    await writeSafetensors(ref, { 'b.w': { dtype: 'F32', shape: [3], data: b }, 'a.w': { dtype: 'F32', shape: [3, 4], data: a } }, { format: 'pt' });
    const out = path.join(tmp, 'stream.safetensors');
    const w = await SafetensorsStreamWriter.create(out, [{ key: 'b.w', dtype: 'F32', shape: [3] }, { key: 'a.w', dtype: 'F32', shape: [3, 4] }], { format: 'pt' });
    expect(w.order).toEqual(['a.w', 'b.w']);
    await w.write('a.w', a);
    await w.write('b.w', b);
    await w.finish();
    expect(Buffer.compare(fs.readFileSync(out), fs.readFileSync(ref))).toBe(0);

    const bad = path.join(tmp, 'bad.safetensors');
    const w2 = await SafetensorsStreamWriter.create(bad, [{ key: 'x', dtype: 'F32', shape: [2] }, { key: 'y', dtype: 'F16', shape: [2] }]);
    await expect(w2.write('y', new Uint16Array(2))).rejects.toThrow(/expected 'x', got 'y'/);
    const w3 = await SafetensorsStreamWriter.create(bad, [{ key: 'x', dtype: 'F32', shape: [2] }]);
    await expect(w3.write('x', new Float32Array(3))).rejects.toThrow(/'x' \(F32 \[2\]\) needs a Float32Array of 2 elements/);
    expect(fs.existsSync(bad)).toBe(false);
    expect(fs.readdirSync(tmp).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});

describe('convert-single-file', () => {
  it('converts the tiny LDM checkpoint into a diffusers folder whose UNet output equals the fp16 fixture exactly', async () => {
    const out = path.join(tmp, 'converted');
    const r = await convertSingleFile(SINGLE, out);
    expect(r.modelType).toBe('sd15');
    expect(r.components.unet.tensors).toBe(684);
    for (const f of ['model_index.json', 'unet/config.json', 'vae/config.json', 'text_encoder/config.json', 'scheduler/scheduler_config.json', 'tokenizer/vocab.json', 'tokenizer/merges.txt']) {
      expect(fs.existsSync(path.join(out, f))).toBe(true);
    }
    const conv = await loadStableDiffusion(out);
    const ref = await loadStableDiffusion(TINY_SD15, { variant: 'fp16' });
    try {
      const sample = tf.randomNormal([2, 8, 8, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
      const ctx = tf.randomNormal([2, 77, 32], 0, 1, 'float32', 2) as tf.Tensor3D;
      const before = tf.memory().numTensors;
      const y1 = conv.unet.forward(sample, 500, ctx);
      const y2 = ref.unet.forward(sample, 500, ctx);
      const [d1, d2] = await Promise.all([y1.data(), y2.data()]);
      expect(d1.length).toBe(2 * 8 * 8 * 4);
      let maxDiff = 0;
      for (let i = 0; i < d1.length; i++) maxDiff = Math.max(maxDiff, Math.abs(d1[i] - d2[i]));
      expect(maxDiff).toBe(0);
      expect(Array.from(d1).every(Number.isFinite)).toBe(true);
      tf.dispose([y1, y2]);
      expect(tf.memory().numTensors).toBe(before);
      // the text encoder and VAE came across too
      const ids = conv.tokenizer.encode(['a red square']);
      const e1 = conv.textEncoder.forward(ids);
      const e2 = ref.textEncoder.forward(ids);
      expect(Array.from(await e1.data())).toEqual(Array.from(await e2.data()));
      tf.dispose([ids, e1, e2, sample, ctx]);
    } finally {
      conv.dispose();
      ref.dispose();
    }
    await expect(convertSingleFile(SINGLE, out)).rejects.toThrow(/exists and is not empty \(pass --force/);
  });

  it('with fp16 writes the fixture fp16 variant bit for bit', async () => {
    const out = path.join(tmp, 'converted16');
    await convertSingleFile(SINGLE, out, { fp16: true });
    for (const [c, base] of [['unet', 'diffusion_pytorch_model'], ['vae', 'diffusion_pytorch_model'], ['text_encoder', 'model']]) {
      expect(fs.existsSync(path.join(out, c, `${base}.safetensors`))).toBe(false);
      const got = await rawBits(path.join(out, c, `${base}.fp16.safetensors`));
      const want = await rawBits(path.join(TINY_SD15, c, `${base}.fp16.safetensors`));
      const wantKeys = [...want.keys()].filter((k) => !k.endsWith('position_ids'));
      expect([...got.keys()].sort()).toEqual(wantKeys.sort());
      for (const k of wantKeys) {
        expect(got.get(k)!.shape).toEqual(want.get(k)!.shape);
        expect(Buffer.compare(got.get(k)!.bytes, want.get(k)!.bytes)).toBe(0);
      }
    }
  });

  it('rejects bad input with a clear message', async () => {
    await expect(convertSingleFile(path.join(tmp, 'nope.safetensors'), path.join(tmp, 'x'))).rejects.toThrow(/checkpoint not found/);
    const unetOnly = path.join(TINY_SD15, 'unet', 'diffusion_pytorch_model.safetensors');
    await expect(convertSingleFile(unetOnly, path.join(tmp, 'x'))).rejects.toThrow(/no UNet keys/);
    // the built-in SD 1.5 configs do not match the tiny checkpoint
    const alone = path.join(tmp, 'alone');
    fs.mkdirSync(alone);
    fs.copyFileSync(SINGLE, path.join(alone, 'model.safetensors'));
    await expect(convertSingleFile(path.join(alone, 'model.safetensors'), path.join(tmp, 'y'))).rejects.toThrow(
      /does not match the configs of built-in sd15: unet: block_out_channels/,
    );
    expect(fs.existsSync(path.join(tmp, 'y'))).toBe(false);
  });
});

describe('to-fp16', () => {
  it('reproduces the fixture fp16 variant (made by torch .half()) bit for bit', async () => {
    const dir = path.join(tmp, 'fp32only');
    copyTree(TINY_SD15, dir, (n) => n.includes('.fp16.') || n === 'golden' || n === 'single-file.safetensors');
    const files = await toFp16(dir);
    expect(files.map((f) => path.relative(dir, f.output)).sort()).toEqual([
      'text_encoder/model.fp16.safetensors',
      'unet/diffusion_pytorch_model.fp16.safetensors',
      'vae/diffusion_pytorch_model.fp16.safetensors',
    ]);
    for (const f of files) {
      const got = await rawBits(f.output);
      const want = await rawBits(path.join(TINY_SD15, path.relative(dir, f.output)));
      expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
      for (const [k, w] of want) {
        expect(got.get(k)!.dtype).toBe(w.dtype);
        expect(got.get(k)!.shape).toEqual(w.shape);
        expect(Buffer.compare(got.get(k)!.bytes, w.bytes)).toBe(0);
      }
    }
    await expect(toFp16(dir)).rejects.toThrow(/fp16 variant already exists.*--force/);
    await expect(toFp16(dir, { force: true })).resolves.toHaveLength(3);
  });

  it('turns values beyond the float16 range into inf, as torch does, and warns naming the key', async () => {
    const dir = path.join(tmp, 'overflow');
    fs.mkdirSync(path.join(dir, 'unet'), { recursive: true });
    const data = Float32Array.from([1, 70000, -1e6, 65504]);
    await writeSafetensors(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors'), {
      'big.weight': { dtype: 'F32', shape: [4], data },
      ids: { dtype: 'I64', shape: [2], data: BigInt64Array.from([0n, 1n]) },
    });
    const warnings: string[] = [];
    const [r] = await toFp16(dir, { warn: (m) => warnings.push(m) });
    expect(r.overflow).toBe(2);
    expect(r.copied).toBe(1);
    expect(warnings.join('\n')).toMatch(/'big\.weight': 2 value\(s\) beyond the float16 range/);
    const f = await SafetensorsFile.open(r.output);
    expect(Array.from(await f.readFloat32('big.weight'))).toEqual([1, Infinity, -Infinity, 65504]);
    expect(f.info('ids').dtype).toBe('I64');
    await f.close();
  });
});

describe('inspect', () => {
  it('describes a diffusers folder, a single-file checkpoint and a plain file', async () => {
    const folder = await inspect(TINY_SD15);
    expect(folder).toMatch(/unet\/: block_out_channels=\[32,64,64,64\]/);
    expect(folder).toMatch(/diffusion_pytorch_model\.fp16\.safetensors \(fp16\): F16, 684 tensors/);
    expect(folder).toMatch(/text_encoder\/[\s\S]*model\.safetensors \(fp32\): F32, 52 tensors/);
    expect(folder).toMatch(/scaling_factor=0\.18215/);
    const only16 = await inspectModel(TINY_SD15, { variant: 'fp16' });
    expect(only16).not.toMatch(/\(fp32\)/);
    const single = await inspect(SINGLE);
    expect(single).toMatch(/detected: sd15/);
    expect(single).toMatch(/unet\s+684\s+3\.2M/);
    expect(single).toMatch(/… 960 more tensors/);
    const all = await inspect(SINGLE, { all: true });
    expect(all.split('\n').filter((l) => / F16 {2,}\[/.test(l))).toHaveLength(980);
    await expect(inspect(path.join(tmp, 'missing'))).rejects.toThrow(/not found/);
  });
});

describe('dds-weights main', () => {
  it('prints help and rejects bad arguments with one-line errors', async () => {
    const lines: string[] = [];
    expect(await main(['--help'], (s) => lines.push(s))).toBe(0);
    expect(lines.join('\n')).toMatch(/convert-single-file <file> <outdir>/);
    for (const cmd of ['inspect', 'convert-single-file', 'to-fp16', 'make-random']) {
      expect(await main([cmd, '--help'], (s) => lines.push(s))).toBe(0);
      expect(lines.at(-1)).toMatch(new RegExp(`^Usage: dds-weights ${cmd}`));
    }
    await expect(main(['frobnicate'])).rejects.toThrow(/unknown command 'frobnicate'/);
    await expect(main(['inspect'])).rejects.toThrow(/inspect: expected <file\|dir>, got nothing/);
    await expect(main(['make-random', '--like', 'sdxl', path.join(tmp, 'r')])).rejects.toThrow(/--like must be sd15 or sd21, got sdxl/);
    await expect(main(['make-random', '--like', 'sd15', '--width', 'wide', path.join(tmp, 'r')])).rejects.toThrow(/--width must be a number/);
    await expect(main(['convert-single-file', SINGLE, path.join(tmp, 'r'), '--prediction-type', 'x0'])).rejects.toThrow(/--prediction-type must be epsilon or v_prediction/);
    await expect(main(['to-fp16', '--bogus', tmp])).rejects.toThrow(/to-fp16: unknown option '--bogus'/);
    expect(fs.existsSync(path.join(tmp, 'r'))).toBe(false);
  });
});
