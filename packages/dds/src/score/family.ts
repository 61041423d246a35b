/**
 * The score-distillation family on the one general score ({@link scoreGrad}): NFSD, CSD, SDS-Bridge (stage two)
 * and PDS, next to `sdsGrad` / `ddsGrad`. Every function takes the same {@link ScoreOptions} (timestep, noise,
 * guidanceScale, weighting, mask, seed, unetBatch, intermediates) and returns a {@link ScoreResult} whose tensors
 * the caller owns. Notation: ε̂(z_t; y) the UNet's ε-prediction (v-prediction converted), ε̂^ω(y) = ε̂(∅) + ω(ε̂(y) −
 * ε̂(∅)), all terms at one t and one ε.
 * @module
 */
import * as tf from '@tensorflow/tfjs';
import { alphaSigma } from '@ddsjs/sd';
import { checkLatents, guidanceOf, scoreGrad } from './score';
import type { ScoreModel, ScoreOptions, ScoreResult } from './types';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** NFSD's timestep below which δ_D = ε̂(∅) (Katzir et al.: the noise is then small enough that ε̂(∅) is the noise). */
export const NFSD_T_SWITCH = 200;
/** The negative prompt of the NFSD reference (davidmcall/SDS-Bridge `2D_experiments/guidance.py`). */
export const NFSD_NEGATIVE_PROMPT =
  'unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy';
/** The negative prompt of the CSD reference's Stable Diffusion configs (CVMI-Lab/Classifier-Score-Distillation). */
export const CSD_NEGATIVE_PROMPT = 'oversaturated color, ugly, tiling, low quality, noisy';
/** SDS-Bridge's default ω (`bridge_stage_two`'s `cfg_scale`). */
export const BRIDGE_SCALE = 30;
/** SDS-Bridge's modifier of the target prompt ("y ⊕ tgt_mod"). */
export const BRIDGE_TARGET_MODIFIER = ', detailed high resolution, high quality, sharp';
/** SDS-Bridge's modifier of the source prompt ("y ⊕ src_mod"), describing the current (bad) distribution. */
export const BRIDGE_SOURCE_MODIFIER = ', oversaturated, smooth, pixelated, cartoon, foggy, hazy, blurry, bad structure, noisy, malformed';
/** PDS's step between t and t_prev: its reference draws t from a 500-step grid of the 1000-step schedule. */
export const PDS_STEP = 2;

function tensor3(fn: string, name: string, e: unknown, b: number): tf.Tensor3D {
  if (!(e instanceof tf.Tensor) || e.rank !== 3 || (e.shape[0] !== 1 && e.shape[0] !== b)) {
    throw new InvalidArgumentError(`${fn}: ${name} must be text embeddings [1, L, D] or [${b}, L, D], got ${e instanceof tf.Tensor ? `[${e.shape}]` : typeof e}`);
  }
  return e as tf.Tensor3D;
}

/**
 * Noise-Free Score Distillation (Katzir, Patashnik, Cohen-Or, Lischinski, ICLR 2024; reference davidmcall/SDS-Bridge
 * `2D_experiments/guidance.py` `nfsd_loss`):
 * `grad = w(t)·(ω·(ε̂(y) − ε̂(∅)) + δ_D)`, `δ_D = ε̂(∅)` when t < 200, else `ε̂(∅) − ε̂(y_neg)`; computed as
 * `w(t)·(ε̂^ω(y) − [t ≥ 200]·ε̂(y_neg))` (the same sum). The paper's weighting is w(t) = 1 − ᾱ_t: it is this
 * function's default (`opts.weighting` overrides). `text.negative` is the negative prompt's embeddings (the
 * reference's is {@link NFSD_NEGATIVE_PROMPT}); ω = `opts.guidanceScale` (7.5). Rows: (z, ∅), (z, y), (z, y_neg).
 */
export function nfsdGrad(
  model: ScoreModel,
  inputs: { z: tf.Tensor4D; text: { cond: tf.Tensor3D; uncond: tf.Tensor3D; negative: tf.Tensor3D } },
  opts: ScoreOptions = {},
): ScoreResult {
  const fn = 'nfsdGrad';
  if (!inputs || typeof inputs !== 'object' || !inputs.text) throw new InvalidArgumentError(`${fn}: inputs must be { z, text: { cond, uncond, negative } }`);
  checkLatents(fn, [['z', inputs.z]]);
  const b = inputs.z.shape[0];
  const { text } = inputs;
  const [cond, uncond, negative] = (['cond', 'uncond', 'negative'] as const).map((k) => tensor3(fn, `text.${k}`, text[k], b));
  const w = guidanceOf(fn, opts);
  return scoreGrad(
    model,
    {
      fn,
      latents: { z: inputs.z },
      terms: [
        { latent: 'z', cond, uncond, guidanceScale: w },
        { latent: 'z', cond: negative, coef: (t) => (t < NFSD_T_SWITCH ? 0 : -1) },
      ],
    },
    { ...opts, weighting: opts?.weighting ?? 'sds' },
  );
}

/** CSD's scales: grad = w·(cond·ε̂(y) + negative·ε̂(y_neg) + null·ε̂(∅) + noise·ε). Each a number or a function of the step. */
export interface CsdScales {
  cond: number;
  negative: number;
  null: number;
  noise: number;
}

/**
 * Classifier Score Distillation (Yu, Guo, Li, Yuan, Qi, ICLR 2024; reference CVMI-Lab/Classifier-Score-Distillation
 * threestudio `deep_floyd_simple_guidance.py`, `stable_diffusion_triple_guidance.py`):
 * `grad = w(t)·(c·ε̂(y) + u·ε̂(y_neg) + n·ε̂(∅) + k·ε)`. The default scales (c, u, n, k) = (1, 0, −1, 0) give the
 * "classifier score" ε̂(y) − ε̂(∅) (no CFG); a negative prompt term (`text.negative`, e.g.
 * {@link CSD_NEGATIVE_PROMPT}) needs `scales.negative` ≠ 0. Scales that follow a schedule over the optimisation are
 * the caller's: pass the step's values. Default weighting uniform (the simple guidance's); the SD triple guidance
 * uses `weighting: 'sds'`. Rows: (z, y), (z, y_neg) when used, (z, ∅) when n ≠ 0.
 */
export function csdGrad(
  model: ScoreModel,
  inputs: { z: tf.Tensor4D; text: { cond: tf.Tensor3D; uncond: tf.Tensor3D; negative?: tf.Tensor3D } },
  opts: ScoreOptions & { scales?: Partial<CsdScales> } = {},
): ScoreResult {
  const fn = 'csdGrad';
  if (!inputs || typeof inputs !== 'object' || !inputs.text) throw new InvalidArgumentError(`${fn}: inputs must be { z, text: { cond, uncond, negative? } }`);
  checkLatents(fn, [['z', inputs.z]]);
  const b = inputs.z.shape[0];
  const sc: CsdScales = { cond: 1, negative: 0, null: -1, noise: 0, ...(opts?.scales ?? {}) };
  for (const [k, v] of Object.entries(sc)) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidArgumentError(`${fn}: scales.${k} must be a finite number, got ${v}`);
  }
  const cond = tensor3(fn, 'text.cond', inputs.text.cond, b);
  const terms = [{ latent: 'z', cond, coef: sc.cond }];
  if (sc.negative !== 0) {
    if (inputs.text.negative === undefined) throw new InvalidArgumentError(`${fn}: scales.negative is ${sc.negative} but text.negative is missing`);
    terms.push({ latent: 'z', cond: tensor3(fn, 'text.negative', inputs.text.negative, b), coef: sc.negative });
  }
  if (sc.null !== 0) terms.push({ latent: 'z', cond: tensor3(fn, 'text.uncond', inputs.text.uncond, b), coef: sc.null });
  const { scales: _scales, ...rest } = opts ?? {};
  void _scales;
  return scoreGrad(model, { fn, latents: { z: inputs.z }, terms, noiseCoef: sc.noise }, rest);
}

/**
 * SDS-Bridge, stage two (McAllister, Ge, Huang, Jacobs, Efros, Holynski, Kanazawa, 2024; reference
 * davidmcall/SDS-Bridge `2D_experiments/guidance.py` `bridge_stage_two`): one latent, two prompts, no CFG, no ε —
 * `grad = w(t)·ω·(ε̂(z_t; y ⊕ tgt_mod) − ε̂(z_t; y ⊕ src_mod))`, ω = `opts.scale` (default {@link BRIDGE_SCALE} = 30),
 * w(t) = 1 − ᾱ_t by default (the reference's). `source` / `target` are the two modified prompts' embeddings
 * (`[1|B, L, D]`; the reference's modifiers: {@link BRIDGE_SOURCE_MODIFIER}, {@link BRIDGE_TARGET_MODIFIER}).
 * `opts.guidanceScale` is not used.
 */
export function bridgeGrad(
  model: ScoreModel,
  inputs: { z: tf.Tensor4D; source: tf.Tensor3D; target: tf.Tensor3D },
  opts: ScoreOptions & { scale?: number } = {},
): ScoreResult {
  const fn = 'bridgeGrad';
  if (!inputs || typeof inputs !== 'object') throw new InvalidArgumentError(`${fn}: inputs must be { z, source, target }`);
  checkLatents(fn, [['z', inputs.z]]);
  const b = inputs.z.shape[0];
  const scale = opts?.scale ?? BRIDGE_SCALE;
  if (typeof scale !== 'number' || !Number.isFinite(scale)) throw new InvalidArgumentError(`${fn}: scale must be a finite number, got ${scale}`);
  const { scale: _scale, ...rest } = opts ?? {};
  void _scale;
  return scoreGrad(
    model,
    {
      fn,
      latents: { z: inputs.z },
      terms: [
        { latent: 'z', cond: tensor3(fn, 'target', inputs.target, b), coef: scale },
        { latent: 'z', cond: tensor3(fn, 'source', inputs.source, b), coef: -scale },
      ],
    },
    { ...rest, weighting: rest.weighting ?? 'sds' },
  );
}

/** PDS's coefficients at (t, t_prev), as its reference computes them (float64 here). */
export interface PdsCoefficients {
  /** β_t = betas[t] of the 1000-step table. */
  betaT: number;
  /** α_t = 1 − β_t. */
  alphaT: number;
  /** c₀ = √ᾱ_{t_prev}·β_t/(1 − ᾱ_t). */
  c0: number;
  /** c₁ = √α_t·(1 − ᾱ_{t_prev})/(1 − ᾱ_t). */
  c1: number;
  /** σ_t = √((1 − ᾱ_{t_prev})/(1 − ᾱ_t)·β_t). */
  sigmaT: number;
}

/**
 * PDS's posterior coefficients at (t, tPrev) from the schedule: β_t is `schedule.betas[t]` when the schedule has
 * betas (`loadStableDiffusion`'s does), else 1 − ᾱ_t/ᾱ_{t−1}.
 */
export function pdsCoefficients(schedule: { alphasCumprod: ArrayLike<number>; betas?: ArrayLike<number> }, t: number, tPrev: number): PdsCoefficients {
  const ac = schedule.alphasCumprod;
  alphaSigma(schedule, t);
  alphaSigma(schedule, tPrev);
  const betaT = schedule.betas ? schedule.betas[t] : 1 - ac[t] / (t > 0 ? ac[t - 1] : 1);
  const alphaT = Math.fround(1 - betaT);
  const [a, ap] = [ac[t], ac[tPrev]];
  return {
    betaT,
    alphaT,
    c0: (Math.sqrt(ap) * betaT) / (1 - a),
    c1: (Math.sqrt(alphaT) * (1 - ap)) / (1 - a),
    sigmaT: Math.sqrt(((1 - ap) / (1 - a)) * betaT),
  };
}

/**
 * Posterior Distillation Sampling (Koo, Park, Sung, CVPR 2024; reference KAIST-Visual-AI-Group/PDS `pds/pds.py`):
 * with two shared noises ε (for x_t) and ε′ (for x_{t_prev} = √ᾱ_{t_prev}·x₀ + √(1 − ᾱ_{t_prev})·ε′), per branch
 * ζ = (x_{t_prev} − μ(x_t, ε̂^ω))/σ_t with the DDPM posterior mean μ = c₀·x̂₀ + c₁·x_t, x̂₀ = (x_t − √(1−ᾱ_t)·ε̂^ω)/√ᾱ_t,
 * and `grad = ζ_tgt − ζ_src` (source ẑ with ŷ, target z with y; coefficients {@link pdsCoefficients}, β_t and α_t of
 * the 1000-step table as the reference uses them). The ε′ parts of the two ζ are equal and cancel, so the grad is
 * evaluated in the equivalent, better-conditioned form
 * `grad = [(√ᾱ_{t_prev} − c₀ − c₁√ᾱ_t)·(z − ẑ) + (c₀√(1−ᾱ_t)/√ᾱ_t)·(ε̂^ω_tgt − ε̂^ω_src)]/σ_t`
 * (ε′ is still drawn, or taken from `opts.noisePrev`, and returned). `opts.prevTimestep` defaults to max(t − 2, 0)
 * (the reference's 500-step grid). Same 4 UNet rows as DDS. The reference's guidance default is 100; this function's is
 * `opts.guidanceScale` (7.5), as every score's.
 */
export function pdsGrad(
  model: ScoreModel,
  inputs: { zSource: tf.Tensor4D; zTarget: tf.Tensor4D; source: { cond: tf.Tensor3D; uncond: tf.Tensor3D }; target: { cond: tf.Tensor3D; uncond: tf.Tensor3D } },
  opts: ScoreOptions & { prevTimestep?: number | number[] } = {},
): ScoreResult {
  const fn = 'pdsGrad';
  if (!inputs || typeof inputs !== 'object') throw new InvalidArgumentError(`${fn}: inputs must be { zSource, zTarget, source: { cond, uncond }, target: { cond, uncond } }`);
  checkLatents(fn, [['zSource', inputs.zSource], ['zTarget', inputs.zTarget]]);
  const b = inputs.zSource.shape[0];
  const w = guidanceOf(fn, opts);
  const emb = (side: 'source' | 'target', k: 'cond' | 'uncond') => tensor3(fn, `${side}.${k}`, inputs[side]?.[k], b);
  const schedule = model?.schedule as { alphasCumprod: Float32Array; betas?: Float32Array } | undefined;
  const coef = (t: number, tPrev: number) => {
    const c = pdsCoefficients(schedule!, t, tPrev);
    const { alpha, sigma } = alphaSigma(schedule!, t);
    return {
      latent: (Math.sqrt(schedule!.alphasCumprod[tPrev]) - c.c0 - c.c1 * alpha) / c.sigmaT,
      eps: (c.c0 * sigma) / alpha / c.sigmaT,
    };
  };
  const { prevTimestep, ...rest } = opts ?? {};
  return scoreGrad(
    model,
    {
      fn,
      latents: { zSource: inputs.zSource, zTarget: inputs.zTarget },
      terms: [
        { latent: 'zSource', cond: emb('source', 'cond'), uncond: emb('source', 'uncond'), guidanceScale: w, coef: (t, tp) => -coef(t, tp).eps },
        { latent: 'zTarget', cond: emb('target', 'cond'), uncond: emb('target', 'uncond'), guidanceScale: w, coef: (t, tp) => coef(t, tp).eps },
      ],
      latentTerms: [
        { latent: 'zTarget', coef: (t, tp) => coef(t, tp).latent },
        { latent: 'zSource', coef: (t, tp) => -coef(t, tp).latent },
      ],
      usesNoisePrev: true,
      prevTimestep,
    },
    rest,
  );
}
