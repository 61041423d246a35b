import * as tf from '@tensorflow/tfjs';
import { Module, Parameter, sequential } from './module';
import { conv2dOp, gatherAxis, Padding4 } from './ops';
import { hotOps } from './hot-ops';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** `torch.nn.Linear`: `y = x·Wᵀ + b` over the last axis of any-rank `x`. */
export class Linear extends Module {
  /** `[in, out]` (PyTorch `[out, in]` transposed on load); key `weight`. */
  readonly weight: Parameter;
  /** `[out]`, or null when built with `bias = false`; key `bias`. */
  readonly bias: Parameter | null;
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    bias = true,
  ) {
    super();
    this.weight = this.param('weight', [inFeatures, outFeatures], 'linear');
    this.bias = bias ? this.param('bias', [outFeatures]) : null;
  }

  /** `x[..., in]` → `[..., out]`. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const shape = x.shape;
      const x2 = shape.length === 2 ? (x as tf.Tensor2D) : x.reshape([-1, this.inFeatures]) as tf.Tensor2D;
      const y: tf.Tensor = tf.fused.matMul({ a: x2, b: this.weight.value as tf.Tensor2D, bias: this.bias?.value });
      return shape.length === 2 ? y : y.reshape([...shape.slice(0, -1), this.outFeatures]);
    });
  }
}

/** Options of {@link Conv2d}. */
export interface Conv2dOptions {
  /** Stride on both spatial axes (default 1). */
  stride?: number;
  /** Symmetric padding on every side, or explicit `[top, bottom, left, right]` (default 0). */
  padding?: number | Padding4;
  /** Whether the layer has a bias (default true). */
  bias?: boolean;
}

/** `torch.nn.Conv2d` on NHWC tensors, with PyTorch's explicit (symmetric or asymmetric) zero padding. */
export class Conv2d extends Module {
  /** `[kh, kw, in, out]` (PyTorch `[out, in, kh, kw]` converted on load); key `weight`. */
  readonly weight: Parameter;
  /** `[out]`, or null when built with `bias: false`; key `bias`. */
  readonly bias: Parameter | null;
  /** Stride on both spatial axes. */
  readonly stride: number;
  /** Zero padding `[top, bottom, left, right]`. */
  readonly padding: Padding4;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    options: Conv2dOptions = {},
  ) {
    super();
    this.stride = options.stride ?? 1;
    const p = options.padding ?? 0;
    this.padding = typeof p === 'number' ? [p, p, p, p] : p;
    this.weight = this.param('weight', [kernelSize, kernelSize, inChannels, outChannels], 'conv');
    this.bias = options.bias ?? true ? this.param('bias', [outChannels]) : null;
  }

  /** `x[N,H,W,in]` → `[N,H',W',out]`. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      if (x.shape[3] !== this.inChannels) {
        throw new InvalidArgumentError(`Conv2d expects ${this.inChannels} input channels, got [${x.shape}]`);
      }
      return conv2dOp(x, this.weight.value as tf.Tensor4D, this.bias?.value as tf.Tensor1D | undefined, {
        stride: this.stride,
        padding: this.padding,
      });
    });
  }
}

/** `torch.nn.GroupNorm` on NHWC tensors (statistics over H, W and the channels of each group). */
/**
 * Mean and biased variance of `x[n, L, g, cg]` over axes 1 and 3, each summed in two stages (blocks of ≈ √L
 * positions, then the block sums). tfjs' reductions add sequentially, so one pass over L·cg = 4096+ values leaves
 * each group's mean with a relative error ~√(L·cg)·2⁻²⁴ that is the same for every pixel of the group — a
 * per-channel bias after normalisation, which DDS's cancelling loss magnified ~50× against PyTorch (whose CPU
 * reductions are vectorised/cascaded). Blocking cuts that error by ~√L⁄2. Returns `x − mean` and the variance
 * `[n, 1, g, 1]`. Where `hotOps().groupNormStats` is `'single'` (tensorflow, whose reductions are tree-summed), or
 * L·cg ≤ 1024, one pass ({@link centeredMoments}).
 */
function groupMoments(x: tf.Tensor): { centered: tf.Tensor; variance: tf.Tensor } {
  const [n, l, g, cg] = x.shape;
  let b = 1;
  for (let d = Math.floor(Math.sqrt(l)); d > 1; d--) {
    if (l % d === 0) {
      b = d;
      break;
    }
  }
  // On tensorflow one pass (TF's reductions are tree-summed): see GroupNormStats in ops.ts.
  if (hotOps().groupNormStats === 'single' || l * cg <= 1024 || b === 1) return centeredMoments(x, [1, 3]);
  const count = l * cg;
  const blockedMean = (t: tf.Tensor): tf.Tensor =>
    tf.div(tf.sum(tf.sum(t.reshape([n, l / b, b, g, cg]), [2, 4]), 1, true), count).reshape([n, 1, g, 1]);
  const centered = tf.sub(x, blockedMean(x));
  // (squaredDifference has no broadcasting gradient); the squares are freed at once, not with the caller's tidy.
  const variance = tf.tidy(() => blockedMean(tf.square(centered)));
  return { centered, variance };
}

/**
 * `x − mean(x)` and the biased variance over `axes` (kept as size-1 axes): `tf.moments`' arithmetic, bit for bit,
 * with the centred tensor returned for reuse instead of computed a second time by the caller (two ops fewer per norm,
 * which counts on wasm where small models are bound by the per-op cost).
 */
function centeredMoments(x: tf.Tensor, axes: number | number[]): { centered: tf.Tensor; variance: tf.Tensor } {
  const centered = tf.sub(x, tf.mean(x, axes, true));
  return { centered, variance: tf.tidy(() => tf.mean(tf.square(centered), axes, true)) };
}

export class GroupNorm extends Module {
  /** Per-channel scale γ `[C]` (null without affine); key `weight`. */
  readonly weight: Parameter | null;
  /** Per-channel shift β `[C]` (null without affine); key `bias`. */
  readonly bias: Parameter | null;
  constructor(
    readonly numGroups: number,
    readonly numChannels: number,
    readonly eps = 1e-5,
    affine = true,
  ) {
    super();
    if (numChannels % numGroups !== 0) {
      throw new InvalidArgumentError(`GroupNorm: ${numChannels} channels are not divisible into ${numGroups} groups`);
    }
    this.weight = affine ? this.param('weight', [numChannels], 'plain', 'ones') : null;
    this.bias = affine ? this.param('bias', [numChannels], 'plain', 'zeros') : null;
  }

  /** `x[N,H,W,C]` (or `[N,L,C]`) → same shape. */
  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const shape = x.shape;
      const n = shape[0];
      const c = shape[shape.length - 1];
      if (c !== this.numChannels) throw new InvalidArgumentError(`GroupNorm expects ${this.numChannels} channels, got [${shape}]`);
      const g = this.numGroups;
      const cg = c / g;
      const xr = x.reshape([n, -1, g, cg]);
      const { centered, variance } = groupMoments(xr); // x − mean, and [n, 1, g, 1] biased variance as PyTorch
      // Normalise, then scale and shift, in this order: folding γ into the per-channel scale (x − mean)·(γ·rstd), or
      // the mean into the shift, is ~30% faster on wasm but moved the UNet goldens' error from 3.4e-6 to 2.2e-5
      // (measured on fixtures/tiny-sd15), so precision wins.
      // Each full-size intermediate is freed once consumed (at 512² in the VAE decoder each is 256 MiB).
      return sequential<tf.Tensor, T>(
        centered,
        (t) => tf.mul(t, tf.rsqrt(tf.add(variance, this.eps))),
        (t) => t.reshape(shape),
        this.weight && ((t) => tf.mul(t, this.weight!.value)),
        this.bias && ((t) => tf.add(t, this.bias!.value)),
      );
    });
  }
}

/** `torch.nn.LayerNorm` over the last axis. */
export class LayerNorm extends Module {
  /** Scale γ `[dim]` (null without affine); key `weight`. */
  readonly weight: Parameter | null;
  /** Shift β `[dim]` (null without affine); key `bias`. */
  readonly bias: Parameter | null;
  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    affine = true,
  ) {
    super();
    this.weight = affine ? this.param('weight', [dim], 'plain', 'ones') : null;
    this.bias = affine ? this.param('bias', [dim], 'plain', 'zeros') : null;
  }

  /** `x[..., dim]` → same shape. */
  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      if (x.shape[x.rank - 1] !== this.dim) throw new InvalidArgumentError(`LayerNorm expects last axis ${this.dim}, got [${x.shape}]`);
      const { centered, variance } = centeredMoments(x, -1);
      return sequential<tf.Tensor, T>(
        centered,
        (t) => tf.mul(t, tf.rsqrt(tf.add(variance, this.eps))),
        this.weight && this.bias && ((t) => tf.add(tf.mul(t, this.weight!.value), this.bias!.value)),
      );
    });
  }
}

/** `torch.nn.Embedding`: a lookup table `[num, dim]`. */
export class Embedding extends Module {
  /** The table `[num, dim]`; key `weight`. */
  readonly weight: Parameter;
  constructor(
    readonly numEmbeddings: number,
    readonly dim: number,
  ) {
    super();
    this.weight = this.param('weight', [numEmbeddings, dim]);
  }

  /** Integer ids of any shape → `[...ids.shape, dim]`. */
  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const flat = ids.reshape([-1]).toInt() as tf.Tensor1D;
      return gatherAxis(this.weight.value as tf.Tensor, flat, 0).reshape([...ids.shape, this.dim]);
    });
  }
}

/** SiLU / swish: `x·σ(x)`. */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)) as T);
}

/** Exact (erf) GELU as PyTorch's `F.gelu`: `x/2·(1 + erf(x/√2))`. */
export function gelu<T extends tf.Tensor>(x: T): T {
  // The erf branch through sequential: at the UNet's widest GEGLU ([4, 4096, 640] at 512²) each step is 40 MiB.
  return tf.tidy(() => {
    const half = tf.mul(x, 0.5);
    return tf.mul(half, sequential(x, (t) => tf.mul(t, Math.SQRT1_2), tf.erf, (t) => tf.add(1, t))) as T;
  });
}

/** CLIP's quick_gelu: `x·σ(1.702x)`. */
export function quickGelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))) as T);
}

/** diffusers' GEGLU: `Linear(in, 2·out)`, split into `(a, gate)`, `a·gelu(gate)`. Keys: `proj.weight`, `proj.bias`. */
export class GEGLU extends Module {
  /** `Linear(in, 2·out)` whose output halves are `(a, gate)`; keys `proj.*`. */
  readonly proj: Linear;
  constructor(
    readonly dimIn: number,
    readonly dimOut: number,
  ) {
    super();
    this.proj = this.child('proj', new Linear(dimIn, dimOut * 2));
  }

  /** `x[..., in]` → `[..., out]`. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [a, gate] = tf.tidy(() => tf.split(this.proj.forward(x), 2, -1)); // the projection freed once split
      return tf.mul(a, gelu(gate));
    });
  }
}
