import * as tf from '@tensorflow/tfjs';

/** Explicit zero padding `[top, bottom, left, right]`. */
export type Padding4 = [number, number, number, number];

/** Options of {@link conv2dOp}. */
export interface Conv2dOpOptions {
  stride?: number;
  padding?: Padding4;
}

/**
 * 2-D convolution on NHWC `x` with filter `w[kh,kw,in,out]`, PyTorch semantics (explicit zero padding,
 * then a 'valid' convolution), plus optional bias. 1×1 stride-1 convolutions are one matMul.
 * Caller owns the result.
 */
export function conv2dOp(x: tf.Tensor4D, w: tf.Tensor4D, bias: tf.Tensor1D | undefined, options: Conv2dOpOptions = {}): tf.Tensor4D {
  return tf.tidy(() => {
    const stride = options.stride ?? 1;
    const [pt, pb, pl, pr] = options.padding ?? [0, 0, 0, 0];
    const [kh, kw, cin, cout] = w.shape;
    const [n, h, wd] = x.shape;
    let y: tf.Tensor4D;
    if (kh === 1 && kw === 1 && stride === 1 && pt + pb + pl + pr === 0) {
      const y2 = tf.matMul(x.reshape([n * h * wd, cin]) as tf.Tensor2D, w.reshape([cin, cout]) as tf.Tensor2D);
      y = y2.reshape([n, h, wd, cout]);
    } else {
      const xp = pt + pb + pl + pr > 0 ? tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]]) : x;
      y = tf.conv2d(xp, w, stride, 'valid');
    }
    return bias ? tf.add(y, bias) : y;
  });
}

/**
 * Nearest-neighbour upsampling of NHWC `x` to `size` (default 2× each side), as PyTorch's
 * `F.interpolate(mode='nearest')`: source index = floor(dst · in / out). Caller owns the result.
 */
export function upsampleNearest(x: tf.Tensor4D, size?: [number, number]): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const [oh, ow] = size ?? [h * 2, w * 2];
    if (oh === h * 2 && ow === w * 2) {
      // Broadcast trick (tinygrad's Upsample): differentiable on every backend.
      return x.reshape([n, h, 1, w, 1, c]).tile([1, 1, 2, 1, 2, 1]).reshape([n, oh, ow, c]) as tf.Tensor4D;
    }
    const rows = Array.from({ length: oh }, (_, i) => Math.min(h - 1, Math.floor((i * h) / oh)));
    const cols = Array.from({ length: ow }, (_, i) => Math.min(w - 1, Math.floor((i * w) / ow)));
    return tf.gather(tf.gather(x, rows, 1), cols, 2) as tf.Tensor4D;
  });
}

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Number of heads; the channel axis is split into `heads` chunks of `C / heads`. */
  heads: number;
  /** Additive mask broadcastable to `[Nq, Nk]` (e.g. CLIP's causal mask with −∞ above the diagonal). */
  mask?: tf.Tensor;
  /** Largest score tensor allowed, in bytes (default 64 MiB): queries are processed in chunks under it. */
  byteBudget?: number;
}

/** Default byte budget of one attention score chunk. */
export const DEFAULT_ATTENTION_BYTE_BUDGET = 64 * 1024 * 1024;

/**
 * Multi-head scaled dot-product attention, `softmax(q·kᵀ/√d + mask)·v`, on `q[B,Nq,C]`, `k[B,Nk,C]`,
 * `v[B,Nk,Cv]`. Each (batch, head) is one 2-D matMul with k transposed explicitly (the fastest form on
 * wasm), and queries are processed in chunks so that no score tensor exceeds `byteBudget`; the result
 * is identical to the unchunked computation. Returns `[B,Nq,Cv]`; caller owns it.
 */
export function attention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, options: AttentionOptions): tf.Tensor3D {
  return tf.tidy(() => {
    const { heads } = options;
    const [b, nq, c] = q.shape;
    const nk = k.shape[1];
    const cv = v.shape[2];
    if (c % heads !== 0 || cv % heads !== 0) throw new Error(`attention: ${c} channels not divisible by ${heads} heads`);
    const d = c / heads;
    const dv = cv / heads;
    const scale = 1 / Math.sqrt(d);
    const budget = options.byteBudget ?? DEFAULT_ATTENTION_BYTE_BUDGET;
    const chunk = Math.max(1, Math.min(nq, Math.floor(budget / (nk * 4))));
    const qs = tf.mul(q, scale);
    const outs: tf.Tensor[] = [];
    for (let bi = 0; bi < b; bi++) {
      const headOuts: tf.Tensor[] = [];
      for (let hi = 0; hi < heads; hi++) {
        const qh = qs.slice([bi, 0, hi * d], [1, nq, d]).reshape([nq, d]) as tf.Tensor2D;
        const kt = k.slice([bi, 0, hi * d], [1, nk, d]).reshape([nk, d]).transpose() as tf.Tensor2D;
        const vh = v.slice([bi, 0, hi * dv], [1, nk, dv]).reshape([nk, dv]) as tf.Tensor2D;
        const parts: tf.Tensor[] = [];
        for (let s = 0; s < nq; s += chunk) {
          const len = Math.min(chunk, nq - s);
          const qc = len === nq ? qh : qh.slice([s, 0], [len, d]);
          let scores: tf.Tensor = tf.matMul(qc, kt);
          if (options.mask) {
            const m = options.mask.rank === 2 && len !== nq ? options.mask.slice([s, 0], [len, nk]) : options.mask;
            scores = tf.add(scores, m);
          }
          parts.push(tf.matMul(tf.softmax(scores) as tf.Tensor2D, vh));
        }
        headOuts.push(parts.length === 1 ? parts[0] : tf.concat(parts, 0));
      }
      outs.push((heads === 1 ? headOuts[0] : tf.concat(headOuts, 1)).reshape([1, nq, cv]));
    }
    return (b === 1 ? outs[0] : tf.concat(outs, 0)) as tf.Tensor3D;
  });
}
