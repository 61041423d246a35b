// The 'webgpu' backend (@tensorflow/tfjs-backend-webgpu on Dawn, the `webgpu` npm package) against the PyTorch
// goldens of tiny-sd15: text encoder, VAE, UNet, the DDS gradient and loss, and the pipeline end to end. This machine
// has no GPU, so initBackend('webgpu') takes Dawn's OpenGL ES compatibility adapter on Mesa's software renderer
// (jest.config.ts sets EGL_PLATFORM=surfaceless): the same WGSL kernels a GPU runs, only slowly. The other suites
// run on wasm and cpu; this one is what shows that the webgpu path computes the same numbers, reads its results
// asynchronously and leaks nothing.
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { conv2dOp, globalNorm, type GradientMode, initBackend, type Padding4 } from '@ddsjs/nn';
import { SafetensorsFile } from '@ddsjs/safetensors';
import { loadStableDiffusion } from '@ddsjs/sd';
import { expectGolden, Golden, goldenTensor, readGoldens, relErr, TINY_SD15 } from '../../../test-utils';
import { CLIPTextModel } from '../../sd/src/clip';
import { readCLIPTextConfig } from '../../sd/src/clip-config';
import { safetensorsSource } from '../../sd/src/sources';
import { bridgeGrad, csdGrad, ddsGrad, editImage, nfsdGrad, pdsGrad } from '../src';
import type { UNet2DConditionModel } from '../../sd/src/unet';
import { goldenEmbeddings, goldenSchedule, loadTinyUNet, loadTinyVae } from './tiny';
import { errors, printErrors } from './golden-common';

jest.setTimeout(600_000);

const logs: string[] = [];
let unet: UNet2DConditionModel;

beforeAll(async () => {
  await initBackend('webgpu', { quiet: false, logger: (m) => logs.push(m) });
  unet = await loadTinyUNet();
});

afterAll(() => {
  unet?.dispose();
  printErrors(`tiny-sd15 goldens on webgpu (${logs.join('; ')})`);
});

test("initBackend('webgpu') starts the webgpu backend and says which adapter it took", () => {
  expect(tf.getBackend()).toBe('webgpu');
  expect(logs).toHaveLength(1);
  // A GPU machine gets a regular adapter (no note); this one, without a GPU, the compatibility adapter.
  expect(logs[0]).toMatch(/^ddsjs: using the tfjs 'webgpu' backend( \(WebGPU compatibility adapter on OpenGL ES: .+\))?$/);
});

test('CLIP text encoder: last_hidden_state and pooler_output within 1e-4', async () => {
  const g = await readGoldens('text_encoder');
  const dir = path.join(TINY_SD15, 'text_encoder');
  const model = new CLIPTextModel(await readCLIPTextConfig(path.join(dir, 'config.json')));
  const f = await SafetensorsFile.open(path.join(dir, 'model.safetensors'));
  try {
    await model.loadWeights(safetensorsSource(f, { name: 'model.safetensors' }));
  } finally {
    await f.close();
  }
  const ids = tf.tensor2d(g.input_ids.data, g.input_ids.shape as [number, number], 'int32');
  const out = model.forwardWithHiddenStates(ids);
  try {
    errors.last_hidden_state = await expectGolden(out.lastHiddenState, g.last_hidden_state, 1e-4, 'last_hidden_state', false);
    errors.pooler_output = await expectGolden(out.pooled, g.pooler_output, 1e-4, 'pooler_output', false);
  } finally {
    tf.dispose([ids, out.lastHiddenState, out.pooled, ...out.hiddenStates]);
    model.dispose();
  }
});

test('VAE: encode (mean, std) and decode within 1e-4', async () => {
  const g = await readGoldens('vae');
  const vae = await loadTinyVae();
  const image = goldenTensor(g.image, true) as tf.Tensor4D;
  const latents = goldenTensor(g.latents, true) as tf.Tensor4D;
  const post = vae.encode(image);
  const dec = vae.decode(latents);
  try {
    errors.latent_mean = await expectGolden(post.mean, g.latent_mean, 1e-4, 'latent_mean');
    errors.latent_std = await expectGolden(post.std, g.latent_std, 1e-4, 'latent_std');
    errors.decoded = await expectGolden(dec, g.decoded, 1e-4, 'decoded');
  } finally {
    tf.dispose([image, latents, dec, post.mean, post.std, post.logvar]);
    vae.dispose();
  }
});

test('UNet: out within 1e-4 (and the output of a repeated call is identical, no tensor left behind)', async () => {
  const g: Record<string, Golden> = await readGoldens('unet');
  const sample = goldenTensor(g.sample, true) as tf.Tensor4D;
  const context = goldenTensor(g.encoder_hidden_states) as tf.Tensor3D;
  const timesteps = Array.from(g.timestep.data);
  const before = tf.memory().numTensors;
  const a = unet.forward(sample, timesteps, context);
  const b = unet.forward(sample, timesteps, context);
  try {
    errors['unet out'] = await expectGolden(a, g.out, 1e-4, 'unet out');
    expect(Array.from(await b.data())).toEqual(Array.from(await a.data()));
  } finally {
    tf.dispose([a, b]);
  }
  expect(tf.memory().numTensors).toBe(before);
  tf.dispose([sample, context]);
});

test("generate() reproduces diffusers' 10-step DDIM run (tokenizer → CLIP → UNet with guidance 7.5 → DDIM → VAE)", async () => {
  const g = await readGoldens('scheduler');
  const sd = await loadStableDiffusion(TINY_SD15);
  const noise = goldenTensor(g['ddim.initial_noise'], true) as tf.Tensor4D;
  try {
    const before = tf.memory().numTensors;
    const { image, latents } = await sd.generate('a photo of a cat', { steps: 10, guidanceScale: 7.5, negativePrompt: '', latents: noise });
    errors['ddim final_latents'] = await expectGolden(latents, g['ddim.final_latents'], 1e-4, 'final_latents');
    errors['ddim image_np'] = await expectGolden(image, g['ddim.image_np'], 1e-4, 'image_np', false);
    tf.dispose([image, latents]);
    expect(tf.memory().numTensors).toBe(before);
  } finally {
    noise.dispose();
    sd.dispose();
  }
});

test("ddsGrad and every UNet weight gradient (what trainTranslator computes) equal the wasm backend's", async () => {
  // dds.safetensors is at 64×64 latents (≈ 10 min on the software renderer), so the DDS path is checked against the
  // wasm backend, which golden-dds.test.ts checks against PyTorch, on 16×16 latents (measured: ε̂ 1.5e-5, grad 1.6e-5,
  // weight gradients 1.3e-4). At 8×8 one branch's ε̂ differed by 1.8e-3: there the tiny UNet's deepest level is 1×1
  // with 2 channels per GroupNorm group, whose variance of two nearly equal numbers amplifies float rounding.
  const schedule = goldenSchedule(await readGoldens('scheduler'));
  const g = await readGoldens('dds');
  const run = async (u: UNet2DConditionModel): Promise<{ grad: Float32Array; eps: Float32Array[]; weightGrads: Float32Array[] }> => {
    const source = goldenEmbeddings(g.embedding_source);
    const target = goldenEmbeddings(g.embedding_target);
    const zSource = tf.randomNormal([1, 16, 16, 4], 0, 1, 'float32', 5) as tf.Tensor4D;
    const zTarget = tf.tidy(() => tf.add(zSource, tf.randomNormal([1, 16, 16, 4], 0, 0.05, 'float32', 6))) as tf.Tensor4D;
    const noise = tf.randomNormal([1, 16, 16, 4], 0, 1, 'float32', 7) as tf.Tensor4D;
    const r = ddsGrad({ unet: u, schedule }, { zSource, zTarget, source, target }, { timestep: 600, noise, intermediates: true });
    const grad = (await r.grad.data()) as Float32Array;
    const eps = [(await r.intermediates!.epsPred[0].data()) as Float32Array, (await r.intermediates!.epsPred[1].data()) as Float32Array];
    r.dispose();
    const vars = u.trainableVariables();
    expect(vars.length).toBeGreaterThan(600);
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(u.forward(zTarget, [600], target.cond))) as tf.Scalar, vars);
    const weightGrads = await Promise.all(vars.map(async (v) => (await grads[v.name].data()) as Float32Array));
    tf.dispose([value, ...Object.values(grads), zSource, zTarget, noise, source.cond, source.uncond, target.cond, target.uncond]);
    return { grad, eps, weightGrads };
  };
  const before = tf.memory().numTensors;
  const gpu = await run(unet);
  expect(tf.memory().numTensors).toBe(before);
  await initBackend('wasm');
  const wasmUnet = await loadTinyUNet();
  try {
    const ref = await run(wasmUnet);
    const maxAbs = (t: Float32Array) => t.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    errors['ddsGrad ε̂ source vs wasm'] = relErr(gpu.eps[0], ref.eps[0]);
    errors['ddsGrad ε̂ target vs wasm'] = relErr(gpu.eps[1], ref.eps[1]);
    // grad = ε̂_target − ε̂_source nearly cancels here (max|grad| ≈ 1 % of max|ε̂|), so its error is measured on the
    // scale of the two predictions it is the difference of.
    errors['ddsGrad vs wasm (/ max|ε̂|)'] = (relErr(gpu.grad, ref.grad) * maxAbs(ref.grad)) / Math.max(...ref.eps.map(maxAbs));
    // Per tensor max|Δ| / max|wasm grad|, the denominator floored at 1e-3 × the largest gradient of any tensor: the
    // biases just before a GroupNorm with one channel per group (this model's top level) have an exactly zero
    // gradient, which both backends compute as ≈ 1e-9 of rounding noise that a plain relative error would compare.
    const floor = 1e-3 * Math.max(...ref.weightGrads.map(maxAbs));
    errors['weight grads vs wasm (worst tensor)'] = Math.max(
      ...gpu.weightGrads.map((w, i) => (relErr(w, ref.weightGrads[i]) * maxAbs(ref.weightGrads[i])) / Math.max(maxAbs(ref.weightGrads[i]), floor)),
    );
  } finally {
    wasmUnet.dispose();
    await initBackend('webgpu');
  }
  expect(errors['ddsGrad ε̂ source vs wasm']).toBeLessThan(1e-4);
  expect(errors['ddsGrad ε̂ target vs wasm']).toBeLessThan(1e-4);
  expect(errors['ddsGrad vs wasm (/ max|ε̂|)']).toBeLessThan(1e-4);
  expect(errors['weight grads vs wasm (worst tensor)']).toBeLessThan(1e-3);
});

test('the score family (NFSD, CSD, SDS-Bridge, PDS) equals the wasm backend\'s', async () => {
  // Like ddsGrad above: 16×16 latents against wasm (golden-scores.test.ts checks wasm against PyTorch). Each grad is a
  // difference of UNet predictions, so its error is measured on the scale of the raw predictions.
  const sched = await readGoldens('scheduler');
  const schedule = { ...goldenSchedule(sched), betas: Float32Array.from(sched.betas.data) };
  const g = await readGoldens('dds');
  const run = async (u: UNet2DConditionModel): Promise<{ grads: Float32Array[]; scale: number }> => {
    const source = goldenEmbeddings(g.embedding_source);
    const target = goldenEmbeddings(g.embedding_target);
    const zSource = tf.randomNormal([1, 16, 16, 4], 0, 1, 'float32', 5) as tf.Tensor4D;
    const z = tf.tidy(() => tf.add(zSource, tf.randomNormal([1, 16, 16, 4], 0, 0.05, 'float32', 6))) as tf.Tensor4D;
    const noise = tf.randomNormal([1, 16, 16, 4], 0, 1, 'float32', 7) as tf.Tensor4D;
    const noisePrev = tf.randomNormal([1, 16, 16, 4], 0, 1, 'float32', 8) as tf.Tensor4D;
    const sd = { unet: u, schedule };
    const o = { timestep: 500, noise, intermediates: true };
    const results = [
      nfsdGrad(sd, { z, text: { cond: target.cond, uncond: target.uncond, negative: source.cond } }, o),
      csdGrad(sd, { z, text: { cond: target.cond, uncond: target.uncond, negative: source.cond } }, { ...o, scales: { negative: -0.5, null: -0.5 } }),
      bridgeGrad(sd, { z, source: source.cond, target: target.cond }, o),
      pdsGrad(sd, { zSource, zTarget: z, source, target }, { ...o, noisePrev }),
    ];
    const grads = await Promise.all(results.map(async (r) => (await r.grad.data()) as Float32Array));
    const raw = (await results[0].intermediates!.unetRaw.data()) as Float32Array;
    results.forEach((r) => r.dispose());
    tf.dispose([zSource, z, noise, noisePrev, source.cond, source.uncond, target.cond, target.uncond]);
    return { grads, scale: raw.reduce((m, v) => Math.max(m, Math.abs(v)), 0) };
  };
  const before = tf.memory().numTensors;
  const gpu = await run(unet);
  expect(tf.memory().numTensors).toBe(before);
  await initBackend('wasm');
  const wasmUnet = await loadTinyUNet();
  try {
    const ref = await run(wasmUnet);
    ['nfsd', 'csd', 'bridge', 'pds'].forEach((name, i) => {
      const maxDiff = gpu.grads[i].reduce((m, v, j) => Math.max(m, Math.abs(v - ref.grads[i][j])), 0);
      errors[`${name}Grad vs wasm (/ max|ε̂|)`] = maxDiff / ref.scale;
    });
  } finally {
    wasmUnet.dispose();
    await initBackend('webgpu');
  }
  // NFSD's ω = 7.5 and Bridge's ω = 30 multiply a difference of UNet predictions, so their bounds scale with them.
  expect(errors['nfsdGrad vs wasm (/ max|ε̂|)']).toBeLessThan(1e-4 * 7.5);
  expect(errors['csdGrad vs wasm (/ max|ε̂|)']).toBeLessThan(1e-4);
  expect(errors['bridgeGrad vs wasm (/ max|ε̂|)']).toBeLessThan(1e-4 * 30);
  expect(errors['pdsGrad vs wasm (/ max|ε̂|)']).toBeLessThan(1e-4);
});

test("conv2dOp's composed gradient (wasm's path) equals webgpu's own Conv2DBackprop kernels, strided and padded", async () => {
  // The composed input gradient once dilated dy with a rank-6 pad, whose webgpu shader is invalid WGSL: Dawn dropped
  // the command buffer and every value of the step came out wrong, without an exception.
  for (const c of [{ k: 3, stride: 2, pad: [1, 1, 1, 1] as Padding4, h: 7, w: 6 }, { k: 3, stride: 1, pad: [0, 2, 1, 0] as Padding4, h: 5, w: 5 }]) {
    const x = tf.randomNormal([2, c.h, c.w, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
    const w = tf.randomNormal([c.k, c.k, 3, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
    const b = tf.randomNormal([4], 0, 1, 'float32', 3) as tf.Tensor1D;
    const r = tf.randomNormal(conv2dOp(x, w, b, { stride: c.stride, padding: c.pad }).shape, 0, 1, 'float32', 4);
    const grads = async (gradient: GradientMode) => {
      const f = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
        tf.sum(tf.mul(conv2dOp(xx as tf.Tensor4D, ww as tf.Tensor4D, bb as tf.Tensor1D, { stride: c.stride, padding: c.pad, gradient }), r));
      const gs = tf.grads(f)([x, w, b]);
      const out = await Promise.all(gs.map((t) => t.data()));
      tf.dispose(gs);
      return out;
    };
    const native = await grads('native');
    const composed = await grads('composed');
    for (let i = 0; i < 3; i++) expect(relErr(composed[i], native[i])).toBeLessThan(1e-5);
    tf.dispose([x, w, b, r]);
  }
});

test('globalNorm (gradient clipping in trainTranslator / train-toy) of 700 tensors', async () => {
  // One tf.addN over ≈ 700 gradients compiled to an invalid webgpu shader (max expression depth): wrong norm, no error.
  const ts = Array.from({ length: 700 }, (_, i) => tf.fill([1 + (i % 5)], (i % 7) - 3));
  let want = 0;
  for (let i = 0; i < 700; i++) want += (1 + (i % 5)) * ((i % 7) - 3) ** 2;
  const n = globalNorm(ts);
  expect((await n.data())[0]).toBeCloseTo(Math.sqrt(want), 3);
  tf.dispose([n, ...ts]);
});

test('the pipeline end to end: loadStableDiffusion + editImage (3 DDS steps) on webgpu, finite, and no leak on a second call', async () => {
  const sd = await loadStableDiffusion(TINY_SD15);
  const image = tf.tidy(() => tf.sub(tf.mul(tf.randomUniform([1, 64, 64, 3], 0, 1, 'float32', 3), 2), 1) as tf.Tensor4D);
  try {
    const edit = () => editImage(sd, image, { source: 'a photo of a cat', target: 'a photo of a dog', steps: 3, seed: 1 });
    const first = await edit();
    const values = await first.image.data();
    expect(first.image.shape).toEqual([1, 64, 64, 3]);
    expect(values.every((v) => Number.isFinite(v) && v >= 0 && v <= 1)).toBe(true);
    tf.dispose([first.image, first.latent]);
    const before = tf.memory().numTensors;
    const second = await edit();
    expect(Array.from(await second.image.data())).toEqual(Array.from(values)); // seeded: the same edit again
    tf.dispose([second.image, second.latent]);
    expect(tf.memory().numTensors).toBe(before);
  } finally {
    image.dispose();
    sd.dispose();
  }
});
