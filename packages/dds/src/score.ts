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
  if (!inputs || typeof inputs !== 'object') throw new Error('sdsGrad: inputs must be { z, text: { cond, uncond } }');
  return scoreCore('sdsGrad', sd, [{ name: 'z', z: inputs.z, text: inputs.text, textName: 'text' }], opts, 'sds');
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
    throw new Error('ddsGrad: inputs must be { zSource, zTarget, source: { cond, uncond }, target: { cond, uncond } }');
  }
  return scoreCore(
    'ddsGrad',
    sd,
    [
      { name: 'zSource', z: inputs.zSource, text: inputs.source, textName: 'source' },
      { name: 'zTarget', z: inputs.zTarget, text: inputs.target, textName: 'target' },
    ],
    opts,
    'dds',
  );
}

/**
 * The surrogate loss whose gradient is a score: `Σ(z ⊙ stopGradient(grad)) / (h·w)` with h, w the latent's
 * spatial size (`z` is `[B, h, w, C]`). Its gradient with respect to `z` is exactly `grad / (h·w)`, so it composes
 * with `tf.grad`, `tf.variableGrads` and `tf.train` optimisers; gradients never flow into `grad`.
 * The DDS notebook minimises `2000 · scoreLoss(z, grad)` with SGD at lr 0.1. The caller owns the returned scalar.
 */
export function scoreLoss(z: tf.Tensor, grad: tf.Tensor): tf.Scalar {
  if (!(z instanceof tf.Tensor) || !(grad instanceof tf.Tensor)) throw new Error('scoreLoss: z and grad must be tensors');
  if (z.rank !== 4) throw new Error(`scoreLoss: z must be [B, h, w, C], got shape [${z.shape}]`);
  if (!shapesEqual(z.shape, grad.shape)) {
    throw new Error(`scoreLoss: grad shape [${grad.shape}] differs from z's [${z.shape}]`);
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

interface Branch {
  name: string;
  z: tf.Tensor4D;
  text: TextEmbeddings;
  textName: string;
}

function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function checkTimestep(t: number, T: number, what: string): void {
  if (!Number.isInteger(t) || t < 0 || t >= T) {
    throw new Error(`${what} must be an integer in [0, ${T}), got ${t}`);
  }
}

/** Validates `opts.tRange` and returns the half-open integer range [lo, hi) the notebook's randint draws from. */
function drawRange(fn: string, tRange: readonly [number, number], T: number): [number, number] {
  if (!Array.isArray(tRange) || tRange.length !== 2 || !tRange.every((v) => Number.isInteger(v))) {
    throw new Error(`${fn}: tRange must be two integers [tMin, tMax], got ${JSON.stringify(tRange)}`);
  }
  const lo = tRange[0];
  const hi = Math.min(tRange[1], T) - 1;
  if (lo < 0 || hi <= lo) {
    throw new Error(
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
  else throw new Error(`${fn}: weighting must be 'uniform', 'sds' or a function of t, got ${String(weighting)}`);
  if (!Number.isFinite(w)) throw new Error(`${fn}: weighting(${t}) returned ${w}, not a finite number`);
  return w;
}

/** Checks that `mask` broadcasts against `shape` (NumPy rules, right-aligned). */
function checkMask(fn: string, mask: tf.Tensor, shape: readonly number[]): void {
  if (!(mask instanceof tf.Tensor)) throw new Error(`${fn}: mask must be a tensor`);
  const ok =
    mask.rank <= shape.length &&
    mask.shape.every((d, i) => {
      const target = shape[shape.length - mask.rank + i];
      return d === 1 || d === target;
    });
  if (!ok) throw new Error(`${fn}: mask shape [${mask.shape}] does not broadcast to the gradient's [${shape}]`);
}

function checkText(fn: string, name: string, text: TextEmbeddings, b: number): void {
  if (!text || typeof text !== 'object' || !(text.cond instanceof tf.Tensor) || !(text.uncond instanceof tf.Tensor)) {
    throw new Error(`${fn}: ${name} must be { cond, uncond } text embeddings (tensors [1|B, L, D])`);
  }
  for (const key of ['cond', 'uncond'] as const) {
    const e = text[key];
    if (e.rank !== 3 || (e.shape[0] !== 1 && e.shape[0] !== b)) {
      throw new Error(`${fn}: ${name}.${key} must be [1, L, D] or [${b}, L, D] for a batch of ${b}, got [${e.shape}]`);
    }
  }
  if (text.cond.shape[1] !== text.uncond.shape[1] || text.cond.shape[2] !== text.uncond.shape[2]) {
    throw new Error(`${fn}: ${name}.cond [${text.cond.shape}] and ${name}.uncond [${text.uncond.shape}] differ in [L, D]`);
  }
}

function scoreCore(fn: string, sd: ScoreModel, branches: Branch[], opts: ScoreOptions, kind: 'sds' | 'dds'): ScoreResult {
  // ---- validation (all before any tensor is made) ----
  if (!sd || typeof sd !== 'object' || !sd.unet || typeof sd.unet.forward !== 'function' || !sd.schedule) {
    throw new Error(`${fn}: the model must have unet.forward(sample, timestep, context) and a schedule`);
  }
  const ac = sd.schedule.alphasCumprod;
  if (!(ac instanceof Float32Array) || ac.length === 0) {
    throw new Error(`${fn}: model.schedule.alphasCumprod must be a non-empty Float32Array`);
  }
  const predictionType = sd.schedule.predictionType;
  if (predictionType !== 'epsilon' && predictionType !== 'v_prediction') {
    throw new Error(`${fn}: unsupported schedule.predictionType '${String(predictionType)}' (epsilon or v_prediction)`);
  }
  opts = opts ?? {};
  for (const br of branches) {
    if (!(br.z instanceof tf.Tensor) || br.z.rank !== 4) {
      throw new Error(`${fn}: ${br.name} must be a latent tensor [B, h, w, C], got ${br.z instanceof tf.Tensor ? `[${br.z.shape}]` : typeof br.z}`);
    }
    if (br.z.dtype !== 'float32') throw new Error(`${fn}: ${br.name} must be float32, got ${br.z.dtype}`);
  }
  const shape = branches[0].z.shape;
  for (const br of branches.slice(1)) {
    if (!shapesEqual(br.z.shape, shape)) {
      throw new Error(`${fn}: ${br.name} shape [${br.z.shape}] differs from ${branches[0].name}'s [${shape}]`);
    }
  }
  const b = shape[0];
  for (const br of branches) checkText(fn, br.textName, br.text, b);
  const [L, D] = [branches[0].text.cond.shape[1], branches[0].text.cond.shape[2]];
  for (const br of branches) {
    if (br.text.cond.shape[1] !== L || br.text.cond.shape[2] !== D) {
      throw new Error(`${fn}: ${br.textName} embeddings [${br.text.cond.shape}] differ from ${branches[0].textName}'s [L=${L}, D=${D}]`);
    }
  }
  const s = opts.guidanceScale ?? DEFAULT_GUIDANCE_SCALE;
  if (typeof s !== 'number' || !Number.isFinite(s)) throw new Error(`${fn}: guidanceScale must be a finite number, got ${s}`);
  const rows = 2 * branches.length * b;
  const unetBatch = opts.unetBatch ?? rows;
  if (!Number.isInteger(unetBatch) || unetBatch < 1) {
    throw new Error(`${fn}: unetBatch must be a positive integer, got ${opts.unetBatch}`);
  }
  if (opts.seed !== undefined && !Number.isFinite(opts.seed)) throw new Error(`${fn}: seed must be a finite number, got ${opts.seed}`);
  if (opts.noise !== undefined) {
    if (!(opts.noise instanceof tf.Tensor) || !shapesEqual(opts.noise.shape, shape)) {
      throw new Error(`${fn}: noise must be a tensor of the latents' shape [${shape}], got ${opts.noise instanceof tf.Tensor ? `[${opts.noise.shape}]` : typeof opts.noise}`);
    }
  }
  if (opts.mask !== undefined) checkMask(fn, opts.mask, shape);

  // ---- timesteps and noise seed (plain numbers; reproducible from opts.seed) ----
  const rng = opts.seed === undefined ? undefined : new SeededRandom(opts.seed);
  // The noise seed is drawn first, so the noise for a seed does not depend on whether `timestep` is fixed.
  const noiseSeed = rng ? rng.nextUint32() : undefined;
  let timesteps: number[];
  if (opts.timestep !== undefined) {
    const t = opts.timestep;
    timesteps = typeof t === 'number' ? new Array<number>(b).fill(t) : [...t];
    if (timesteps.length !== b) throw new Error(`${fn}: timestep has ${timesteps.length} entries for a batch of ${b}`);
    timesteps.forEach((v, i) => checkTimestep(v, ac.length, `${fn}: timestep[${i}]`));
  } else {
    const [lo, hi] = drawRange(fn, (opts.tRange ?? DEFAULT_T_RANGE) as [number, number], ac.length);
    timesteps = Array.from({ length: b }, () => randomInt(rng, lo, hi));
  }
  const weighting = opts.weighting ?? 'uniform';
  const weights = timesteps.map((t) => weightOf(fn, weighting, t, ac[t]));
  const uniformWeights = weights.every((w) => w === 1);
  const wantIntermediates = opts.intermediates === true;
  const k = branches.length;

  const flat = tf.tidy(() => {
    const noise = opts.noise ? tf.clone(opts.noise) : (tf.randomNormal(shape, 0, 1, 'float32', noiseSeed === undefined ? undefined : tfSeed(noiseSeed)) as tf.Tensor4D);
    const zt = branches.map((br) => addNoise(sd.schedule, br.z, noise, timesteps));

    // One UNet batch: [uncond rows of every branch, cond rows of every branch].
    const expand = (e: tf.Tensor3D) => (e.shape[0] === b ? e : tf.broadcastTo(e, [b, L, D]));
    const sample = tf.concat([...zt, ...zt], 0) as tf.Tensor4D;
    const context = tf.concat(
      [...branches.map((br) => expand(br.text.uncond)), ...branches.map((br) => expand(br.text.cond))],
      0,
    ) as tf.Tensor3D;
    const rowT: number[] = [];
    for (let r = 0; r < 2 * k; r++) rowT.push(...timesteps);
    const parts: tf.Tensor4D[] = [];
    for (let start = 0; start < rows; start += unetBatch) {
      const n = Math.min(unetBatch, rows - start);
      const x = n === rows ? sample : (tf.slice(sample, [start, 0, 0, 0], [n, -1, -1, -1]) as tf.Tensor4D);
      const c = n === rows ? context : (tf.slice(context, [start, 0, 0], [n, -1, -1]) as tf.Tensor3D);
      const ts = rowT.slice(start, start + n);
      const t = ts.every((v) => v === ts[0]) ? ts[0] : tf.tensor1d(ts, 'float32');
      const y = sd.unet.forward(x, t, c);
      if (!(y instanceof tf.Tensor) || !shapesEqual(y.shape, x.shape)) {
        throw new Error(`${fn}: unet.forward returned ${y instanceof tf.Tensor ? `shape [${y.shape}]` : typeof y} for a sample of [${x.shape}]`);
      }
      parts.push(y);
    }
    const unetRaw = (parts.length === 1 ? parts[0] : tf.concat(parts, 0)) as tf.Tensor4D;

    const eps = modelOutputToEps(sd.schedule, unetRaw, sample, rowT);
    const half = k * b;
    const uncond = tf.slice(eps, [0, 0, 0, 0], [half, -1, -1, -1]);
    const cond = tf.slice(eps, [half, 0, 0, 0], [half, -1, -1, -1]);
    const guided = guide(uncond, cond, s);
    const epsPred =
      k === 1 ? [guided] : (tf.split(guided, k, 0) as tf.Tensor4D[]);

    let grad: tf.Tensor = kind === 'sds' ? tf.sub(epsPred[0], noise) : tf.sub(epsPred[1], epsPred[0]);
    if (!uniformWeights) grad = tf.mul(grad, tf.tensor4d(weights, [b, 1, 1, 1]));
    grad = tf.where(tf.isFinite(grad), grad, tf.zerosLike(grad));
    if (opts.mask) grad = tf.mul(grad, opts.mask);
    // Flat list for tf.tidy: [grad, noise, (zt × k, unetRaw, epsPred × k)].
    const kept: tf.Tensor[] = [grad, noise];
    if (wantIntermediates) kept.push(...zt, unetRaw, ...epsPred);
    return kept;
  });
  const out: { grad: tf.Tensor4D; noise: tf.Tensor4D; inter?: ScoreIntermediates } = {
    grad: flat[0] as tf.Tensor4D,
    noise: flat[1] as tf.Tensor4D,
  };
  if (wantIntermediates) {
    out.inter = {
      zt: flat.slice(2, 2 + k) as tf.Tensor4D[],
      unetRaw: flat[2 + k] as tf.Tensor4D,
      epsPred: flat.slice(3 + k, 3 + 2 * k) as tf.Tensor4D[],
    };
  }

  const result: ScoreResult = {
    grad: out.grad,
    timestep: timesteps,
    noise: out.noise,
    async gradNorm() {
      const n = tf.tidy(() => tf.norm(out.grad));
      try {
        return (await n.data())[0];
      } finally {
        n.dispose();
      }
    },
    dispose() {
      out.grad.dispose();
      out.noise.dispose();
      if (out.inter) {
        tf.dispose([...out.inter.zt, out.inter.unetRaw, ...out.inter.epsPred]);
      }
    },
  };
  if (out.inter) result.intermediates = out.inter;
  return result;
}
