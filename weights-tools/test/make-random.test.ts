import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, Rng } from '@ddsjs/nn';
import { loadStableDiffusion } from '@ddsjs/sd';
import { SafetensorsFile } from '@ddsjs/safetensors';
import { makeRandom, scaleConfigs, randomParameter } from '@ddsjs/weights-tools';

let tmp: string;
beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dds-random-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('scaleConfigs', () => {
  it('scales the UNet widths keeping them divisible by the GroupNorm groups and the heads', () => {
    expect(scaleConfigs('sd15', 0.5).unet.block_out_channels).toEqual([160, 320, 640, 640]);
    expect(scaleConfigs('sd15', 1).unet.block_out_channels).toEqual([320, 640, 1280, 1280]);
    expect(scaleConfigs('sd15', 0.125).unet.block_out_channels).toEqual([32, 96, 160, 160]);
    for (const like of ['sd15', 'sd21'] as const) {
      for (const w of [0.1, 0.125, 0.25, 0.5, 0.75]) {
        const c = scaleConfigs(like, w, true);
        const heads = c.unet.attention_head_dim as number | number[];
        (c.unet.block_out_channels as number[]).forEach((ch, i) => {
          expect(ch % 32).toBe(0);
          expect(ch % (Array.isArray(heads) ? heads[i] : heads)).toBe(0);
        });
        expect((c.vae.block_out_channels as number[]).every((ch) => ch % 32 === 0)).toBe(true);
        expect((c.textEncoder.hidden_size as number) % (c.textEncoder.num_attention_heads as number)).toBe(0);
        expect(c.unet.cross_attention_dim).toBe(c.textEncoder.hidden_size);
      }
    }
    // without scaleAll the VAE and text encoder keep the real sizes
    const half = scaleConfigs('sd21', 0.5);
    expect(half.unet.block_out_channels).toEqual([160, 320, 640, 640]);
    expect(half.vae.block_out_channels).toEqual([128, 256, 512, 512]);
    expect(half.textEncoder.hidden_size).toBe(1024);
    expect(half.unet.cross_attention_dim).toBe(1024);
    expect(() => scaleConfigs('sd15', 0)).toThrow(/--width must be a number in \(0, 4\]/);
  });
});

describe('randomParameter', () => {
  it('is deterministic per (seed, key) with σ ≈ 1/√fan_in for weights and ≈1 norm scales', () => {
    const a = randomParameter('down.conv.weight', [64, 32, 3, 3], 7);
    const b = randomParameter('down.conv.weight', [64, 32, 3, 3], 7);
    const c = randomParameter('down.conv.weight', [64, 32, 3, 3], 8);
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))).toBe(0);
    expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(c.buffer))).not.toBe(0);
    const std = Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    expect(Math.abs(std - 1 / Math.sqrt(32 * 9))).toBeLessThan(0.05 / Math.sqrt(32 * 9));
    const norm = randomParameter('norm1.weight', [320], 0);
    expect(Math.abs(norm.reduce((s, v) => s + v, 0) / 320 - 1)).toBeLessThan(0.01);
    const r = new Rng(1);
    const xs = Array.from({ length: 20000 }, () => r.normal());
    const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
    expect(Math.abs(mean)).toBeLessThan(0.03);
  });
});

describe('make-random', () => {
  it('writes an SD 1.5-shaped folder (width 0.125, all components) that loads and gives a finite UNet output', async () => {
    const out = path.join(tmp, 'sd15-tiny');
    const r = await makeRandom(out, { like: 'sd15', width: 0.125, scaleAll: true, fp16Only: true, seed: 3 });
    expect(r.configs.unet.block_out_channels).toEqual([32, 96, 160, 160]);
    expect(fs.existsSync(path.join(out, 'unet', 'diffusion_pytorch_model.safetensors'))).toBe(false);
    const f = await SafetensorsFile.open(path.join(out, 'unet', 'diffusion_pytorch_model.fp16.safetensors'));
    expect(f.info('conv_in.weight')).toMatchObject({ dtype: 'F16', shape: [32, 4, 3, 3] });
    expect(f.keys()).toHaveLength(686); // real SD 1.5 UNet key count (diffusers layout)
    await f.close();
    const sd = await loadStableDiffusion(out, { variant: 'fp16' });
    try {
      expect(sd.unet.parameterCount()).toBe(r.parameters.unet);
      const ctx = sd.encodePrompt('a photo of a cat');
      const ctx2 = tf.concat([ctx, ctx], 0) as tf.Tensor3D;
      const x = tf.randomNormal([2, 8, 8, 4], 0, 1, 'float32', 5) as tf.Tensor4D;
      tf.dispose(sd.unet.forward(x, 900, ctx2)); // warm-up (caches are allowed to fill once)
      const before = tf.memory().numTensors;
      const y = sd.unet.forward(x, 900, ctx2);
      const d = await y.data();
      expect(d.length).toBe(2 * 8 * 8 * 4);
      expect(Array.from(d).every(Number.isFinite)).toBe(true);
      const rms = Math.sqrt(d.reduce((s, v) => s + v * v, 0) / d.length);
      expect(rms).toBeGreaterThan(1e-3);
      expect(rms).toBeLessThan(1e3);
      tf.dispose(y);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose([ctx, ctx2, x]);
    } finally {
      sd.dispose();
    }
  });

  it('writes float32 files plus the fp16 variant by default', async () => {
    const out = path.join(tmp, 'both');
    await makeRandom(out, { like: 'sd21', width: 0.1, scaleAll: true });
    const f32 = await SafetensorsFile.open(path.join(out, 'vae', 'diffusion_pytorch_model.safetensors'));
    const f16 = await SafetensorsFile.open(path.join(out, 'vae', 'diffusion_pytorch_model.fp16.safetensors'));
    const k = 'decoder.conv_in.weight';
    const a = await f32.readFloat32(k);
    const b = await f16.readFloat32(k);
    let maxRel = 0;
    for (let i = 0; i < a.length; i++) maxRel = Math.max(maxRel, Math.abs(a[i] - b[i]) / Math.max(Math.abs(a[i]), 1e-4));
    expect(maxRel).toBeLessThan(1e-3);
    await Promise.all([f32.close(), f16.close()]);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'tokenizer', 'special_tokens_map.json'), 'utf8')).pad_token.content).toBe('!');
    await expect(makeRandom(out, { like: 'sd21', width: 0.1 })).rejects.toThrow(/not empty/);
  });
});
