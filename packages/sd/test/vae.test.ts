import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, StateDictSource } from '@ddsjs/nn';
import { f16ToF32, f32ToF16, SafetensorsFile } from '@ddsjs/safetensors';
import { expectGolden, Golden, goldenTensor, readGoldens, relErr, TINY_SD15 } from '../../../test-utils';
import { loadVaeConfig, parseVaeConfig } from '../src/config';
import { AutoencoderKL, legacyVaeSource, vaeKeyMap } from '../src/vae';

const VAE_DIR = path.join(TINY_SD15, 'vae');

function fileSource(f: SafetensorsFile): StateDictSource {
  return { keys: () => f.keys(), shape: (k) => [...f.info(k).shape], read: (k) => f.readFloat32(k) };
}

async function withFile<T>(file: string, fn: (src: StateDictSource) => Promise<T>): Promise<T> {
  const f = await SafetensorsFile.open(path.join(VAE_DIR, file));
  try {
    return await fn(fileSource(f));
  } finally {
    await f.close();
  }
}

async function newVae(): Promise<AutoencoderKL> {
  return new AutoencoderKL(await loadVaeConfig(VAE_DIR));
}

// fp16 checkpoint tolerance, from measurement (wasm): latent_mean 1.54e-3, latent_std 3.63e-4,
// latent_logvar 1.11e-3, decoded 2.88e-3. The VAE is well conditioned, so fp16-rounded weights (2^-11
// relative) move the outputs by ~1e-3; 1e-2 leaves ~3.5× margin and still catches any wrong layer (O(1)).
// The test also checks that the fp16 file gives the outputs of the fp32 weights rounded in memory.
const FP16_TOL = 1e-2;

describe('AutoencoderKL (tiny-sd15)', () => {
  let g: Record<string, Golden>;
  let vae: AutoencoderKL;
  let image: tf.Tensor4D;
  let latents: tf.Tensor4D;

  beforeAll(async () => {
    await initBackend('wasm');
    g = await readGoldens('vae');
    vae = await newVae();
    await withFile('diffusion_pytorch_model.safetensors', (src) => vae.loadStateDict(src));
    image = goldenTensor(g.image, true) as tf.Tensor4D;
    latents = goldenTensor(g.latents, true) as tf.Tensor4D;
  });

  afterAll(() => {
    tf.dispose([image, latents]);
    vae?.dispose();
  });

  test('config: scaling factor default and unsupported values', async () => {
    const c = await loadVaeConfig(VAE_DIR);
    expect(c.scalingFactor).toBe(0.18215); // absent from the fixture's config.json → diffusers' default
    expect(vae.scalingFactor).toBe(0.18215);
    expect(c.useQuantConv && c.usePostQuantConv && c.midBlockAddAttention).toBe(true);
    expect(parseVaeConfig({ scaling_factor: 0.13025 }).scalingFactor).toBe(0.13025);
    expect(() => parseVaeConfig({ shift_factor: 0.1159 }, 'sd3/vae/config.json')).toThrow(/sd3\/vae\/config\.json.*shift_factor/);
    expect(() => parseVaeConfig({ down_block_types: ['DownBlock2D'] }, 'f')).toThrow(/DownBlock2D/);
    expect(() => parseVaeConfig({ block_out_channels: [32, 64] }, 'f')).toThrow(/down_block_types.*1 entries/);
  });

  test('encode matches latent_mean, latent_std, latent_logvar; decode matches decoded (fp32)', async () => {
    let t0 = Date.now();
    const post = vae.encode(image);
    await post.mean.data();
    const encMs = Date.now() - t0;
    t0 = Date.now();
    const dec = vae.decode(latents);
    await dec.data();
    const decMs = Date.now() - t0;
    const errs = [
      await expectGolden(post.mean, g.latent_mean, 1e-4, 'latent_mean'),
      await expectGolden(post.std, g.latent_std, 1e-4, 'latent_std'),
      await expectGolden(post.logvar, g.latent_logvar, 1e-4, 'latent_logvar'),
      await expectGolden(dec, g.decoded, 1e-4, 'decoded'),
    ];
    console.log(
      `VAE fp32 parity: latent_mean ${errs[0].toExponential(2)}, latent_std ${errs[1].toExponential(2)}, ` +
        `latent_logvar ${errs[2].toExponential(2)}, decoded ${errs[3].toExponential(2)} (encode 64×64 ${encMs} ms, decode 8×8 ${decMs} ms on ${tf.getBackend()})`,
    );
    tf.dispose([post.mean, post.std, post.logvar, dec]);
  });

  test('legacy attention key names (query/key/value/proj_attn, conv-shaped) load to the same outputs', async () => {
    expect(vaeKeyMap('encoder.mid_block.attentions.0.query.weight')).toBe('encoder.mid_block.attentions.0.to_q.weight');
    expect(vaeKeyMap('decoder.mid_block.attentions.0.proj_attn.bias')).toBe('decoder.mid_block.attentions.0.to_out.0.bias');
    expect(vaeKeyMap('decoder.mid_block.attentions.0.group_norm.weight')).toBe('decoder.mid_block.attentions.0.group_norm.weight');
    expect(vaeKeyMap('encoder.down_blocks.0.resnets.0.conv1.weight')).toBe('encoder.down_blocks.0.resnets.0.conv1.weight');
    const legacyName: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
    const re = /^(.*\.attentions\.0\.)(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/;
    const legacy = await newVae();
    await withFile('diffusion_pytorch_model.safetensors', async (src) => {
      // Rename in memory to the legacy names and store the weights conv-shaped [C,C,1,1], as old/LDM files do.
      const toNew = new Map<string, string>();
      for (const k of src.keys()) {
        const m = re.exec(k);
        toNew.set(m ? `${m[1]}${legacyName[m[2]]}.${m[3]}` : k, k);
      }
      let renamed = 0;
      const old: StateDictSource = {
        keys: () => [...toNew.keys()],
        shape: (k) => {
          const s = src.shape(toNew.get(k)!);
          return toNew.get(k) !== k && s.length === 2 ? [...s, 1, 1] : s;
        },
        read: (k) => src.read(toNew.get(k)!),
      };
      for (const k of old.keys()) if (toNew.get(k) !== k) renamed++;
      expect(renamed).toBe(16); // 2 mid blocks × (q, k, v, out) × (weight, bias)
      await expect(legacy.loadStateDict(old)).rejects.toThrow(/missing keys/);
      await legacy.loadStateDict(legacyVaeSource(old));
    });
    const a = legacy.encode(image);
    const d = legacy.decode(latents);
    await expectGolden(a.mean, g.latent_mean, 1e-4, 'latent_mean (legacy keys)');
    await expectGolden(a.std, g.latent_std, 1e-4, 'latent_std (legacy keys)');
    await expectGolden(d, g.decoded, 1e-4, 'decoded (legacy keys)');
    tf.dispose([a.mean, a.std, a.logvar, d]);
    legacy.dispose();
  });

  test('fp16 checkpoint (converted on read) stays close to the fp32 goldens', async () => {
    const v16 = await newVae();
    const rounded = await newVae();
    try {
      await withFile('diffusion_pytorch_model.fp16.safetensors', (src) => v16.loadStateDict(src));
      await withFile('diffusion_pytorch_model.safetensors', (src) =>
        rounded.loadStateDict({ ...src, read: async (k) => f16ToF32(f32ToF16(await src.read(k))) }),
      );
      const post = v16.encode(image);
      const dec = v16.decode(latents);
      const ref = rounded.decode(latents);
      expect(relErr(await dec.data(), await ref.data())).toBeLessThan(1e-6);
      const errs = [
        await expectGolden(post.mean, g.latent_mean, FP16_TOL, 'latent_mean (fp16)'),
        await expectGolden(post.std, g.latent_std, FP16_TOL, 'latent_std (fp16)'),
        await expectGolden(post.logvar, g.latent_logvar, FP16_TOL, 'latent_logvar (fp16)'),
        await expectGolden(dec, g.decoded, FP16_TOL, 'decoded (fp16)'),
      ];
      expect(Math.max(...errs)).toBeGreaterThan(1e-5);
      console.log(`VAE fp16 weights: mean ${errs[0].toExponential(2)}, std ${errs[1].toExponential(2)}, logvar ${errs[2].toExponential(2)}, decoded ${errs[3].toExponential(2)} (tol ${FP16_TOL})`);
      tf.dispose([post.mean, post.std, post.logvar, dec, ref]);
    } finally {
      v16.dispose();
      rounded.dispose();
    }
  });

  test('a small attention byte budget (query chunks) gives the same outputs', async () => {
    vae.setAttentionByteBudget(1024);
    try {
      const p = vae.encode(image);
      const d = vae.decode(latents);
      await expectGolden(p.mean, g.latent_mean, 1e-4, 'latent_mean (chunked attention)');
      await expectGolden(d, g.decoded, 1e-4, 'decoded (chunked attention)');
      tf.dispose([p.mean, p.std, p.logvar, d]);
    } finally {
      vae.setAttentionByteBudget(undefined);
    }
  });

  test('decode is differentiable (eager disposal keeps gradients right): directional derivative check', async () => {
    const r = tf.randomNormal([1, 64, 64, 3], 0, 1, 'float32', 7);
    const d = tf.randomNormal([1, 8, 8, 4], 0, 1, 'float32', 8);
    const f = (z: tf.Tensor) => tf.sum(tf.mul(vae.decode(z as tf.Tensor4D), r)) as tf.Scalar;
    const g = tf.grad(f)(latents);
    const eps = 1e-2;
    const fp = f(tf.add(latents, tf.mul(d, eps)));
    const fm = f(tf.sub(latents, tf.mul(d, eps)));
    const numeric = ((await fp.data())[0] - (await fm.data())[0]) / (2 * eps);
    const analytic = (await tf.sum(tf.mul(g, d)).data())[0];
    expect(Math.abs(numeric - analytic)).toBeLessThan(1e-2 * Math.abs(analytic) + 1e-3);
    tf.dispose([r, d, g, fp, fm]);
  });

  test('repeated encode/decode do not leak tensors', async () => {
    const w = vae.decode(latents);
    w.dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const p = vae.encode(image);
      const d = vae.decode(latents);
      await d.data();
      tf.dispose([p.mean, p.std, p.logvar, d]);
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  test('bad inputs are clear errors', () => {
    const nchw = tf.zeros([1, 3, 64, 64]) as tf.Tensor4D;
    expect(() => vae.encode(nchw)).toThrow(/NHWC \[B,H,W,3\]/);
    const odd = tf.zeros([1, 60, 64, 3]) as tf.Tensor4D;
    expect(() => vae.encode(odd)).toThrow(/not a multiple of 8/);
    const lat = tf.zeros([1, 4, 8, 8]) as tf.Tensor4D;
    expect(() => vae.decode(lat)).toThrow(/NHWC \[B,h,w,4\]/);
    tf.dispose([nchw, odd, lat]);
  });
});
