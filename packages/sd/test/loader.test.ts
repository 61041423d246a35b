import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { loadStableDiffusion, StableDiffusion } from '@ddsjs/sd';
import { expectGolden, goldenTensor, readGoldens, Golden, TINY_SD15 } from '../../../test-utils';

let sd: StableDiffusion;
let g: Record<string, Golden>;

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  sd = await loadStableDiffusion(TINY_SD15);
  g = await readGoldens('scheduler');
});
afterAll(() => sd?.dispose());

/** Slice `i` of a stacked golden `[S, …]`. */
function step(gold: Golden, i: number): Golden {
  const shape = gold.shape.slice(1);
  const n = shape.reduce((a, b) => a * b, 1);
  return { shape, data: gold.data.subarray(i * n, (i + 1) * n) };
}

describe('loadStableDiffusion (diffusers folder, fp32)', () => {
  test('schedule tables come from the scheduler and VAE configs', async () => {
    expect(sd.schedule.scalingFactor).toBeCloseTo(0.18215, 10);
    expect(sd.schedule.predictionType).toBe('epsilon');
    await expectGolden(tf.tensor(sd.schedule.alphasCumprod), g['alphas_cumprod'], 1e-4, 'alphas_cumprod', false);
  });

  test('encodePrompt([negative, prompt]) = the pipeline prompt_embeds_cfg', async () => {
    const e = sd.encodePrompt(['', 'a photo of a cat']);
    await expectGolden(e, g['ddim.prompt_embeds_cfg'], 1e-4, 'prompt_embeds_cfg', false);
    e.dispose();
  });

  test('generate() reproduces the golden 10-step DDIM run: every step, final latents, image', async () => {
    const noise = goldenTensor(g['ddim.initial_noise'], true) as tf.Tensor4D;
    const perStep: tf.Tensor[] = [];
    const before = tf.memory().numTensors;
    const { image, latents } = await sd.generate('a photo of a cat', {
      steps: 10,
      guidanceScale: 7.5,
      negativePrompt: '',
      latents: noise,
      onStep: ({ latents: l }) => perStep.push(l.clone()),
    });
    expect(perStep).toHaveLength(10);
    for (let i = 0; i < 10; i++) {
      await expectGolden(perStep[i], step(g['ddim.latents_per_step'], i), 1e-4, `latents_per_step[${i}]`);
    }
    await expectGolden(latents, g['ddim.final_latents'], 1e-4, 'final_latents');
    await expectGolden(image, g['ddim.image_np'], 1e-4, 'image_np', false);
    perStep.forEach((t) => t.dispose());
    image.dispose();
    latents.dispose();
    expect(tf.memory().numTensors).toBe(before);
    noise.dispose();
  });

  test('decodeLatents(final / scaled) matches ddim.decoded mapped to [0,1]', async () => {
    const z = goldenTensor(g['ddim.final_latents'], true) as tf.Tensor4D;
    const img = sd.decodeLatents(z);
    const ref = goldenTensor(g['ddim.decoded'], true);
    const expected = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(ref, 0.5), 0.5), 0, 1));
    const d = await tf.max(tf.abs(tf.sub(img, expected))).data();
    expect(d[0]).toBeLessThan(2e-4);
    tf.dispose([z, img, ref, expected]);
  });

  test('generate() with a seed is reproducible, seed 0 (the default) included — tfjs treats seed 0 as "no seed"', async () => {
    const run = async (seed?: number) => {
      const r = await sd.generate('a photo of a cat', { steps: 2, ...(seed === undefined ? {} : { seed }) });
      const v = Array.from((await r.latents.data()) as Float32Array);
      tf.dispose([r.image, r.latents]);
      return v;
    };
    const zero = await run(0);
    expect(await run(0)).toEqual(zero);
    expect(await run()).toEqual(zero);
    const one = await run(1);
    expect(await run(1)).toEqual(one);
    expect(one).not.toEqual(zero);
  });

  test('generate() validates its options', async () => {
    await expect(sd.generate('x', { steps: 0 })).rejects.toThrow(/steps/);
    await expect(sd.generate('x', { height: 60 })).rejects.toThrow(/height must be a positive multiple of 8/);
  });
});

describe('loadStableDiffusion variants and errors', () => {
  test('the fp16 variant loads and gives the DDIM run within fp16 tolerance', async () => {
    const sd16 = await loadStableDiffusion(TINY_SD15, { variant: 'fp16' });
    try {
      const noise = goldenTensor(g['ddim.initial_noise'], true) as tf.Tensor4D;
      const { image, latents } = await sd16.generate('a photo of a cat', { steps: 10, latents: noise });
      // fp16-rounded weights, fp32 compute: measured ≈ 3e-3 relative on the final latents.
      await expectGolden(latents, g['ddim.final_latents'], 2e-2, 'fp16 final_latents');
      tf.dispose([noise, image, latents]);
    } finally {
      sd16.dispose();
    }
  });

  test('a folder with only fp16 weights (a copy of the embedded model) loads without variant, as with it', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-fp16only-'));
    try {
      const copy = path.join(tmp, 'copy');
      fs.cpSync(TINY_SD15, copy, {
        recursive: true,
        filter: (s) => !s.includes('golden') && !(s.endsWith('.safetensors') && !s.endsWith('.fp16.safetensors')),
      });
      const sd16 = await loadStableDiffusion(copy);
      const ref = await loadStableDiffusion(TINY_SD15, { variant: 'fp16' });
      try {
        const a = sd16.encodePrompt('a photo of a cat');
        const b = ref.encodePrompt('a photo of a cat');
        expect(Array.from(await a.data())).toEqual(Array.from(await b.data()));
        tf.dispose([a, b]);
        expect(sd16.nativeSize).toBe(64); // sample_size 8 × the VAE's 8
      } finally {
        sd16.dispose();
        ref.dispose();
      }
      fs.rmSync(path.join(copy, 'vae', 'diffusion_pytorch_model.fp16.safetensors'));
      await expect(loadStableDiffusion(copy)).rejects.toThrow(/no safetensors weights for diffusion_pytorch_model in .*vae/);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('the single-file checkpoint loads with the configs of its own folder', async () => {
    let done = 0;
    let total = 0;
    const sd1 = await loadStableDiffusion(path.join(TINY_SD15, 'single-file.safetensors'), {
      onProgress: (d, t) => {
        done = d;
        total = t;
      },
    });
    try {
      expect(total).toBe(980);
      expect(done).toBe(980);
      const noise = goldenTensor(g['ddim.initial_noise'], true) as tf.Tensor4D;
      const { image, latents } = await sd1.generate('a photo of a cat', { steps: 10, latents: noise });
      await expectGolden(latents, g['ddim.final_latents'], 2e-2, 'single-file final_latents');
      tf.dispose([noise, image, latents]);
    } finally {
      sd1.dispose();
    }
  });

  test('offloadUnet keeps the UNet weights outside the backend and gives the same DDIM run', async () => {
    const before = tf.memory().numBytes;
    const off = await loadStableDiffusion(TINY_SD15, { offloadUnet: true });
    try {
      expect(off.unet.isOffloaded).toBe(true);
      expect(sd.unet.isOffloaded).toBe(false); // 'auto': the tiny model fits
      // Only the text encoder and the VAE are resident (UNet: 3,222,692 float32 values stay in JS memory).
      const resident = tf.memory().numBytes - before;
      expect(resident).toBe((off.textEncoder.parameterCount() + off.vae.parameterCount()) * 4);
      const noise = goldenTensor(g['ddim.initial_noise'], true) as tf.Tensor4D;
      const { image, latents } = await off.generate('a photo of a cat', { steps: 10, latents: noise });
      await expectGolden(latents, g['ddim.final_latents'], 1e-4, 'offloaded final_latents');
      tf.dispose([noise, image, latents]);
    } finally {
      off.dispose();
    }
  });

  test('progress is reported for every tensor of a folder', async () => {
    const seen: number[] = [];
    const m = await loadStableDiffusion(TINY_SD15, { onProgress: (d, t) => seen.push(d / t) });
    m.dispose();
    expect(seen.length).toBe(52 + 684 + 244);
    expect(seen[seen.length - 1]).toBe(1);
  });

  test('clear errors: missing path, non-diffusers folder, pickled checkpoint, truncated weights, missing key', async () => {
    await expect(loadStableDiffusion('/nonexistent/model')).rejects.toThrow('model not found: /nonexistent/model');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-loader-'));
    try {
      await expect(loadStableDiffusion(tmp)).rejects.toThrow(/not a diffusers Stable Diffusion folder: missing unet\/config.json/);
      const ckpt = path.join(tmp, 'model.ckpt');
      fs.writeFileSync(ckpt, 'x');
      await expect(loadStableDiffusion(ckpt)).rejects.toThrow(/only .safetensors checkpoints are supported/);
      // A copy of the fixture whose UNet file is truncated.
      const copy = path.join(tmp, 'copy');
      fs.cpSync(TINY_SD15, copy, { recursive: true, filter: (s) => !s.includes('golden') && !s.endsWith('single-file.safetensors') });
      for (const f of fs.readdirSync(copy, { recursive: true }) as string[]) fs.chmodSync(path.join(copy, f), 0o755);
      const unetFile = path.join(copy, 'unet', 'diffusion_pytorch_model.safetensors');
      fs.truncateSync(unetFile, 1000);
      await expect(loadStableDiffusion(copy)).rejects.toThrow(/diffusion_pytorch_model.safetensors/);
      // A VAE config that disagrees with the weights: mis-shaped keys are listed.
      fs.copyFileSync(path.join(TINY_SD15, 'unet', 'diffusion_pytorch_model.safetensors'), unetFile);
      const vaeCfg = path.join(copy, 'vae', 'config.json');
      const j = JSON.parse(fs.readFileSync(vaeCfg, 'utf8'));
      j.latent_channels = 8;
      fs.writeFileSync(vaeCfg, JSON.stringify(j));
      await expect(loadStableDiffusion(copy)).rejects.toThrow(/vae: .*mis-shaped keys/s);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test('loading and disposing a pipeline leaves no tensors behind', async () => {
    const before = tf.memory().numTensors;
    const m = await loadStableDiffusion(TINY_SD15);
    const e = m.encodePrompt('a cat');
    e.dispose();
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
