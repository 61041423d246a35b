/**
 * FlowEdit (Kulikov, Kleiner, Huberman-Spiegelglas, Michaeli, ICCV 2025; fallenshock/FlowEdit) for ε- and
 * v-prediction diffusion models: an inversion-free, optimisation-free editing path.
 * @module
 */
import * as tf from '@tensorflow/tfjs';
import { alphaSigma } from '@ddsjs/sd';
import { ddimTimesteps } from '@ddsjs/sd/internals';
import { SeededRandom } from './rng';
import { scoreGrad } from './score';
import type { ScoreModel, TextEmbeddings } from './types';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** FlowEdit's defaults (the paper's Stable Diffusion 3 settings; its code's `T_steps`, `n_max`, `n_avg`, guidances). */
export const FLOWEDIT_DEFAULTS = { steps: 50, nMax: 33, nAvg: 1, sourceGuidanceScale: 3.5, targetGuidanceScale: 13.5 } as const;

/** Options of {@link flowEditLatent}. */
export interface FlowEditOptions {
  /** T: the schedule's number of steps (DDIM spacing of the model's scheduler). Default 50. */
  steps?: number;
  /**
   * n_max: how many of the T steps FlowEdit runs (it skips the first, noisiest T − n_max). Default round(0.66·T),
   * 33 of 50 as in the paper.
   */
  nMax?: number;
  /** n_avg: noise draws averaged per step. Default 1. */
  nAvg?: number;
  /** CFG scale of the source branch. Default 3.5. */
  sourceGuidanceScale?: number;
  /** CFG scale of the target branch. Default 13.5. */
  targetGuidanceScale?: number;
  /** Seed of the noises (each draw gets its own seed derived from this one). */
  seed?: number;
  /** Mask of the update (latent or image resolution; see `ScoreOptions.mask`). */
  mask?: tf.Tensor;
  /** Maximum UNet rows per call. */
  unetBatch?: number;
  /** Called after every step with the step index, the timestep and the current latent (borrowed); `false` stops. */
  onStep?: (info: { step: number; steps: number; timestep: number; latent: tf.Tensor4D }) => boolean | void | Promise<boolean | void>;
  /** Aborts between steps. */
  signal?: AbortSignal;
}

/**
 * FlowEdit on a diffusion model, in the form we derive for ε (and v) prediction. FlowEdit integrates the ODE
 * `dZ/dt = V(Z_tar_t; y) − V(Z_src_t; ŷ)` with noise-coupled samples `Z_src_t` (the source noised to t) and
 * `Z_tar_t = Z + Z_src_t − X_src`, from t_max to 0, one fresh noise per step, no inversion and no backprop. For a
 * variance-preserving ε-model, the probability-flow ODE is straight in x̄ = z_t/α_t against s = σ_t/α_t
 * (`dx̄/ds = ε̂`, the DDIM update), and the coupling `x̄_tar = Z + x̄_src − X_src` means noising Z and X_src with the
 * SAME ε — `z_t^tar = α_t·Z + σ_t·ε`, `z_t^src = α_t·X_src + σ_t·ε` (DDS's pair). Each step is then
 * `Z ← Z + (s_{i+1} − s_i)·(ε̂^{ω_tar}(z_t^tar; y) − ε̂^{ω_src}(z_t^src; ŷ))` (s_{i+1} < s_i; s = 0 after the last
 * step), averaged over `nAvg` noises: one batch of 4 UNet rows per draw. FlowEdit's author gives the same velocity
 * difference in rectified-flow time for ε-models (fallenshock/FlowEdit issue 3); this is its VP/DDIM form. The
 * timesteps are the model's DDIM timesteps for `steps`, of which the last `nMax` run.
 *
 * `zSource` `[B, h, w, C]` (scaled latents) is not disposed; the caller owns the returned latent.
 */
export async function flowEditLatent(
  sd: ScoreModel & { schedule: { config?: { numTrainTimesteps: number; timestepSpacing: 'leading' | 'trailing' | 'linspace'; stepsOffset: number } } },
  inputs: { zSource: tf.Tensor4D; source: TextEmbeddings; target: TextEmbeddings },
  opts: FlowEditOptions = {},
): Promise<{ latent: tf.Tensor4D; steps: number }> {
  const fn = 'flowEditLatent';
  const given = Object.fromEntries(Object.entries(opts ?? {}).filter(([, v]) => v !== undefined)) as FlowEditOptions;
  const o = { ...FLOWEDIT_DEFAULTS, ...given } as Required<FlowEditOptions>;
  if (given.nMax === undefined) o.nMax = Math.max(1, Math.round((o.steps * FLOWEDIT_DEFAULTS.nMax) / FLOWEDIT_DEFAULTS.steps));
  for (const k of ['steps', 'nMax', 'nAvg'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 1) throw new InvalidArgumentError(`${fn}: ${k} must be a positive integer, got ${o[k]}`);
  }
  if (o.nMax > o.steps) throw new InvalidArgumentError(`${fn}: nMax (${o.nMax}) must not exceed steps (${o.steps})`);
  for (const k of ['sourceGuidanceScale', 'targetGuidanceScale'] as const) {
    if (!Number.isFinite(o[k])) throw new InvalidArgumentError(`${fn}: ${k} must be a finite number, got ${o[k]}`);
  }
  if (opts.seed !== undefined && !Number.isFinite(opts.seed)) throw new InvalidArgumentError(`${fn}: seed must be a finite number, got ${opts.seed}`);
  const zSource = inputs?.zSource;
  if (!(zSource instanceof tf.Tensor) || zSource.rank !== 4) throw new InvalidArgumentError(`${fn}: zSource must be a latent tensor [B, h, w, C]`);
  const T = sd?.schedule?.alphasCumprod?.length;
  if (!T) throw new InvalidArgumentError(`${fn}: the model must have a schedule with alphasCumprod`);
  const cfg = sd.schedule.config ?? { numTrainTimesteps: T, timestepSpacing: 'leading' as const, stepsOffset: 1 };
  const all = ddimTimesteps(cfg, o.steps);
  const run = all.slice(all.length - o.nMax);
  const sOf = (t: number | null) => {
    if (t === null || t < 0) return 0;
    const { alpha, sigma } = alphaSigma(sd.schedule, t);
    return sigma / alpha;
  };
  const seeds = opts.seed === undefined ? undefined : new SeededRandom(opts.seed);
  let z = tf.clone(zSource) as tf.Tensor4D;
  let taken = 0;
  try {
    for (let i = 0; i < run.length; i++) {
      if (opts.signal?.aborted) break;
      const t = run[i];
      const ds = sOf(i + 1 < run.length ? run[i + 1] : null) - sOf(t);
      let delta: tf.Tensor4D | null = null;
      for (let k = 0; k < o.nAvg; k++) {
        const r = scoreGrad(
          sd,
          {
            fn,
            latents: { zSource, z },
            terms: [
              { latent: 'zSource', cond: inputs.source.cond, uncond: inputs.source.uncond, guidanceScale: o.sourceGuidanceScale, coef: -1 },
              { latent: 'z', cond: inputs.target.cond, uncond: inputs.target.uncond, guidanceScale: o.targetGuidanceScale },
            ],
          },
          { timestep: t, mask: opts.mask, unetBatch: opts.unetBatch, seed: seeds ? seeds.nextUint32() : undefined },
        );
        const next: tf.Tensor4D = delta === null ? tf.clone(r.grad) : (tf.add(delta, r.grad) as tf.Tensor4D);
        delta?.dispose();
        r.dispose();
        delta = next;
      }
      const stepped = tf.tidy(() => tf.add(z, tf.mul(delta!, ds / o.nAvg)) as tf.Tensor4D);
      delta!.dispose();
      z.dispose();
      z = stepped;
      taken = i + 1;
      const go = opts.onStep ? await opts.onStep({ step: i, steps: run.length, timestep: t, latent: z }) : undefined;
      if (go === false) break;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const latent = z;
    z = null as unknown as tf.Tensor4D;
    return { latent, steps: taken };
  } finally {
    z?.dispose();
  }
}
