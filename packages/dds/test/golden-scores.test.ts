// Parity of nfsdGrad / csdGrad / bridgeGrad / pdsGrad with scores.safetensors (PyTorch re-implementations of each
// reference, fixed t / ε / ε′), on the real tiny-sd15 UNet. Tolerances: fixtures/tiny-sd15/golden/README.md.
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { Golden, readGoldens } from '../../../test-utils';
import { bridgeGrad, csdGrad, nfsdGrad, pdsGrad } from '../src';
import { pdsCoefficients } from '../src/internals';
import type { ScoreModel } from '../src';
import type { ScoreResult } from '../src/internals';
import type { UNet2DConditionModel } from '../../sd/src/unet';
import { goldenSchedule, loadTinyUNet, nhwc } from './tiny';
import { check, checkScalar, printErrors } from './golden-common';

let unet: UNet2DConditionModel;
let sd: ScoreModel;
let g: Record<string, Golden>;
let emb: Record<string, tf.Tensor3D>;
let z: tf.Tensor4D;
let zSource: tf.Tensor4D;
let eps: tf.Tensor4D;
let epsPrime: tf.Tensor4D;
let betas: Float32Array;

beforeAll(async () => {
  await initBackend('wasm');
  g = await readGoldens('scores');
  const sched = await readGoldens('scheduler');
  betas = Float32Array.from(sched.betas.data);
  sd = { unet: (unet = await loadTinyUNet()), schedule: { ...goldenSchedule(sched), betas } as ScoreModel['schedule'] };
  emb = {};
  for (const k of Object.keys(g).filter((k) => k.startsWith('inputs.emb.'))) emb[k.slice('inputs.emb.'.length)] = tf.tensor3d(g[k].data, g[k].shape as [number, number, number]);
  z = nhwc(g['inputs.z_target']) as tf.Tensor4D;
  zSource = nhwc(g['inputs.z_source']) as tf.Tensor4D;
  eps = nhwc(g['inputs.eps']) as tf.Tensor4D;
  epsPrime = nhwc(g['inputs.eps_prime']) as tf.Tensor4D;
});

afterAll(() => {
  tf.dispose([...Object.values(emb ?? {}), z, zSource, eps, epsPrime]);
  unet?.dispose();
  printErrors(`scores.safetensors (${tf.getBackend()})`);
});

/** Runs `f`, checks that it leaves no tensor behind once its result is disposed. */
async function leakFree(f: () => ScoreResult, checks: (r: ScoreResult) => Promise<void>): Promise<void> {
  const before = tf.memory().numTensors;
  const r = f();
  try {
    await checks(r);
  } finally {
    r.dispose();
  }
  expect(tf.memory().numTensors).toBe(before);
}

describe('the score family vs scores.safetensors (real tiny UNet)', () => {
  it('fixed inputs: t = 500, t_low = 150, t_prev = 498', () => {
    expect([g['inputs.t'].data[0], g['inputs.t_low'].data[0], g['inputs.t_prev'].data[0]]).toEqual([500, 150, 498]);
  });

  it('NFSD at t = 500 (δ_D = ε̂(∅) − ε̂(y_neg)) and t = 150 (δ_D = ε̂(∅)), w(t) = 1 − ᾱ_t', async () => {
    const text = { cond: emb.y, uncond: emb.null, negative: emb.neg_nfsd };
    await leakFree(
      () => nfsdGrad(sd, { z, text }, { timestep: 500, noise: eps, intermediates: true }),
      async (r) => {
        // Rows: (z, ∅), (z, y), (z, y_neg) — each once.
        expect(r.intermediates!.unetRaw.shape[0]).toBe(3);
        const raw = tf.split(r.intermediates!.unetRaw, 3, 0);
        await check(raw[0], g['unet_raw.t500.target.null'], 1e-4, 'unet_raw.t500.target.null');
        await check(raw[1], g['unet_raw.t500.target.y'], 1e-4, 'unet_raw.t500.target.y');
        await check(raw[2], g['unet_raw.t500.target.neg_nfsd'], 1e-4, 'unet_raw.t500.target.neg_nfsd');
        tf.dispose(raw);
        await check(r.grad, g['nfsd.t500.grad'], 1e-4, 'nfsd.t500.grad');
      },
    );
    await leakFree(
      () => nfsdGrad(sd, { z, text }, { timestep: 150, noise: eps }),
      async (r) => void (await check(r.grad, g['nfsd.t150.grad'], 1e-4, 'nfsd.t150.grad')),
    );
  });

  it('CSD: default scales (ε̂(y) − ε̂(∅), w = 1) and mixed scales (1, −0.5, −0.5, 0) with w(500)', async () => {
    await leakFree(
      () => csdGrad(sd, { z, text: { cond: emb.y, uncond: emb.null } }, { timestep: 500, noise: eps }),
      async (r) => void (await check(r.grad, g['csd.default.grad'], 1e-4, 'csd.default.grad')),
    );
    await leakFree(
      () =>
        csdGrad(
          sd,
          { z, text: { cond: emb.y, uncond: emb.null, negative: emb.neg_csd } },
          { timestep: 500, noise: eps, weighting: 'sds', scales: { cond: 1, negative: -0.5, null: -0.5, noise: 0 } },
        ),
      async (r) => void (await check(r.grad, g['csd.mixed.grad'], 2e-4, 'csd.mixed.grad')),
    );
  });

  it('SDS-Bridge stage two: w(500)·30·(ε̂(y ⊕ tgt) − ε̂(y ⊕ src))', async () => {
    await leakFree(
      () => bridgeGrad(sd, { z, source: emb.y_bridge_src, target: emb.y_bridge_tgt }, { timestep: 500, noise: eps }),
      async (r) => void (await check(r.grad, g['bridge.grad'], 1e-4, 'bridge.grad')),
    );
  });

  it("PDS: the reference's coefficients (betas[t] of the 1000-step table) and ζ_tgt − ζ_src", async () => {
    const c = pdsCoefficients(sd.schedule as never, 500, 498);
    checkScalar(c.betaT, g['pds.beta_t'], 1e-4, 'pds.beta_t');
    checkScalar(c.alphaT, g['pds.alpha_t'], 1e-4, 'pds.alpha_t');
    checkScalar(c.c0, g['pds.c0'], 1e-4, 'pds.c0');
    checkScalar(c.c1, g['pds.c1'], 1e-4, 'pds.c1');
    checkScalar(c.sigmaT, g['pds.sigma_t'], 1e-4, 'pds.sigma_t');
    await leakFree(
      () =>
        pdsGrad(
          sd,
          { zSource, zTarget: z, source: { cond: emb.y_source, uncond: emb.null }, target: { cond: emb.y, uncond: emb.null } },
          { timestep: 500, noise: eps, noisePrev: epsPrime, intermediates: true },
        ),
      async (r) => {
        expect(r.prevTimestep).toEqual([498]);
        const inter = r.intermediates!;
        await check(inter.epsPred[0], g['pds.src.eps_guided'], 1e-4, 'pds.src.eps_guided');
        await check(inter.epsPred[1], g['pds.tgt.eps_guided'], 1e-4, 'pds.tgt.eps_guided');
        // ζ per branch from the returned ε′ and intermediates: (x_{t_prev} − c₀·x̂₀ − c₁·x_t)/σ_t.
        const ap = Math.sqrt(sd.schedule.alphasCumprod[498]);
        const sp = Math.sqrt(1 - sd.schedule.alphasCumprod[498]);
        const [a, s] = [Math.sqrt(sd.schedule.alphasCumprod[500]), Math.sqrt(1 - sd.schedule.alphasCumprod[500])];
        const zeta = (x0: tf.Tensor, xt: tf.Tensor, e: tf.Tensor) =>
          tf.tidy(() => {
            const prev = tf.add(tf.mul(ap, x0), tf.mul(sp, r.noisePrev!));
            const x0hat = tf.div(tf.sub(xt, tf.mul(s, e)), a);
            return tf.div(tf.sub(prev, tf.add(tf.mul(c.c0, x0hat), tf.mul(c.c1, xt))), c.sigmaT);
          });
        const zs = zeta(zSource, inter.zt[0], inter.epsPred[0]);
        const zt = zeta(z, inter.zt[1], inter.epsPred[1]);
        await check(zs, g['pds.src.zeta'], 1e-4, 'pds.src.zeta');
        await check(zt, g['pds.tgt.zeta'], 1e-4, 'pds.tgt.zeta');
        tf.dispose([zs, zt]);
        await check(r.grad, g['pds.grad'], 5e-3, 'pds.grad');
      },
    );
  });
});
