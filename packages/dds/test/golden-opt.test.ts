// Parity of the 5-step DDS and SDS optimisations with the REAL tiny UNet (~30 UNet rows at 64×64: about a minute
// on an idle machine).
// Runs the 5-step DDS and SDS optimisations of the goldens with the REAL tiny UNet (stored timesteps and ε), and
// compares every step's gradient, loss and latent with opt.* (the default suite replays the stored gradients).
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { Golden, readGoldens, relErr } from '../../../test-utils';
import { ddsGrad, scoreLoss, sdsGrad } from '../src';
import type { ScoreModel, TextEmbeddings } from '../src';
import type { UNet2DConditionModel } from '../../sd/src/unet';
import { goldenEmbeddings, goldenSchedule, goldenStep, loadTinyUNet, nhwc } from './tiny';
import { errors, printErrors } from './golden-common';

jest.setTimeout(900_000);

let unet: UNet2DConditionModel;
let sd: ScoreModel;
let dds: Record<string, Golden>;
let sds: Record<string, Golden>;

beforeAll(async () => {
  await initBackend('wasm');
  [dds, sds] = [await readGoldens('dds'), await readGoldens('sds')];
  unet = await loadTinyUNet();
  sd = { unet, schedule: goldenSchedule(await readGoldens('scheduler')) };
});

afterAll(() => {
  unet?.dispose();
  printErrors(`5-step optimisations with the real UNet (${tf.getBackend()})`);
});

async function run(
  name: string,
  g: Record<string, Golden>,
  zKey: string,
  score: (z: tf.Variable<tf.Rank.R4>, i: number, eps: tf.Tensor4D) => { grad: tf.Tensor4D; dispose(): void },
  gradTol: number,
  lossTol: number,
): Promise<void> {
  const zSource = nhwc(dds.z_source) as tf.Tensor4D;
  const z = tf.variable(zSource);
  const opt = tf.train.sgd(0.1);
  for (let i = 0; i < 5; i++) {
    const eps = goldenStep(g['opt.eps'], i);
    const r = score(z, i, eps);
    const gStep = goldenStep(g['opt.grads'], i);
    const gold = await gStep.data();
    errors[`${name}.opt.grads[${i}]`] = relErr(await r.grad.data(), gold);
    expect(errors[`${name}.opt.grads[${i}]`]).toBeLessThanOrEqual(gradTol);
    const loss = opt.minimize(() => tf.mul(scoreLoss(z, r.grad), 2000) as tf.Scalar, true, [z])!;
    const lossVal = (await loss.data())[0] / 2000;
    const ref = g['opt.losses'].data[i];
    errors[`${name}.opt.losses[${i}]`] = relErr([lossVal], [ref]);
    expect(errors[`${name}.opt.losses[${i}]`]).toBeLessThanOrEqual(lossTol);
    const zStep = goldenStep(g[`opt.${zKey}_per_step`], i);
    errors[`${name}.opt.${zKey}_per_step[${i}]`] = relErr(await z.data(), await zStep.data());
    expect(errors[`${name}.opt.${zKey}_per_step[${i}]`]).toBeLessThanOrEqual(1e-4);
    tf.dispose([eps, gStep, zStep, loss]);
    r.dispose();
  }
  const fin = nhwc(g[`opt.${zKey}_final`]);
  errors[`${name}.opt.${zKey}_final`] = relErr(await z.data(), await fin.data());
  expect(errors[`${name}.opt.${zKey}_final`]).toBeLessThanOrEqual(1e-4);
  tf.dispose([fin, z, zSource]);
  opt.dispose();
}

it('DDS: opt.grads, opt.losses, opt.z_target_per_step, opt.z_target_final with the real UNet', async () => {
  const src: TextEmbeddings = goldenEmbeddings(dds.embedding_source);
  const tgt: TextEmbeddings = goldenEmbeddings(dds.embedding_target);
  const zSource = nhwc(dds.z_source) as tf.Tensor4D;
  await run('dds', dds, 'z_target', (z, i, eps) =>
    ddsGrad(sd, { zSource, zTarget: z, source: src, target: tgt }, { timestep: dds['opt.timesteps'].data[i], noise: eps }),
    1e-3, 5e-3);
  tf.dispose([zSource, src.cond, src.uncond, tgt.cond, tgt.uncond]);
});

it('SDS: opt.grads, opt.losses, opt.z_per_step, opt.z_final with the real UNet', async () => {
  const text = goldenEmbeddings(sds.embedding);
  await run('sds', sds, 'z', (z, i, eps) => sdsGrad(sd, { z, text }, { timestep: sds['opt.timesteps'].data[i], noise: eps }), 1e-4, 1e-4);
  tf.dispose([text.cond, text.uncond]);
});
