// Parity of sdsGrad / scoreLoss / editLatent(method 'sds') with sds.safetensors, on the real tiny-sd15 UNet.
// Tolerances: fixtures/tiny-sd15/golden/README.md.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { Golden, readGoldens, relErr } from '../../../test-utils';
import { alphaSigma } from '@ddsjs/sd';
import { editLatent, scoreLoss, sdsGrad } from '../src';
import type { ScoreModel, TextEmbeddings } from '../src';
import type { ScoreSchedule } from '../src/internals';
import type { UNet2DConditionModel } from '../../sd/src/unet';
import { goldenEmbeddings, goldenSchedule, goldenStep, loadTinyUNet, nhwc } from './tiny';
import { check, checkScalar, errors, printErrors, replayModel, ReplayCall, rowErr } from './golden-common';

let unet: UNet2DConditionModel;
let schedule: ScoreSchedule;
let sd: ScoreModel;
let g: Record<string, Golden>;
let dds: Record<string, Golden>;
let text: TextEmbeddings;

beforeAll(async () => {
  await initBackend('wasm');
  g = await readGoldens('sds');
  dds = await readGoldens('dds');
  schedule = goldenSchedule(await readGoldens('scheduler'));
  unet = await loadTinyUNet();
  sd = { unet, schedule };
  text = goldenEmbeddings(g.embedding);
});

afterAll(() => {
  tf.dispose([text.cond, text.uncond]);
  unet?.dispose();
  printErrors(`sds.safetensors (${tf.getBackend()})`);
});

describe('sdsGrad vs sds.safetensors (real tiny UNet)', () => {
  it('single evaluation: z_t, α_t/σ_t, raw UNet rows [uncond, cond], ε̂, grad, loss, d(2000·loss)/dz', async () => {
    const t = g.timestep.data[0];
    const { alpha, sigma } = alphaSigma(schedule, [t]);
    checkScalar(alpha[0], g.alpha_t, 1e-4, 'alpha_t');
    checkScalar(sigma[0], g.sigma_t, 1e-4, 'sigma_t');
    const z = nhwc(g.z) as tf.Tensor4D;
    const eps = nhwc(g.eps) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const r = sdsGrad(sd, { z, text }, { timestep: t, noise: eps, intermediates: true });
    try {
      expect(r.timestep).toEqual([t]);
      const inter = r.intermediates!;
      await check(inter.zt[0], g.z_t, 1e-4, 'z_t');
      await check(inter.unetRaw, g.unet_out_raw, 1e-4, 'unet_out_raw');
      await check(inter.epsPred[0], g.eps_pred, 1e-4, 'eps_pred');
      await check(r.grad, g.grad, 1e-4, 'grad');
      const loss = scoreLoss(z, r.grad);
      checkScalar((await loss.data())[0], g.loss, 1e-4, 'loss');
      const dz = tf.grad((zz: tf.Tensor) => tf.mul(scoreLoss(zz, r.grad), 2000) as tf.Scalar)(z);
      await check(dz, g.z_grad, 1e-4, 'z_grad');
      tf.dispose([loss, dz]);
    } finally {
      r.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([z, eps]);
  });
});

describe('SDS 5-step optimisation vs sds.opt.* (stored timesteps and ε)', () => {
  it("editLatent(method 'sds'): UNet inputs, SGD steps, losses and final latent match", async () => {
    // The UNet replays the stored gradients: cond row = (grad_i + ε_i)/s, so ε̂ − ε = grad_i.
    const calls: ReplayCall[] = [];
    const s = 7.5;
    const model = replayModel(
      schedule,
      2,
      (i) => tf.tidy(() => tf.div(tf.add(goldenStep(g['opt.grads'], i), goldenStep(g['opt.eps'], i)), s) as tf.Tensor4D),
      calls,
    );
    const zSource = nhwc(dds.z_source) as tf.Tensor4D;
    const before = tf.memory().numTensors;
    const perStep: number[] = [];
    const res = await editLatent(
      model,
      { zSource, source: text, target: text },
      {
        method: 'sds',
        steps: 5,
        timestepAt: (i) => g['opt.timesteps'].data[i],
        noiseAt: (i) => goldenStep(g['opt.eps'], i),
        onStep: async ({ step, latent }) => {
          const zStep = goldenStep(g['opt.z_per_step'], step);
          perStep.push(relErr(await latent.data(), await zStep.data()));
          zStep.dispose();
        },
      },
    );
    expect(res.steps).toBe(5);
    perStep.forEach((e, i) => (errors[`opt.z_per_step[${i}]`] = e));
    expect(perStep.every((e) => e <= 1e-4)).toBe(true);
    errors['opt.losses'] = relErr(res.losses, g['opt.losses'].data);
    expect(errors['opt.losses']).toBeLessThanOrEqual(1e-4);
    await check(res.latent, g['opt.z_final'], 1e-4, 'opt.z_final');
    res.latent.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const [eps, zPer] = [g['opt.eps'], g['opt.z_per_step']].map((x) => nhwc(x));
    const [zsD, epsD, zPerD] = [await zSource.data(), await eps.data(), await zPer.data()];
    const n = zsD.length;
    for (let i = 0; i < 5; i++) {
      const t = g['opt.timesteps'].data[i];
      expect(calls[i].timestep).toEqual([t]);
      const { alpha, sigma } = alphaSigma(schedule, [t]);
      const e = epsD.subarray(i * n, (i + 1) * n);
      const zPrev = i === 0 ? zsD : zPerD.subarray((i - 1) * n, i * n);
      const zt = Array.from(zPrev, (v, j) => alpha[0] * v + sigma[0] * e[j]);
      errors[`opt: UNet input z_t[${i}]`] = Math.max(rowErr(calls[i].sample, 0, zt), rowErr(calls[i].sample, 1, zt));
      expect(errors[`opt: UNet input z_t[${i}]`]).toBeLessThanOrEqual(1e-4);
    }
    tf.dispose([zSource, eps, zPer]);
  });
});
