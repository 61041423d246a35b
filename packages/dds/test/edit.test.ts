import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { readGoldens, relErr } from '../../../test-utils';
import { ddsGrad, EDIT_METHODS, editImage, editLatent, EditModel, flowEditLatent, resolveEditDefaults, TextEmbeddings } from '../src';
import { defaultLossScale, EditStepInfo, LIBRARY_EDIT_DEFAULTS, SeededRandom } from '../src/internals';
import { alphaSigma } from '@ddsjs/sd';
import type { UNet2DConditionModel } from '../../sd/src/unet';
import type { AutoencoderKL } from '../../sd/src/vae';
import { loadStableDiffusion, StableDiffusion } from '@ddsjs/sd';
import { TINY_SD15 } from '../../../test-utils';
import { fakeEditModel, fakeModel } from './fakes';
import { goldenEmbeddings, goldenSchedule, loadTinyUNet, loadTinyVae } from './tiny';

beforeAll(async () => {
  await initBackend('wasm');
});

/** A [1,H,W,3] test picture in [−1, 1]. Caller owns it. */
function picture(h: number, w: number, seed = 1): tf.Tensor4D {
  return tf.tidy(() => tf.sub(tf.mul(tf.randomUniform([1, h, w, 3], 0, 1, 'float32', seed), 2), 1) as tf.Tensor4D);
}

describe('editLatent (fake UNet)', () => {
  it('one SGD step is z ← z − lr·2000/4096·grad (the notebook per-element step) with the per-step seed drawn from opts.seed', async () => {
    const sd = fakeModel();
    const zSource = tf.randomNormal([1, 4, 6, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
    const text: TextEmbeddings = { cond: tf.fill([1, 3, 2], 0.3) as tf.Tensor3D, uncond: tf.zeros([1, 3, 2]) as tf.Tensor3D };
    const other: TextEmbeddings = { cond: tf.fill([1, 3, 2], -0.2) as tf.Tensor3D, uncond: text.uncond };
    const before = tf.memory().numTensors;
    const res = await editLatent(sd, { zSource, source: text, target: other }, { steps: 1, seed: 77, lr: 0.05 });
    const r = ddsGrad(sd, { zSource, zTarget: zSource, source: text, target: other }, { seed: new SeededRandom(77).nextUint32() });
    const expected = tf.tidy(() => tf.sub(zSource, tf.mul(r.grad, (0.05 * 2000) / 4096)));
    expect(relErr(await res.latent.data(), await expected.data())).toBeLessThan(1e-6);
    const loss = tf.tidy(() => tf.div(tf.sum(tf.mul(zSource, r.grad)), 24));
    expect(res.losses[0]).toBeCloseTo((await loss.data())[0], 5);
    tf.dispose([res.latent, expected, loss]);
    r.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([zSource, text.cond, text.uncond, other.cond]);
  });

  it('lossScale: 2000 gives the literal notebook step lr·2000/(h·w); defaultLossScale is 2000 at 64×64', async () => {
    expect(defaultLossScale(64, 64)).toBe(2000);
    expect(defaultLossScale(8, 8)).toBe(31.25);
    const sd = fakeModel();
    const zSource = tf.randomNormal([1, 4, 6, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
    const text: TextEmbeddings = { cond: tf.fill([1, 3, 2], 0.3) as tf.Tensor3D, uncond: tf.zeros([1, 3, 2]) as tf.Tensor3D };
    const other: TextEmbeddings = { cond: tf.fill([1, 3, 2], -0.2) as tf.Tensor3D, uncond: text.uncond };
    const res = await editLatent(sd, { zSource, source: text, target: other }, { steps: 1, seed: 5, lr: 0.05, lossScale: 2000 });
    const r = ddsGrad(sd, { zSource, zTarget: zSource, source: text, target: other }, { seed: new SeededRandom(5).nextUint32() });
    const expected = tf.tidy(() => tf.sub(zSource, tf.mul(r.grad, (0.05 * 2000) / (4 * 6))));
    expect(relErr(await res.latent.data(), await expected.data())).toBeLessThan(1e-6);
    tf.dispose([res.latent, expected, zSource, text.cond, text.uncond, other.cond]);
    r.dispose();
  });

  it('reports progress, stops when onStep returns false or the signal aborts, and uses a given optimizer', async () => {
    const sd = fakeModel();
    const zSource = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
    const text: TextEmbeddings = { cond: tf.fill([1, 3, 2], 0.3) as tf.Tensor3D, uncond: tf.zeros([1, 3, 2]) as tf.Tensor3D };
    const infos: EditStepInfo[] = [];
    const res = await editLatent(sd, { zSource, source: text, target: text }, {
      method: 'sds',
      steps: 10,
      seed: 1,
      onStep: (info) => {
        infos.push({ ...info });
        return info.step < 2;
      },
    });
    expect(res.steps).toBe(3);
    expect(infos.map((i) => i.step)).toEqual([0, 1, 2]);
    expect(infos.every((i) => i.steps === 10 && i.timestep >= 50 && i.timestep <= 948 && Number.isFinite(i.loss) && i.etaMs >= 0)).toBe(true);
    res.latent.dispose();

    const ctrl = new AbortController();
    const aborted = await editLatent(sd, { zSource, source: text, target: text }, {
      steps: 10,
      signal: ctrl.signal,
      onStep: ({ step }) => {
        if (step === 1) ctrl.abort();
      },
    });
    expect(aborted.steps).toBe(2);
    aborted.latent.dispose();

    // (DDS with different source and target prompts: a non-zero score.)
    const other: TextEmbeddings = { cond: tf.fill([1, 3, 2], -0.4) as tf.Tensor3D, uncond: text.uncond };
    const adam = tf.train.adam(0.01);
    const viaAdam = await editLatent(sd, { zSource, source: text, target: other }, { steps: 2, seed: 3, optimizer: adam });
    const viaSgd = await editLatent(sd, { zSource, source: text, target: other }, { steps: 2, seed: 3 });
    expect(relErr(await viaAdam.latent.data(), await viaSgd.latent.data())).toBeGreaterThan(1e-3);
    expect(adam.iterations).toBe(2);
    tf.dispose([viaAdam.latent, viaSgd.latent, zSource, text.cond, text.uncond, other.cond]);
    adam.dispose();
  });

  it('every method edits (fake model): finite latents, no leaked tensor; method defaults resolve (PDS guidance 100)', async () => {
    const sd = fakeModel();
    const zSource = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 9) as tf.Tensor4D;
    const text: TextEmbeddings = { cond: tf.fill([1, 3, 2], 0.3) as tf.Tensor3D, uncond: tf.zeros([1, 3, 2]) as tf.Tensor3D };
    const other: TextEmbeddings = { cond: tf.fill([1, 3, 2], -0.2) as tf.Tensor3D, uncond: text.uncond };
    const negative = tf.fill([1, 3, 2], 0.1) as tf.Tensor3D;
    const before = tf.memory().numTensors;
    for (const method of EDIT_METHODS) {
      const r = await editLatent(sd, { zSource, source: text, target: other, negative }, { method, steps: 3, seed: 1, lr: 0.01 });
      const d = await r.latent.data();
      expect({ method, finite: d.every(Number.isFinite), changed: d.some((v, i) => v !== zSource.dataSync()[i]) }).toEqual({ method, finite: true, changed: true });
      r.latent.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(resolveEditDefaults({}, { method: 'pds' }).guidanceScale).toEqual({ value: 100, source: 'library' });
    expect(resolveEditDefaults({ defaults: { edit: { guidanceScale: 3 } } }, { method: 'flowedit' }).guidanceScale).toEqual({ value: 3, source: 'model' });
    await expect(editLatent(sd, { zSource, source: text, target: other }, { method: 'nfsd' })).rejects.toThrow(/needs inputs.negative/);
    tf.dispose([zSource, text.cond, text.uncond, other.cond, negative]);
  });

  it('FlowEdit, one step from t: Z = X_src − (σ_t/α_t)·(ε̂_tar − ε̂_src) with the shared noise (= the DDS pair)', async () => {
    const sd = fakeModel();
    const zSource = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 19) as tf.Tensor4D;
    const text: TextEmbeddings = { cond: tf.fill([1, 3, 2], 0.3) as tf.Tensor3D, uncond: tf.zeros([1, 3, 2]) as tf.Tensor3D };
    const other: TextEmbeddings = { cond: tf.fill([1, 3, 2], -0.2) as tf.Tensor3D, uncond: text.uncond };
    const seen: number[] = [];
    const r = await flowEditLatent(sd, { zSource, source: text, target: other }, {
      steps: 4, nMax: 1, seed: 5, sourceGuidanceScale: 7.5, targetGuidanceScale: 7.5, onStep: ({ timestep }) => void seen.push(timestep),
    });
    // DDIM 'leading' timesteps for 4 steps with steps_offset 1: 751, 501, 251, 1 — nMax 1 runs only t = 1.
    expect(seen).toEqual([1]);
    const dds = ddsGrad(sd, { zSource, zTarget: zSource, source: text, target: other }, { timestep: 1, seed: new SeededRandom(5).nextUint32() });
    const { alpha, sigma } = alphaSigma(sd.schedule, 1);
    const expected = tf.tidy(() => tf.sub(zSource, tf.mul(dds.grad, sigma / alpha)));
    expect(relErr(await r.latent.data(), await expected.data())).toBeLessThan(1e-6);
    tf.dispose([r.latent, expected, zSource, text.cond, text.uncond, other.cond]);
    dds.dispose();
  });

  it('resolveEditDefaults: each setting with its source (option, model folder, library)', () => {
    expect(resolveEditDefaults({ defaults: { edit: { lr: 0.02 } } }, { steps: 5 })).toEqual({
      steps: { value: 5, source: 'option' },
      lr: { value: 0.02, source: 'model' },
      guidanceScale: { value: LIBRARY_EDIT_DEFAULTS.guidanceScale, source: 'library' },
    });
    expect(resolveEditDefaults({}, {})).toEqual({
      steps: { value: 200, source: 'library' },
      lr: { value: 0.1, source: 'library' },
      guidanceScale: { value: 7.5, source: 'library' },
    });
  });

  it("resolveEditDefaults: the model's per-method values (edit.methods) win over its shared ones, options over both", () => {
    const model = { defaults: { edit: { lr: 0.005, steps: 50, methods: { nfsd: { lr: 0.02 }, flowedit: { guidanceScale: 3 } } } } };
    expect(resolveEditDefaults(model, { method: 'nfsd' })).toEqual({
      steps: { value: 50, source: 'model' },
      lr: { value: 0.02, source: 'model' },
      guidanceScale: { value: 7.5, source: 'library' },
    });
    expect(resolveEditDefaults(model, { method: 'dds' }).lr).toEqual({ value: 0.005, source: 'model' });
    expect(resolveEditDefaults(model, { method: 'flowedit' }).guidanceScale).toEqual({ value: 3, source: 'model' });
    expect(resolveEditDefaults(model, { method: 'pds' }).guidanceScale).toEqual({ value: 100, source: 'library' });
    expect(resolveEditDefaults(model, { method: 'nfsd', lr: 0.1 }).lr).toEqual({ value: 0.1, source: 'option' });
    const typo = { defaults: { edit: { methods: { nfds: { lr: 0.02 } } } } };
    expect(() => resolveEditDefaults(typo, { method: 'dds' })).toThrow(/unknown method 'nfds'/);
  });

  it("takes steps, lr and guidance from the model's defaults (ddsjs_defaults.json) when not given; options win", async () => {
    const sd = { ...fakeModel(), defaults: { edit: { lr: 0.02, steps: 3, guidanceScale: 2 } } };
    const zSource = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 9) as tf.Tensor4D;
    const text: TextEmbeddings = { cond: tf.fill([1, 3, 2], 0.3) as tf.Tensor3D, uncond: tf.zeros([1, 3, 2]) as tf.Tensor3D };
    const other: TextEmbeddings = { cond: tf.fill([1, 3, 2], -0.2) as tf.Tensor3D, uncond: text.uncond };
    const before = tf.memory().numTensors;
    const res = await editLatent(sd, { zSource, source: text, target: other }, { seed: 11 });
    expect(res.steps).toBe(3);
    // The first step with the model's lr and guidance, by hand:
    const one = await editLatent(sd, { zSource, source: text, target: other }, { seed: 11, steps: 1 });
    const r = ddsGrad(sd, { zSource, zTarget: zSource, source: text, target: other }, { seed: new SeededRandom(11).nextUint32(), guidanceScale: 2 });
    const expected = tf.tidy(() => tf.sub(zSource, tf.mul(r.grad, (0.02 * 2000) / 4096)));
    expect(relErr(await one.latent.data(), await expected.data())).toBeLessThan(1e-6);
    // Explicit options override the model's: the notebook's lr and guidance give another step.
    const explicit = await editLatent(sd, { zSource, source: text, target: other }, { seed: 11, steps: 1, lr: 0.1, guidanceScale: 7.5 });
    const r2 = ddsGrad(sd, { zSource, zTarget: zSource, source: text, target: other }, { seed: new SeededRandom(11).nextUint32(), guidanceScale: 7.5 });
    const expected2 = tf.tidy(() => tf.sub(zSource, tf.mul(r2.grad, (0.1 * 2000) / 4096)));
    expect(relErr(await explicit.latent.data(), await expected2.data())).toBeLessThan(1e-6);
    expect(relErr(await explicit.latent.data(), await one.latent.data())).toBeGreaterThan(1e-3);
    tf.dispose([res.latent, one.latent, explicit.latent, expected, expected2]);
    r.dispose();
    r2.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([zSource, text.cond, text.uncond, other.cond]);
  });

  it('rejects bad options with errors naming them', async () => {
    const sd = fakeModel();
    const z = tf.zeros([1, 2, 2, 4]) as tf.Tensor4D;
    const t: TextEmbeddings = { cond: tf.zeros([1, 3, 2]) as tf.Tensor3D, uncond: tf.zeros([1, 3, 2]) as tf.Tensor3D };
    await expect(editLatent(sd, { zSource: z, source: t, target: t }, { method: 'xyz' as never })).rejects.toThrow(/method must be one of 'dds', 'sds', 'nfsd', 'csd', 'pds', 'flowedit'/);
    await expect(editLatent(sd, { zSource: z, source: t, target: t }, { steps: -1 })).rejects.toThrow(/steps must be a non-negative integer/);
    await expect(editLatent(sd, { zSource: z, source: t, target: t }, { lr: 0 })).rejects.toThrow(/lr must be a positive number/);
    tf.dispose([z, t.cond, t.uncond]);
  });
});

describe('editImage (fake model)', () => {
  it('returns [1,H,W,3] in [0,1] and the latent [1,H/8,W/8,4] for a non-square picture, without leaks', async () => {
    const sd = fakeEditModel();
    const img = picture(48, 80);
    const before = tf.memory().numTensors;
    const steps: number[] = [];
    const res = await editImage(sd, img, { source: 'a cat', target: 'a tiger', steps: 4, seed: 5, onStep: ({ step }) => void steps.push(step) });
    expect(res.image.shape).toEqual([1, 48, 80, 3]);
    expect(res.latent.shape).toEqual([1, 6, 10, 4]);
    expect(res.steps).toBe(4);
    expect(steps).toEqual([0, 1, 2, 3]);
    const [mn, mx] = [tf.min(res.image), tf.max(res.image)];
    expect((await mn.data())[0]).toBeGreaterThanOrEqual(0);
    expect((await mx.data())[0]).toBeLessThanOrEqual(1);
    tf.dispose([mn, mx]);
    expect(tf.memory().numTensors).toBe(before + 2);
    // Same seed → identical result.
    const again = await editImage(sd, img, { source: 'a cat', target: 'a tiger', steps: 4, seed: 5 });
    expect(Array.from(await again.latent.data())).toEqual(Array.from(await res.latent.data()));
    tf.dispose([res.image, res.latent, again.image, again.latent, img]);
  });

  it('names the size when the sides are not multiples of 8, and requires both prompts', async () => {
    const sd = fakeEditModel();
    const img = picture(60, 64);
    await expect(editImage(sd, img, { source: 'a', target: 'b' })).rejects.toThrow('editImage: the image is 64×60 pixels; both sides must be multiples of 8');
    const ok = picture(64, 64);
    await expect(editImage(sd, ok, { target: 'b' } as never)).rejects.toThrow(/source: string, target: string/);
    const bad = tf.zeros([64, 64, 3]);
    await expect(editImage(sd, bad as never, { source: 'a', target: 'b' })).rejects.toThrow(/image must be a tensor \[1, H, W, 3\]/);
    tf.dispose([img, ok, bad]);
  });
});

describe('editImage (real tiny-sd15 UNet and VAE)', () => {
  let unet: UNet2DConditionModel;
  let vae: AutoencoderKL;
  let sd: EditModel;
  let src: TextEmbeddings;
  let tgt: TextEmbeddings;

  beforeAll(async () => {
    unet = await loadTinyUNet();
    vae = await loadTinyVae();
    const dds = await readGoldens('dds');
    src = goldenEmbeddings(dds.embedding_source);
    tgt = goldenEmbeddings(dds.embedding_target);
    // The text encoder's outputs for these prompts are stored in the golden; encodePrompt returns them.
    const table: Record<string, tf.Tensor3D> = { '': src.uncond, 'a photo of a cat.': src.cond, 'a photo of a tiger.': tgt.cond };
    sd = {
      unet,
      vae,
      schedule: { ...goldenSchedule(await readGoldens('scheduler')), scalingFactor: vae.scalingFactor },
      encodePrompt: (p: string) => {
        if (!table[p]) throw new Error(`no stored embedding for '${p}'`);
        return tf.clone(table[p]);
      },
    };
  });

  afterAll(() => {
    tf.dispose([src.cond, src.uncond, tgt.cond]);
    unet?.dispose();
    vae?.dispose();
  });

  it('0 steps: the latent is vae.encode(x).mean × scaling and the image its decode', async () => {
    const img = picture(64, 64, 3);
    const res = await editImage(sd, img, { source: 'a photo of a cat.', target: 'a photo of a tiger.', steps: 0 });
    const ref = tf.tidy(() => {
      const post = vae.encode(img);
      const z = tf.mul(post.mean, vae.scalingFactor);
      return [z, tf.clipByValue(tf.add(tf.div(vae.decode(tf.div(z, vae.scalingFactor) as tf.Tensor4D), 2), 0.5), 0, 1)];
    });
    expect(relErr(await res.latent.data(), await ref[0].data())).toBeLessThan(1e-6);
    expect(relErr(await res.image.data(), await ref[1].data())).toBeLessThan(1e-5);
    tf.dispose([img, res.image, res.latent, ...ref]);
  });

  it('a few DDS steps at 64×64 (8×8 latent): shapes, range, finite losses, the edit moves the latent, no leaks', async () => {
    const img = picture(64, 64, 4);
    const before = tf.memory().numTensors;
    const res = await editImage(sd, img, { source: 'a photo of a cat.', target: 'a photo of a tiger.', steps: 3, seed: 1 });
    expect(res.image.shape).toEqual([1, 64, 64, 3]);
    expect(res.latent.shape).toEqual([1, 8, 8, 4]);
    expect(res.losses.length).toBe(3);
    expect(res.losses.every(Number.isFinite)).toBe(true);
    expect(tf.memory().numTensors).toBe(before + 2);
    const zHat = tf.tidy(() => tf.mul(vae.encode(img).mean, vae.scalingFactor));
    const moved = relErr(await res.latent.data(), await zHat.data());
    expect(moved).toBeGreaterThan(1e-4);
    const sdsRes = await editImage(sd, img, { source: 'a photo of a cat.', target: 'a photo of a tiger.', steps: 2, seed: 1, method: 'sds' });
    expect(sdsRes.image.shape).toEqual([1, 64, 64, 3]);
    tf.dispose([img, res.image, res.latent, zHat, sdsRes.image, sdsRes.latent]);
  });
});

describe('editImage with loadStableDiffusion (tiny-sd15)', () => {
  it('the loaded pipeline satisfies EditModel; a 2-step DDS edit of a 64×48 picture works and does not leak', async () => {
    const sd: StableDiffusion = await loadStableDiffusion(TINY_SD15);
    try {
      const model: EditModel = sd; // compile-time check of the structural interface
      const img = picture(48, 64, 6);
      const before = tf.memory().numTensors;
      const res = await editImage(model, img, { source: 'a photo of a cat.', target: 'a photo of a tiger.', steps: 2, seed: 2 });
      expect(res.image.shape).toEqual([1, 48, 64, 3]);
      expect(res.latent.shape).toEqual([1, 6, 8, 4]);
      expect(res.losses.every(Number.isFinite)).toBe(true);
      expect(tf.memory().numTensors).toBe(before + 2);
      tf.dispose([img, res.image, res.latent]);
    } finally {
      sd.dispose();
    }
  });
});
