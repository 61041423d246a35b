import * as tf from '@tensorflow/tfjs';
import { SeededRandom, randomInt } from './rng';
import { tfSeed } from '@ddsjs/nn';
import { addNoise, guide, modelOutputToEps } from '@ddsjs/sd';
import type {
  ScoreIntermediates,
  ScoreModel,
  ScoreOptions,
  ScoreResult,
  TextEmbeddings,
  Weighting,
} from './types';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** Default classifier-free guidance scale (the DDS notebook and diffusers pipelines). */
export const DEFAULT_GUIDANCE_SCALE = 7.5;
/** Default timestep range `[tMin, tMax]` (the DDS notebook's `t_min = 50, t_max = 950`: t ∈ {50, …, 948}). */
export const DEFAULT_T_RANGE: readonly [number, number] = [50, 950];

/**
 * Score Distillation Sampling (DreamFusion; the DDS notebook's `get_sds_loss`): draws one timestep t per image and
 * one noise ε, and returns `grad = w(t)·(ε̂(z_t, y, t) − ε)` with ε̂ the classifier-free-guided noise prediction.
 * No gradient flows through the UNet.
 *
 * - `z`: latents `[B, h, w, C]` (already multiplied by the VAE scaling factor).
 * - `text`: the prompt's `cond` and `uncond` embeddings (`[1, L, D]` broadcast to the batch, or `[B, L, D]`).
 *
 * The UNet sees one batch `[(z_t, uncond) × B, (z_t, cond) × B]` (split into calls of at most `opts.unetBatch`
 * rows); v-prediction outputs are converted to ε (ε = α_t·v + σ_t·z_t) before guidance; non-finite gradient
 * entries are zeroed, then `opts.mask` multiplies the gradient. See {@link ScoreOptions} for the defaults.
 *
 * The caller owns every tensor of the result (`result.dispose()` frees them all).
 */
export function sdsGrad(sd: ScoreModel, inputs: { z: tf.Tensor4D; text: TextEmbeddings }, opts: ScoreOptions = {}): ScoreResult {
  const fn = 'sdsGrad';
  if (!inputs || typeof inputs !== 'object') throw new InvalidArgumentError(`${fn}: inputs must be { z, text: { cond, uncond } }`);
  checkLatents(fn, [['z', inputs.z]]);
  checkText(fn, 'text', inputs.text, inputs.z.shape[0]);
  const w = guidanceOf(fn, opts);
  return scoreGrad(sd, {
    fn,
    latents: { z: inputs.z },
    terms: [{ latent: 'z', cond: inputs.text.cond, uncond: inputs.text.uncond, guidanceScale: w }],
    noiseCoef: -1,
  }, opts);
}

/**
 * Delta Denoising Score (Hertz et al. 2023): noises the source latent ẑ and the edited latent z with ONE shared
 * timestep and noise, and returns `grad = w(t)·(ε̂(z_t, y, t) − ε̂(ẑ_t, ŷ, t))` — the text-driven direction
 * without SDS's noisy bias. `w(t) = 1` by default, as in the paper.
 *
 * - `zSource`: the source image's latents ẑ `[B, h, w, C]` (fixed); `source`: its prompt's embeddings ŷ.
 * - `zTarget`: the latents being optimised `[B, h, w, C]`; `target`: the target prompt's embeddings y.
 *
 * The UNet sees one batch ordered `[(ẑ_t, uncond_src) × B, (z_t, uncond_tgt) × B, (ẑ_t, cond_src) × B,
 * (z_t, cond_tgt) × B]` (the notebook's order; split into calls of at most `opts.unetBatch` rows). v-prediction
 * outputs are converted to ε before guidance; non-finite entries are zeroed; `opts.mask` multiplies the result.
 *
 * The caller owns every tensor of the result (`result.dispose()` frees them all).
 */
export function ddsGrad(
  sd: ScoreModel,
  inputs: { zSource: tf.Tensor4D; zTarget: tf.Tensor4D; source: TextEmbeddings; target: TextEmbeddings },
  opts: ScoreOptions = {},
): ScoreResult {
  if (!inputs || typeof inputs !== 'object') {
    throw new InvalidArgumentError('ddsGrad: inputs must be { zSource, zTarget, source: { cond, uncond }, target: { cond, uncond } }');
  }
  const fn = 'ddsGrad';
  checkLatents(fn, [['zSource', inputs.zSource], ['zTarget', inputs.zTarget]]);
  const b = inputs.zSource.shape[0];
  checkText(fn, 'source', inputs.source, b);
  checkText(fn, 'target', inputs.target, b);
  const w = guidanceOf(fn, opts);
  return scoreGrad(sd, {
    fn,
    latents: { zSource: inputs.zSource, zTarget: inputs.zTarget },
    terms: [
      { latent: 'zSource', cond: inputs.source.cond, uncond: inputs.source.uncond, guidanceScale: w, coef: -1 },
      { latent: 'zTarget', cond: inputs.target.cond, uncond: inputs.target.uncond, guidanceScale: w },
    ],
  }, opts);
}

/**
 * The surrogate loss whose gradient is a score: `Σ(z ⊙ stopGradient(grad)) / (h·w)` with h, w the latent's
 * spatial size (`z` is `[B, h, w, C]`). Its gradient with respect to `z` is exactly `grad / (h·w)`, so it composes
 * with `tf.grad`, `tf.variableGrads` and `tf.train` optimisers; gradients never flow into `grad`.
 * The DDS notebook minimises `2000 · scoreLoss(z, grad)` with SGD at lr 0.1. The caller owns the returned scalar.
 */
export function scoreLoss(z: tf.Tensor, grad: tf.Tensor): tf.Scalar {
  if (!(z instanceof tf.Tensor) || !(grad instanceof tf.Tensor)) throw new InvalidArgumentError('scoreLoss: z and grad must be tensors');
  if (z.rank !== 4) throw new InvalidArgumentError(`scoreLoss: z must be [B, h, w, C], got shape [${z.shape}]`);
  if (!shapesEqual(z.shape, grad.shape)) {
    throw new InvalidArgumentError(`scoreLoss: grad shape [${grad.shape}] differs from z's [${z.shape}]`);
  }
  const [, h, w] = (z as tf.Tensor4D).shape;
  const hw = h * w;
  return tf.tidy(() => tf.div(tf.sum(tf.mul(z, stopGradient(grad))), hw) as tf.Scalar);
}

/**
 * Identity in the forward pass with a zero gradient (tfjs has no `stopGradient` op). The caller owns the result.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  return stopGradientOp(x) as T;
}

const stopGradientOp = tf.customGrad(((x: tf.Tensor) => ({
  value: tf.clone(x),
  gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy),
})) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

// ---------------------------------------------------------------------------------------------------------------
// The general score

/** A coefficient: one number, or a function of each image's timestep (e.g. NFSD's t < 200 switch). */
export type ScoreCoef = number | ((t: number, tPrev: number) => number);

/**
 * One ε-prediction term of {@link scoreGrad}: `coef · ε̂(latent_t; cond)`, or with `uncond` the guided
 * `coef · (ε̂(∅) + ω·(ε̂(cond) − ε̂(∅)))`, ω = `guidanceScale` (default `opts.guidanceScale`, else 7.5), with ∅ =
 * `uncond`. Embeddings are `[1|B, L, D]`.
 */
export interface ScoreTerm {
  /** Name of the latent (a key of {@link ScoreSpec.latents}) the UNet sees noised. */
  latent: string;
  /** The prompt's embeddings. */
  cond: tf.Tensor3D;
  /** The unconditional (or negative) embeddings: present = classifier-free guidance. */
  uncond?: tf.Tensor3D;
  /** ω of the guided term. */
  guidanceScale?: number;
  /** Multiplies the term (default 1). */
  coef?: ScoreCoef;
}

/**
 * What {@link scoreGrad} computes: named latents noised with one shared (t, ε), and
 * `grad = w(t)·(Σ_terms coef·ε̂ + Σ_latentTerms coef·latent + noiseCoef·ε + noisePrevCoef·ε′)`.
 */
export interface ScoreSpec {
  /** The calling function's name, for error messages (default 'scoreGrad'). */
  fn?: string;
  /** The latents `[B, h, w, C]` (all one shape), by name; their order is the order of `intermediates.zt`. */
  latents: Record<string, tf.Tensor4D>;
  /** The ε-prediction terms. Each distinct (latent, embedding tensor) pair is one UNet row block, computed once. */
  terms: ScoreTerm[];
  /** Terms on the clean latents themselves (PDS's posterior-mean part). */
  latentTerms?: { latent: string; coef: ScoreCoef }[];
  /** Coefficient of the shared noise ε (SDS: −1; CSD: k). */
  noiseCoef?: ScoreCoef;
  /**
   * Coefficient of a second shared noise ε′ (drawn, or `opts.noisePrev`). With `usesNoisePrev` and no coefficient,
   * ε′ is drawn and returned (PDS, whose ε′ parts cancel in its difference) without entering the sum.
   */
  noisePrevCoef?: ScoreCoef;
  /** Draw (or take) ε′ and return it in the result even without a coefficient. */
  usesNoisePrev?: boolean;
  /** Second timestep per image (PDS's t_prev), passed to the coefficient functions: default max(t − 2, 0) (PDS_STEP). */
  prevTimestep?: number | number[];
}

/**
 * THE score: every score of the family (SDS, DDS, NFSD, CSD, SDS-Bridge, PDS) is a {@link ScoreSpec} evaluated here.
 *
 * One timestep t per image (`opts.timestep`, or drawn from `opts.tRange`) and one noise ε (`opts.noise`, or drawn;
 * reproducible with `opts.seed`) are shared by every latent: `z_t = α_t·z + σ_t·ε` (@ddsjs/sd's `addNoise`). The
 * UNet sees one batch of the distinct (latent, embedding) rows — unconditional embeddings of every term first, then
 * the others, in term order (the DDS notebook's order for DDS) — split into calls of at most `opts.unetBatch` rows;
 * v-prediction outputs become ε (`modelOutputToEps`), guided terms use `guide`. Then
 * `grad = w(t)·(Σ coef·ε̂ + Σ coef·z + k·ε + k′·ε′)` with w from `opts.weighting`; non-finite entries are zeroed;
 * `opts.mask` (latent or image resolution) multiplies the result. No gradient flows through the UNet.
 *
 * The caller owns every tensor of the result (`result.dispose()` frees them all).
 */
export function scoreGrad(sd: ScoreModel, spec: ScoreSpec, opts: ScoreOptions = {}): ScoreResult {
  const fn = spec?.fn ?? 'scoreGrad';
  // ---- validation (all before any tensor is made) ----
  if (!sd || typeof sd !== 'object' || !sd.unet || typeof sd.unet.forward !== 'function' || !sd.schedule) {
    throw new InvalidArgumentError(`${fn}: the model must have unet.forward(sample, timestep, context) and a schedule`);
  }
  const ac = sd.schedule.alphasCumprod;
  if (!(ac instanceof Float32Array) || ac.length === 0) {
    throw new InvalidArgumentError(`${fn}: model.schedule.alphasCumprod must be a non-empty Float32Array`);
  }
  const predictionType = sd.schedule.predictionType;
  if (predictionType !== 'epsilon' && predictionType !== 'v_prediction') {
    throw new InvalidArgumentError(`${fn}: unsupported schedule.predictionType '${String(predictionType)}' (epsilon or v_prediction)`);
  }
  opts = opts ?? {};
  if (!spec || typeof spec !== 'object' || !spec.latents || !Array.isArray(spec.terms)) {
    throw new InvalidArgumentError(`${fn}: the spec must be { latents: { name: tensor }, terms: [...] }`);
  }
  const names = Object.keys(spec.latents);
  if (names.length === 0) throw new InvalidArgumentError(`${fn}: the spec names no latent`);
  checkLatents(fn, names.map((n) => [n, spec.latents[n]] as [string, tf.Tensor4D]));
  const shape = spec.latents[names[0]].shape;
  const b = shape[0];
  const known = (latent: string, what: string) => {
    if (!names.includes(latent)) throw new InvalidArgumentError(`${fn}: ${what} names latent '${latent}', not one of ${names.join(', ')}`);
  };
  let LD: [number, number] | null = null;
  spec.terms.forEach((term, i) => {
    known(term.latent, `term ${i}`);
    for (const key of ['cond', 'uncond'] as const) {
      const e = term[key];
      if (e === undefined && key === 'uncond') continue;
      if (!(e instanceof tf.Tensor) || e.rank !== 3 || (e.shape[0] !== 1 && e.shape[0] !== b)) {
        throw new InvalidArgumentError(`${fn}: term ${i} ${key} must be [1, L, D] or [${b}, L, D] for a batch of ${b}, got ${e instanceof tf.Tensor ? `[${e.shape}]` : typeof e}`);
      }
      LD ??= [e.shape[1], e.shape[2]];
      if (e.shape[1] !== LD[0] || e.shape[2] !== LD[1]) {
        throw new InvalidArgumentError(`${fn}: term ${i} ${key} [${e.shape}] differs from the other embeddings' [L=${LD[0]}, D=${LD[1]}]`);
      }
    }
    if (term.uncond !== undefined) {
      const w = term.guidanceScale ?? opts.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
      if (typeof w !== 'number' || !Number.isFinite(w)) throw new InvalidArgumentError(`${fn}: guidanceScale must be a finite number, got ${w}`);
    }
  });
  (spec.latentTerms ?? []).forEach((lt, i) => known(lt.latent, `latent term ${i}`));
  // Distinct UNet row blocks: unconditional embeddings of every term first, then the conditional ones.
  type Block = { latent: string; emb: tf.Tensor3D };
  const blocks: Block[] = [];
  const blockOf = (latent: string, emb: tf.Tensor3D): number => {
    let i = blocks.findIndex((bl) => bl.latent === latent && bl.emb === emb);
    if (i < 0) i = blocks.push({ latent, emb }) - 1;
    return i;
  };
  const uncondBlock = spec.terms.map((t) => (t.uncond ? blockOf(t.latent, t.uncond) : -1));
  const condBlock = spec.terms.map((t) => blockOf(t.latent, t.cond));
  const rows = blocks.length * b;
  const unetBatch = opts.unetBatch ?? rows;
  if (!Number.isInteger(unetBatch) || unetBatch < 1) {
    throw new InvalidArgumentError(`${fn}: unetBatch must be a positive integer, got ${opts.unetBatch}`);
  }
  if (opts.seed !== undefined && !Number.isFinite(opts.seed)) throw new InvalidArgumentError(`${fn}: seed must be a finite number, got ${opts.seed}`);
  for (const key of ['noise', 'noisePrev'] as const) {
    const n = opts[key];
    if (n !== undefined && (!(n instanceof tf.Tensor) || !shapesEqual(n.shape, shape))) {
      throw new InvalidArgumentError(`${fn}: ${key} must be a tensor of the latents' shape [${shape}], got ${n instanceof tf.Tensor ? `[${n.shape}]` : typeof n}`);
    }
  }
  const mask = opts.mask === undefined ? undefined : maskPlan(fn, opts.mask, shape);

  // ---- timesteps and noise seeds (plain numbers; reproducible from opts.seed) ----
  const rng = opts.seed === undefined ? undefined : new SeededRandom(opts.seed);
  // The noise seed is drawn first, so the noise for a seed does not depend on whether `timestep` is fixed.
  const noiseSeed = rng ? rng.nextUint32() : undefined;
  let timesteps: number[];
  if (opts.timestep !== undefined) {
    const t = opts.timestep;
    timesteps = typeof t === 'number' ? new Array<number>(b).fill(t) : [...t];
    if (timesteps.length !== b) throw new InvalidArgumentError(`${fn}: timestep has ${timesteps.length} entries for a batch of ${b}`);
    timesteps.forEach((v, i) => checkTimestep(v, ac.length, `${fn}: timestep[${i}]`));
  } else {
    const [lo, hi] = drawRange(fn, (opts.tRange ?? DEFAULT_T_RANGE) as [number, number], ac.length);
    timesteps = Array.from({ length: b }, () => randomInt(rng, lo, hi));
  }
  let prev: number[];
  if (spec.prevTimestep !== undefined) {
    const p = spec.prevTimestep;
    prev = typeof p === 'number' ? new Array<number>(b).fill(p) : [...p];
    if (prev.length !== b) throw new InvalidArgumentError(`${fn}: prevTimestep has ${prev.length} entries for a batch of ${b}`);
    prev.forEach((v, i) => checkTimestep(v, ac.length, `${fn}: prevTimestep[${i}]`));
  } else {
    prev = timesteps.map((t) => Math.max(t - 2, 0));
  }
  const wantPrev = spec.usesNoisePrev === true || spec.noisePrevCoef !== undefined;
  const prevSeed = wantPrev && rng ? rng.nextUint32() : undefined;
  const weighting = opts.weighting ?? 'uniform';
  const weights = timesteps.map((t) => weightOf(fn, weighting, t, ac[t]));
  const uniformWeights = weights.every((w) => w === 1);
  const coefs = (c: ScoreCoef | undefined, what: string): number[] | null => {
    if (c === undefined) return null;
    const v = timesteps.map((t, i) => (typeof c === 'number' ? c : c(t, prev[i])));
    if (!v.every(Number.isFinite)) throw new InvalidArgumentError(`${fn}: ${what} coefficient is not a finite number (${v.join(', ')})`);
    return v;
  };
  const termCoefs = spec.terms.map((t, i) => coefs(t.coef, `term ${i}`) ?? new Array<number>(b).fill(1));
  const latentCoefs = (spec.latentTerms ?? []).map((t, i) => coefs(t.coef, `latent term ${i}`)!);
  const noiseCoefs = coefs(spec.noiseCoef, 'noise');
  const prevCoefs = coefs(spec.noisePrevCoef, 'noisePrev');
  const wantIntermediates = opts.intermediates === true;

  const flat = tf.tidy(() => {
    const draw = (given: tf.Tensor4D | undefined, seed: number | undefined) =>
      given ? tf.clone(given) : (tf.randomNormal(shape, 0, 1, 'float32', seed === undefined ? undefined : tfSeed(seed)) as tf.Tensor4D);
    const noise = draw(opts.noise, noiseSeed);
    const noisePrev = wantPrev ? draw(opts.noisePrev, prevSeed) : null;
    const zt = names.map((n) => addNoise(sd.schedule, spec.latents[n], noise, timesteps));

    // One UNet batch of every distinct (latent, embedding) block, in chunks of at most unetBatch rows.
    const expand = (e: tf.Tensor3D) => (e.shape[0] === b ? e : tf.broadcastTo(e, [b, LD![0], LD![1]]));
    const sample = (blocks.length === 1 ? zt[names.indexOf(blocks[0].latent)] : tf.concat(blocks.map((bl) => zt[names.indexOf(bl.latent)]), 0)) as tf.Tensor4D;
    const context = (blocks.length === 1 ? expand(blocks[0].emb) : tf.concat(blocks.map((bl) => expand(bl.emb)), 0)) as tf.Tensor3D;
    const rowT: number[] = [];
    for (let r = 0; r < blocks.length; r++) rowT.push(...timesteps);
    const parts: tf.Tensor4D[] = [];
    for (let start = 0; start < rows; start += unetBatch) {
      const n = Math.min(unetBatch, rows - start);
      const x = n === rows ? sample : (tf.slice(sample, [start, 0, 0, 0], [n, -1, -1, -1]) as tf.Tensor4D);
      const c = n === rows ? context : (tf.slice(context, [start, 0, 0], [n, -1, -1]) as tf.Tensor3D);
      const ts = rowT.slice(start, start + n);
      const t = ts.every((v) => v === ts[0]) ? ts[0] : tf.tensor1d(ts, 'float32');
      const y = sd.unet.forward(x, t, c);
      if (!(y instanceof tf.Tensor) || !shapesEqual(y.shape, x.shape)) {
        throw new InvalidArgumentError(`${fn}: unet.forward returned ${y instanceof tf.Tensor ? `shape [${y.shape}]` : typeof y} for a sample of [${x.shape}]`);
      }
      parts.push(y);
    }
    const unetRaw = (parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor4D;
    const eps = modelOutputToEps(sd.schedule, unetRaw, sample, rowT);
    const blockEps = blocks.length === 1 ? [eps] : (tf.split(eps, blocks.length, 0) as tf.Tensor4D[]);

    const termEps = spec.terms.map((term, i) => {
      const c = blockEps[condBlock[i]];
      if (!term.uncond) return c;
      return guide(blockEps[uncondBlock[i]], c, term.guidanceScale ?? opts.guidanceScale ?? DEFAULT_GUIDANCE_SCALE);
    });
    // Σ coef·value, with ±1 as a plain add/subtract (so that DDS is exactly ε̂_tgt − ε̂_src and SDS ε̂ − ε).
    let sum = null as tf.Tensor | null;
    const accumulate = (value: tf.Tensor, c: number[]) => {
      const same = c.every((v) => v === c[0]);
      if (same && c[0] === 0) return;
      if (same && (c[0] === 1 || c[0] === -1)) {
        sum = sum === null ? (c[0] === 1 ? value : tf.neg(value)) : c[0] === 1 ? tf.add(sum, value) : tf.sub(sum, value);
        return;
      }
      const term = tf.mul(same ? tf.scalar(c[0]) : tf.tensor4d(c, [b, 1, 1, 1]), value);
      sum = sum === null ? term : tf.add(sum, term);
    };
    // Positive terms first: a leading −1 term then reads sum = +x − y rather than −y + x (bit-identical anyway).
    const order = spec.terms.map((_, i) => i).sort((i, j) => Number(termCoefs[i][0] < 0) - Number(termCoefs[j][0] < 0));
    for (const i of order) accumulate(termEps[i], termCoefs[i]);
    (spec.latentTerms ?? []).forEach((lt, i) => accumulate(spec.latents[lt.latent], latentCoefs[i]));
    if (noiseCoefs) accumulate(noise, noiseCoefs);
    if (prevCoefs && noisePrev) accumulate(noisePrev, prevCoefs);
    let grad: tf.Tensor = sum ?? tf.zeros(shape);
    if (!uniformWeights) grad = tf.mul(grad, tf.tensor4d(weights, [b, 1, 1, 1]));
    grad = tf.where(tf.isFinite(grad), grad, tf.zerosLike(grad));
    if (mask) grad = tf.mul(grad, mask());
    // Flat list for tf.tidy: [grad, noise, noisePrev?, (zt × latents, unetRaw, termEps × terms)].
    const kept: tf.Tensor[] = [grad, noise];
    if (noisePrev) kept.push(noisePrev);
    if (wantIntermediates) kept.push(...zt, unetRaw, ...termEps.map((e, i) => (e === eps || termEps.indexOf(e) !== i ? tf.clone(e) : e)));
    return kept;
  });
  let at = 0;
  const grad = flat[at++] as tf.Tensor4D;
  const noise = flat[at++] as tf.Tensor4D;
  const noisePrev = wantPrev ? (flat[at++] as tf.Tensor4D) : undefined;
  let inter: ScoreIntermediates | undefined;
  if (wantIntermediates) {
    const k = names.length;
    inter = {
      zt: flat.slice(at, at + k) as tf.Tensor4D[],
      unetRaw: flat[at + k] as tf.Tensor4D,
      epsPred: flat.slice(at + k + 1) as tf.Tensor4D[],
    };
  }
  const result: ScoreResult = {
    grad,
    timestep: timesteps,
    noise,
    async gradNorm() {
      const n = tf.tidy(() => tf.norm(grad));
      try {
        return (await n.data())[0];
      } finally {
        n.dispose();
      }
    },
    dispose() {
      grad.dispose();
      noise.dispose();
      noisePrev?.dispose();
      if (inter) tf.dispose([...inter.zt, inter.unetRaw, ...inter.epsPred]);
    },
  };
  if (wantPrev) {
    result.noisePrev = noisePrev;
    result.prevTimestep = prev;
  }
  if (inter) result.intermediates = inter;
  return result;
}

// ---------------------------------------------------------------------------------------------------------------

function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function checkTimestep(t: number, T: number, what: string): void {
  if (!Number.isInteger(t) || t < 0 || t >= T) {
    throw new InvalidArgumentError(`${what} must be an integer in [0, ${T}), got ${t}`);
  }
}

/** Validates `opts.tRange` and returns the half-open integer range [lo, hi) the notebook's randint draws from. */
function drawRange(fn: string, tRange: readonly [number, number], T: number): [number, number] {
  if (!Array.isArray(tRange) || tRange.length !== 2 || !tRange.every((v) => Number.isInteger(v))) {
    throw new InvalidArgumentError(`${fn}: tRange must be two integers [tMin, tMax], got ${JSON.stringify(tRange)}`);
  }
  const lo = tRange[0];
  const hi = Math.min(tRange[1], T) - 1;
  if (lo < 0 || hi <= lo) {
    throw new InvalidArgumentError(
      `${fn}: tRange [${tRange[0]}, ${tRange[1]}] is empty: timesteps are drawn from tMin … min(tMax, ${T}) − 2`,
    );
  }
  return [lo, hi];
}

function weightOf(fn: string, weighting: Weighting, t: number, alphaCumprod: number): number {
  let w: number;
  if (weighting === 'uniform') w = 1;
  else if (weighting === 'sds') w = 1 - alphaCumprod;
  else if (typeof weighting === 'function') w = weighting(t);
  else throw new InvalidArgumentError(`${fn}: weighting must be 'uniform', 'sds' or a function of t, got ${String(weighting)}`);
  if (!Number.isFinite(w)) throw new InvalidArgumentError(`${fn}: weighting(${t}) returned ${w}, not a finite number`);
  return w;
}

/**
 * Validates a mask against the gradient's shape `[B, h, w, C]` and returns a function (called inside the score's
 * tidy) giving the tensor to multiply by. A mask that broadcasts (NumPy rules) is used as is; a mask at image
 * resolution — `[H, W]`, `[H, W, 1]` or `[1|B, H, W, 1|C]` with H = k·h and W = k·w for one integer k (8 for
 * Stable Diffusion) — is averaged over k×k cells down to the latent grid.
 */
function maskPlan(fn: string, mask: tf.Tensor, shape: readonly number[]): () => tf.Tensor {
  if (!(mask instanceof tf.Tensor)) throw new InvalidArgumentError(`${fn}: mask must be a tensor`);
  const broadcasts =
    mask.rank <= shape.length &&
    mask.shape.every((d, i) => {
      const target = shape[shape.length - mask.rank + i];
      return d === 1 || d === target;
    });
  if (broadcasts) return () => mask;
  const [b, h, w, c] = shape;
  const m4 = mask.rank === 2 ? [1, ...mask.shape, 1] : mask.rank === 3 ? [1, ...mask.shape] : mask.shape;
  const k = m4[1] / h;
  const ok =
    m4.length === 4 && (m4[0] === 1 || m4[0] === b) && (m4[3] === 1 || m4[3] === c) && Number.isInteger(k) && k > 1 && m4[2] === k * w;
  if (!ok) {
    throw new InvalidArgumentError(`${fn}: mask shape [${mask.shape}] does not broadcast to the gradient's [${shape}] and is not an image-resolution mask [H, W] with H = k·${h}, W = k·${w}`);
  }
  const [mb, mh, mw, mc] = m4;
  return () => tf.avgPool(tf.reshape(mask, [mb, mh, mw, mc]) as tf.Tensor4D, [k, k], [k, k], 'valid');
}

/** Checks latents: rank-4 float32 tensors of one shape. */
function checkLatents(fn: string, latents: [string, tf.Tensor4D][]): void {
  for (const [name, z] of latents) {
    if (!(z instanceof tf.Tensor) || z.rank !== 4) {
      throw new InvalidArgumentError(`${fn}: ${name} must be a latent tensor [B, h, w, C], got ${z instanceof tf.Tensor ? `[${z.shape}]` : typeof z}`);
    }
    if (z.dtype !== 'float32') throw new InvalidArgumentError(`${fn}: ${name} must be float32, got ${z.dtype}`);
  }
  const [first, shape] = [latents[0][0], latents[0][1].shape];
  for (const [name, z] of latents.slice(1)) {
    if (!shapesEqual(z.shape, shape)) throw new InvalidArgumentError(`${fn}: ${name} shape [${z.shape}] differs from ${first}'s [${shape}]`);
  }
}

/** Checks `{ cond, uncond }` embeddings `[1|B, L, D]` of one [L, D]. */
export function checkText(fn: string, name: string, text: TextEmbeddings, b: number): void {
  if (!text || typeof text !== 'object' || !(text.cond instanceof tf.Tensor) || !(text.uncond instanceof tf.Tensor)) {
    throw new InvalidArgumentError(`${fn}: ${name} must be { cond, uncond } text embeddings (tensors [1|B, L, D])`);
  }
  for (const key of ['cond', 'uncond'] as const) {
    const e = text[key];
    if (e.rank !== 3 || (e.shape[0] !== 1 && e.shape[0] !== b)) {
      throw new InvalidArgumentError(`${fn}: ${name}.${key} must be [1, L, D] or [${b}, L, D] for a batch of ${b}, got [${e.shape}]`);
    }
  }
  if (text.cond.shape[1] !== text.uncond.shape[1] || text.cond.shape[2] !== text.uncond.shape[2]) {
    throw new InvalidArgumentError(`${fn}: ${name}.cond [${text.cond.shape}] and ${name}.uncond [${text.uncond.shape}] differ in [L, D]`);
  }
}

/** `opts.guidanceScale` (default 7.5), checked. */
export function guidanceOf(fn: string, opts: ScoreOptions | undefined): number {
  const s = opts?.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
  if (typeof s !== 'number' || !Number.isFinite(s)) throw new InvalidArgumentError(`${fn}: guidanceScale must be a finite number, got ${s}`);
  return s;
}

export { checkLatents };
