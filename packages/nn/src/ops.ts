import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** Explicit zero padding `[top, bottom, left, right]`. */
export type Padding4 = [number, number, number, number];

/**
 * How {@link conv2dOp} (and {@link gatherAxis}) compute gradients:
 * - `'auto'` (default): the backend's own gradient kernels when it has them, else the composed gradient
 *   (on wasm, which lacks `Conv2DBackpropFilter` and `UnsortedSegmentSum`).
 * - `'native'`: always tfjs' registered gradient (fails on wasm).
 * - `'composed'`: always ddsjs' composed gradient (for tests and for backends missing the kernels).
 */
export type GradientMode = 'auto' | 'native' | 'composed';

/** Options of {@link conv2dOp}. */
export interface Conv2dOpOptions {
  /** Stride on both spatial axes (default 1). */
  stride?: number;
  /** Explicit zero padding `[top, bottom, left, right]` applied before a 'valid' convolution (default none). */
  padding?: Padding4;
  /** How gradients are computed (default `'auto'`). Forward values do not depend on it. */
  gradient?: GradientMode;
}

interface EngineInternals {
  isTapeOn?: () => boolean;
}

/**
 * True while a gradient tape records (inside `tf.grad` / `tf.variableGrads` / `optimizer.minimize`). Uses the
 * engine's internal `isTapeOn()`; should a future tfjs drop it, assume a tape (always take the
 * differentiable path, which is only marginally slower).
 */
function tapeOn(): boolean {
  const engine = tf.engine() as unknown as EngineInternals;
  return typeof engine.isTapeOn === 'function' ? engine.isTapeOn() : true;
}

function backendHasKernel(kernel: string): boolean {
  return tf.getKernel(kernel, tf.getBackend()) !== undefined;
}

function useComposed(mode: GradientMode | undefined, kernel: string): boolean {
  if (mode === 'composed') return true;
  if (mode === 'native') return false;
  return !backendHasKernel(kernel);
}

/**
 * Filter gradient of a 'valid' NHWC convolution, composed only of kernels every backend has (wasm included):
 * `xp` is transposed once to channel-major `[cin, N, Hp, Wp]`; for each tap (i, j) of the kernel the (strided)
 * window the tap sees, `[cin, N·Ho·Wo]`, times `dy` flattened to `[N·Ho·Wo, cout]` gives that tap's
 * `[cin, cout]`; the taps are stacked to `[kh, kw, cin, cout]`. Strided or narrow (cin·cout ≤ 4096) convolutions
 * instead take one forward convolution with the batch as channels. Equals TensorFlow's `Conv2DBackpropFilter`.
 * (On wasm `matMul(a, b, transposeA=true)` is ~10× slower than this one explicit transpose.)
 */
export function conv2dFilterGrad(
  xp: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  stride: number,
): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw, cin, cout] = filterShape;
    const [n, ho, wo] = dy.shape;
    if (stride > 1 || cin * cout <= 64 * 64) {
      // One convolution with the batch as channels: [cin, Hp, Wp, N] ⋆ dy as a [Ho, Wo, N, cout] filter, dilated by
      // the stride, gives [cin, kh(+unreached rows), kw(+…), cout]. On wasm (XNNPACK) this is 2–50× faster than the
      // per-tap matMuls below for strided or narrow convolutions, and ~2× slower for wide stride-1 ones (measured).
      const a = tf.transpose(xp, [3, 1, 2, 0]) as tf.Tensor4D;
      const f = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D;
      let o = tf.conv2d(a, f, 1, 'valid', 'NHWC', stride);
      if (o.shape[1] !== kh || o.shape[2] !== kw) o = tf.slice(o, [0, 0, 0, 0], [cin, kh, kw, cout]);
      return tf.transpose(o, [1, 2, 0, 3]) as tf.Tensor4D;
    }
    const m = n * ho * wo;
    const dy2 = dy.reshape([m, cout]) as tf.Tensor2D;
    const xt = tf.transpose(xp, [3, 0, 1, 2]); // [cin, N, Hp, Wp]
    const taps: tf.Tensor2D[] = [];
    for (let i = 0; i < kh; i++) {
      for (let j = 0; j < kw; j++) {
        const win =
          stride === 1
            ? tf.slice(xt, [0, 0, i, j], [cin, n, ho, wo])
            : tf.stridedSlice(xt, [0, 0, i, j], [cin, n, i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1], [1, 1, stride, stride]);
        taps.push(tf.matMul(win.reshape([cin, m]) as tf.Tensor2D, dy2));
      }
    }
    return (taps.length === 1 ? taps[0] : tf.stack(taps)).reshape([kh, kw, cin, cout]) as tf.Tensor4D;
  });
}

/**
 * Input gradient of a 'valid' NHWC convolution of an input shaped `inShape` with filter `w`, as a forward
 * convolution: `dy` is dilated by the stride (zeros between rows/columns), zero-padded by `k − 1` (plus the rows
 * and columns the strided convolution never reached), and convolved with `w` flipped spatially and with its
 * channel axes swapped. Equals `Conv2DBackpropInput` (tf.conv2dTranspose), which is ~20× slower on wasm.
 */
export function conv2dInputGrad(dy: tf.Tensor4D, w: tf.Tensor4D, inShape: [number, number, number, number], stride: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [kh, kw, cin, cout] = w.shape;
    const [n, ho, wo] = dy.shape;
    const [, hp, wp] = inShape;
    let d: tf.Tensor4D = dy;
    if (stride > 1) {
      // Zeros between columns, then between rows, with rank-4 pads only: tfjs-backend-webgpu's Pad shader is invalid
      // WGSL for rank ≥ 5 (it declares a vec5/vec6), and WebGPU then drops the whole command buffer — no exception,
      // wrong numbers (measured: every output of the step, forward included, wrong on Dawn).
      const cols = tf.pad(dy.reshape([n * ho, wo, 1, cout]), [[0, 0], [0, 0], [0, stride - 1], [0, 0]]);
      const rows = tf.pad(cols.reshape([n, ho, 1, wo * stride * cout]), [[0, 0], [0, 0], [0, stride - 1], [0, 0]]);
      d = rows.reshape([n, ho * stride, wo * stride, cout]).slice([0, 0, 0, 0], [n, (ho - 1) * stride + 1, (wo - 1) * stride + 1, cout]) as tf.Tensor4D;
    }
    const extraH = hp - ((ho - 1) * stride + kh);
    const extraW = wp - ((wo - 1) * stride + kw);
    const padded = tf.pad(d, [[0, 0], [kh - 1, kh - 1 + extraH], [kw - 1, kw - 1 + extraW], [0, 0]]);
    const wf = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D;
    void cin;
    return tf.conv2d(padded, wf, 1, 'valid');
  });
}

/** 'valid' conv2d whose gradient is composed from kernels wasm has (see {@link conv2dFilterGrad}). */
function conv2dValidComposedGrad(xp: tf.Tensor4D, w: tf.Tensor4D, stride: number): tf.Tensor4D {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xIn, wIn, save] = args as [tf.Tensor, tf.Tensor, tf.GradSaveFunc];
    save([xIn, wIn]);
    return {
      value: tf.conv2d(xIn as tf.Tensor4D, wIn as tf.Tensor4D, stride, 'valid'),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
        const [xs, ws] = saved as [tf.Tensor4D, tf.Tensor4D];
        const d = dy as tf.Tensor4D;
        const dx = conv2dInputGrad(d, ws, xs.shape, stride);
        const dw = conv2dFilterGrad(xs, d, ws.shape, stride);
        return [dx, dw];
      },
    };
  });
  return f(xp, w) as tf.Tensor4D;
}

/**
 * 2-D convolution on NHWC `x` with filter `w[kh,kw,in,out]`, PyTorch semantics (explicit zero padding,
 * then a 'valid' convolution), plus optional bias. 1×1 stride-1 unpadded convolutions are one matMul.
 *
 * Differentiable w.r.t. `x`, `w` and `bias` on every backend: where the backend lacks
 * `Conv2DBackpropFilter` (wasm) the filter gradient is composed from slices and matMuls
 * ({@link conv2dFilterGrad}). Outside a gradient tape the plain forward runs, with no custom-gradient
 * bookkeeping.
 */
export function conv2dOp(x: tf.Tensor4D, w: tf.Tensor4D, bias: tf.Tensor1D | undefined, options: Conv2dOpOptions = {}): tf.Tensor4D {
  return tf.tidy(() => {
    const stride = options.stride ?? 1;
    const [pt, pb, pl, pr] = options.padding ?? [0, 0, 0, 0];
    if (x.rank !== 4) throw new InvalidArgumentError(`conv2dOp: x must be NHWC rank 4, got [${x.shape}]`);
    if (w.rank !== 4) throw new InvalidArgumentError(`conv2dOp: w must be [kh,kw,in,out], got [${w.shape}]`);
    const [kh, kw, cin, cout] = w.shape;
    const [n, h, wd, c] = x.shape;
    if (c !== cin) throw new InvalidArgumentError(`conv2dOp: x has ${c} channels [${x.shape}] but w expects ${cin} [${w.shape}]`);
    if (!Number.isInteger(stride) || stride < 1) throw new InvalidArgumentError(`conv2dOp: stride must be a positive integer, got ${stride}`);
    if ([pt, pb, pl, pr].some((p) => !Number.isInteger(p) || p < 0)) {
      throw new InvalidArgumentError(`conv2dOp: padding must be non-negative integers, got [${options.padding}]`);
    }
    if (h + pt + pb < kh || wd + pl + pr < kw) {
      throw new InvalidArgumentError(`conv2dOp: input [${x.shape}] padded by [${[pt, pb, pl, pr]}] is smaller than the ${kh}×${kw} kernel`);
    }
    const recording = tapeOn();
    if (!recording && bias) {
      // Inference fast path: one fused kernel (conv + bias) with the padding inside the kernel, so no padded copy
      // of x is made: TF 'same' where it equals PyTorch's symmetric padding (stride 1, odd kernel, (k−1)/2 on every
      // side), else explicit padding (the strided downsamplers, the VAE's (0,1,0,1)); wasm (XNNPACK) and tensorflow
      // both take explicit pads in the forward kernel (not in tfjs-node's backprop kernels, hence forward only).
      const same = stride === 1 && kh % 2 === 1 && kw % 2 === 1 && pt === (kh - 1) / 2 && pb === pt && pl === (kw - 1) / 2 && pr === pl;
      const pad: 'same' | 'valid' | [[0, 0], [number, number], [number, number], [0, 0]] = same
        ? 'same'
        : pt + pb + pl + pr === 0
          ? 'valid'
          : [[0, 0], [pt, pb], [pl, pr], [0, 0]];
      return tf.fused.conv2d({ x, filter: w, strides: stride, pad, bias });
    }
    let y: tf.Tensor4D;
    if (kh === 1 && kw === 1 && stride === 1 && pt + pb + pl + pr === 0) {
      const y2 = tf.matMul(x.reshape([n * h * wd, cin]) as tf.Tensor2D, w.reshape([cin, cout]) as tf.Tensor2D);
      y = y2.reshape([n, h, wd, cout]);
    } else {
      const xp = pt + pb + pl + pr > 0 ? tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]]) : x;
      if (recording && useComposed(options.gradient, 'Conv2DBackpropFilter')) {
        y = conv2dValidComposedGrad(xp, w, stride);
      } else {
        y = tf.conv2d(xp, w, stride, 'valid');
      }
    }
    return bias ? tf.add(y, bias) : y;
  });
}

/**
 * `tf.gather(x, indices, axis)` that is differentiable w.r.t. `x` on every backend: where the backend lacks
 * `UnsortedSegmentSum` (wasm), the gradient is a `scatterND` (which sums repeated indices). `indices` is a
 * 1-D int32 tensor or a plain array.
 */
export function gatherAxis<T extends tf.Tensor>(x: T, indices: tf.Tensor1D | number[], axis = 0, gradient: GradientMode = 'auto'): T {
  return tf.tidy(() => {
    const ax = axis < 0 ? axis + x.rank : axis;
    if (ax < 0 || ax >= x.rank) throw new InvalidArgumentError(`gatherAxis: axis ${axis} is out of range for [${x.shape}]`);
    const idx = Array.isArray(indices) ? tf.tensor1d(indices, 'int32') : indices.dtype === 'int32' ? indices : tf.cast(indices, 'int32');
    if (!tapeOn() || !useComposed(gradient, 'UnsortedSegmentSum')) return tf.gather(x, idx, ax) as T;
    const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const [xIn, save] = args as [tf.Tensor, tf.GradSaveFunc];
      save([idx]);
      const shape = xIn.shape;
      return {
        value: tf.gather(xIn, idx, ax),
        gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
          const ids = saved[0] as tf.Tensor1D;
          const d = dy as tf.Tensor;
          const perm = [ax, ...shape.map((_, i) => i).filter((i) => i !== ax)];
          const inv = perm.map((_, i) => perm.indexOf(i));
          const dyT = ax === 0 ? d : tf.transpose(d, perm);
          const rest = shape.filter((_, i) => i !== ax);
          const restSize = rest.reduce((a, b) => a * b, 1);
          const upd = dyT.reshape([ids.shape[0], restSize]);
          const dx = tf.scatterND(ids.reshape([ids.shape[0], 1]), upd, [shape[ax], restSize]).reshape([shape[ax], ...rest]);
          return ax === 0 ? dx : tf.transpose(dx, inv);
        },
      };
    });
    return f(x) as T;
  });
}

/**
 * PyTorch's nearest source indices for `F.interpolate(size=out, mode='nearest')` along one axis of length
 * `inSize`: `min(floor(i · scale), inSize − 1)` with `scale = in/out` in float32 (PyTorch's arithmetic), or
 * `i >> 1` for exact 2×.
 */
export function nearestIndices(inSize: number, outSize: number): number[] {
  if (outSize === 2 * inSize) return Array.from({ length: outSize }, (_, i) => i >> 1);
  if (outSize === inSize) return Array.from({ length: outSize }, (_, i) => i);
  const scale = Math.fround(inSize / outSize);
  return Array.from({ length: outSize }, (_, i) => Math.min(Math.floor(Math.fround(i * scale)), inSize - 1));
}

/**
 * Nearest-neighbour upsampling of NHWC `x` to `size = [outH, outW]` (default 2× each side), as PyTorch's
 * `F.interpolate(size=…, mode='nearest')` (see {@link nearestIndices}). Differentiable on every backend.
 */
export function upsampleNearest(x: tf.Tensor4D, size?: [number, number]): tf.Tensor4D {
  return tf.tidy(() => {
    if (x.rank !== 4) throw new InvalidArgumentError(`upsampleNearest: x must be NHWC rank 4, got [${x.shape}]`);
    const [n, h, w, c] = x.shape;
    const [oh, ow] = size ?? [h * 2, w * 2];
    if (!(Number.isInteger(oh) && Number.isInteger(ow) && oh > 0 && ow > 0)) {
      throw new InvalidArgumentError(`upsampleNearest: size must be two positive integers, got [${size}]`);
    }
    if (oh === h * 2 && ow === w * 2) {
      // Two concats (10-40× faster than tile or gather on wasm; differentiable everywhere): duplicate each
      // pixel along W, then each row.
      const px = x.reshape([n * h * w, 1, c]);
      const rows = tf.concat([px, px], 1).reshape([n * h, 1, 2 * w * c]);
      return tf.concat([rows, rows], 1).reshape([n, oh, ow, c]) as tf.Tensor4D;
    }
    let y: tf.Tensor4D = x;
    if (oh !== h) y = gatherAxis(y, nearestIndices(h, oh), 1);
    if (ow !== w) y = gatherAxis(y, nearestIndices(w, ow), 2);
    return y === x ? x.clone() : y;
  });
}

/**
 * The `seed` argument to pass to `tf.randomNormal` / `tf.randomUniform` for the integer seed `seed`. tfjs treats
 * every falsy seed as "no seed" (`seed ? seed : Math.random()`), so seed 0 would silently give different numbers on
 * every call; this maps 0 to 0.5 (never an integer seed's value) and returns every other seed unchanged, so the
 * numbers of seeds ≠ 0 are those tfjs always gave. Throws on a non-finite seed.
 */
export function tfSeed(seed: number): number {
  if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new InvalidArgumentError(`tfSeed: the seed must be a finite number, got ${seed}`);
  return seed === 0 ? 0.5 : seed;
}

/**
 * The global L2 norm `sqrt(Σ_t Σ t²)` of a list of tensors (gradient clipping, logging) as a scalar.
 * The per-tensor sums are added pairwise (a tree of `tf.add`), not with `tf.addN`: tfjs-backend-webgpu compiles
 * `addN` into one shader with a storage buffer per input, which WebGPU rejects beyond `maxStorageBuffersPerShaderStage`
 * (8 by default: already 8 inputs + the output fail) and, for a UNet's ≈ 700 gradients, beyond WGSL's expression
 * depth — and a rejected shader gives wrong numbers (0 here), not an exception.
 */
export function globalNorm(tensors: readonly tf.Tensor[]): tf.Scalar {
  if (tensors.length === 0) throw new InvalidArgumentError('globalNorm: no tensors');
  return tf.tidy(() => {
    let level: tf.Tensor[] = tensors.map((t) => tf.sum(tf.square(t)));
    while (level.length > 1) {
      const next: tf.Tensor[] = [];
      for (let i = 0; i < level.length; i += 2) next.push(i + 1 < level.length ? tf.add(level[i], level[i + 1]) : level[i]);
      level = next;
    }
    return tf.sqrt(level[0]) as tf.Scalar;
  });
}
