// Multi-head scaled dot-product attention in query chunks under a byte budget, and CLIP's causal mask.
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '@ddsjs/safetensors';
import { attentionStrategy, hotOps, type AttentionStrategy } from './hot-ops';

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Number of heads; the channel axis is split into `heads` chunks of `C / heads`. */
  heads: number;
  /**
   * Additive mask broadcastable to `[Nq, Nk]` (rank 2: `[Nq|1, Nk]`) or to `[B, Nq, Nk]` (rank 3:
   * `[B|1, Nq|1, Nk]`), e.g. CLIP's {@link causalMask}.
   */
  mask?: tf.Tensor;
  /** Largest score tensor allowed, in bytes (default 64 MiB): queries are processed in chunks under it. */
  byteBudget?: number;
  /**
   * How the heads are computed (default `'auto'`: `hotOps().attention`, by default {@link attentionStrategy} of the
   * active backend and the heads' size):
   * `'per-head'` one 2-D matMul per (batch, head) — fastest on wasm for large heads; `'batched'` one batched matMul over all
   * (batch, head) pairs per query chunk — far fewer ops, fastest on tensorflow. Both give the same values within
   * float32 rounding.
   */
  strategy?: 'auto' | AttentionStrategy;
}

/** Default byte budget of one attention score chunk. */
export const DEFAULT_ATTENTION_BYTE_BUDGET = 64 * 1024 * 1024;

/**
 * The float32 value PyTorch uses for masked attention logits (`torch.finfo(torch.float32).min`). Adding it to
 * a logit gives exactly 0 probability after softmax (exp underflows) and, unlike −∞, never NaN — even for a
 * fully masked row, which gets a uniform distribution as in PyTorch.
 */
export const MASK_MIN = -3.4028234663852886e38;

/**
 * CLIP's causal attention mask `[n, n]`: 0 on and below the diagonal, {@link MASK_MIN} above it (key j > query i
 * is hidden).
 */
export function causalMask(n: number): tf.Tensor2D {
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`causalMask: n must be a positive integer, got ${n}`);
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) data[i * n + j] = MASK_MIN;
  return tf.tensor2d(data, [n, n]);
}

function maskRows(mask: tf.Tensor, b: number, s: number, len: number, nq: number, nk: number): tf.Tensor {
  // Returns the part of `mask` for batch b, query rows [s, s+len), broadcastable to [len, nk].
  let m = mask;
  if (m.rank === 3) {
    const [m0, m1, m2] = m.shape as [number, number, number];
    m = m.slice([m0 === 1 ? 0 : b, 0, 0], [1, m1, m2]).reshape([m1, m2]);
  }
  const [r0, r1] = m.shape as [number, number];
  if (r0 === nq && len !== nq) m = m.slice([s, 0], [len, r1]);
  void nk;
  return m;
}

/**
 * Multi-head scaled dot-product attention, `softmax(q·kᵀ/√d + mask)·v`, on `q[B,Nq,C]`, `k[B,Nk,C]`,
 * `v[B,Nk,Cv]`. q, k and v are rearranged once to head-major `[B·heads, N, d]` (k as `[B·heads, d, Nk]`),
 * then each (batch, head) is one 2-D matMul (the fastest form on wasm), and queries are processed in chunks
 * so that no score tensor exceeds `byteBudget`; every query row sees the same arithmetic, so the result is
 * identical to the unchunked computation. Differentiable on every backend. Returns `[B,Nq,Cv]`.
 */
export function attention(q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, options: AttentionOptions): tf.Tensor3D {
  return tf.tidy(() => {
    const { heads } = options;
    if (q.rank !== 3 || k.rank !== 3 || v.rank !== 3) {
      throw new InvalidArgumentError(`attention: q, k, v must be [B,N,C]; got [${q.shape}], [${k.shape}], [${v.shape}]`);
    }
    const [b, nq, c] = q.shape;
    const nk = k.shape[1];
    const cv = v.shape[2];
    if (k.shape[0] !== b || v.shape[0] !== b || k.shape[2] !== c || v.shape[1] !== nk) {
      throw new InvalidArgumentError(`attention: mismatched shapes q [${q.shape}], k [${k.shape}], v [${v.shape}]`);
    }
    if (!Number.isInteger(heads) || heads < 1 || c % heads !== 0 || cv % heads !== 0) {
      throw new InvalidArgumentError(`attention: ${c} (q/k) and ${cv} (v) channels must be divisible by heads=${heads}`);
    }
    if (options.mask) {
      const ms = options.mask.shape;
      const r = ms.length;
      const ok =
        (r === 2 || r === 3) &&
        ms[r - 1] === nk &&
        (ms[r - 2] === nq || ms[r - 2] === 1) &&
        (r === 2 || ms[0] === b || ms[0] === 1);
      if (!ok) throw new InvalidArgumentError(`attention: mask [${ms}] is not broadcastable to [${nq},${nk}] or [${b},${nq},${nk}]`);
    }
    const d = c / heads;
    const dv = cv / heads;
    const scale = 1 / Math.sqrt(d);
    const budget = options.byteBudget ?? DEFAULT_ATTENTION_BYTE_BUDGET;
    if (!(budget > 0)) throw new InvalidArgumentError(`attention: byteBudget must be positive, got ${budget}`);
    const bh = b * heads;
    let strategy = options.strategy ?? 'auto';
    if (strategy === 'auto') strategy = hotOps().attention;
    if (strategy === 'auto') strategy = attentionStrategy(tf.getBackend(), nq * nk * d);
    if (strategy !== 'per-head' && strategy !== 'batched') throw new InvalidArgumentError(`attention: unknown strategy '${strategy}'`);
    if (strategy === 'batched') return batchedAttention(q, k, v, heads, scale, budget, options.mask);
    const chunk = Math.max(1, Math.min(nq, Math.floor(budget / (nk * 4))));
    // Head-major layouts, built once: [B·H, Nq, d], [B·H, d, Nk] (k transposed), [B·H, Nk, dv].
    const qh = heads === 1 ? tf.mul(q, scale) : tf.mul(q, scale).reshape([b, nq, heads, d]).transpose([0, 2, 1, 3]).reshape([bh, nq, d]);
    const kt = k.reshape([b, nk, heads, d]).transpose([0, 2, 3, 1]).reshape([bh, d, nk]);
    const vh = heads === 1 ? v : v.reshape([b, nk, heads, dv]).transpose([0, 2, 1, 3]).reshape([bh, nk, dv]);
    const outs: tf.Tensor[] = [];
    // Each head, and each query chunk within it, is its own tidy: a chunk's scores and probabilities are freed as
    // soon as its output rows exist, so the peak is one chunk's score tensor, not all of them. (Tensors the
    // backward pass needs are kept by the tape when gradients are being recorded.)
    for (let i = 0; i < bh; i++) {
      const bi = Math.floor(i / heads);
      outs.push(
        tf.tidy(() => {
          const q2 = bh === 1 ? qh.reshape([nq, d]) : qh.slice([i, 0, 0], [1, nq, d]).reshape([nq, d]);
          const k2 = bh === 1 ? kt.reshape([d, nk]) : kt.slice([i, 0, 0], [1, d, nk]).reshape([d, nk]);
          const v2 = bh === 1 ? vh.reshape([nk, dv]) : vh.slice([i, 0, 0], [1, nk, dv]).reshape([nk, dv]);
          const parts: tf.Tensor[] = [];
          for (let s = 0; s < nq; s += chunk) {
            const len = Math.min(chunk, nq - s);
            parts.push(
              tf.tidy(() => {
                const qc = len === nq ? q2 : q2.slice([s, 0], [len, d]);
                let scores: tf.Tensor = tf.matMul(qc as tf.Tensor2D, k2 as tf.Tensor2D);
                if (options.mask) scores = tf.add(scores, maskRows(options.mask, bi, s, len, nq, nk));
                return tf.matMul(tf.softmax(scores) as tf.Tensor2D, v2 as tf.Tensor2D);
              }),
            );
          }
          return parts.length === 1 ? parts[0] : tf.concat(parts, 0);
        }),
      );
    }
    const o = outs.length === 1 ? outs[0].reshape([1, nq, dv]) : tf.stack(outs); // [B·H, Nq, dv]
    if (heads === 1) return o.reshape([b, nq, cv]) as tf.Tensor3D;
    return o.reshape([b, heads, nq, dv]).transpose([0, 2, 1, 3]).reshape([b, nq, cv]) as tf.Tensor3D;
  });
}

/**
 * {@link attention}'s `'batched'` strategy: q, k, v as `[B·H, N, d]`, and per chunk of query rows (so that the
 * `[B·H, rows, Nk]` score tensor stays under `budget` bytes) one batched `q·kᵀ` matMul, the mask added on a
 * `[B, H, rows, Nk]` view, softmax, and one batched matMul with v. Runs inside the caller's tidy.
 */
function batchedAttention(
  q: tf.Tensor3D, k: tf.Tensor3D, v: tf.Tensor3D, heads: number, scale: number, budget: number, mask: tf.Tensor | undefined,
): tf.Tensor3D {
  const [b, nq, c] = q.shape;
  const nk = k.shape[1];
  const cv = v.shape[2];
  const d = c / heads;
  const dv = cv / heads;
  const bh = b * heads;
  const split = (t: tf.Tensor, n: number, dd: number) =>
    heads === 1 ? t : t.reshape([b, n, heads, dd]).transpose([0, 2, 1, 3]).reshape([bh, n, dd]);
  const qh = split(tf.mul(q, scale), nq, d) as tf.Tensor3D;
  const kh = split(k, nk, d) as tf.Tensor3D;
  const vh = split(v, nk, dv) as tf.Tensor3D;
  // The mask as [B|1, 1, Nq|1, Nk], broadcast over heads.
  const ms = mask?.shape ?? [];
  const m4 = mask ? (mask.rank === 2 ? mask.reshape([1, 1, ms[0]!, nk]) : mask.reshape([ms[0]!, 1, ms[1]!, nk])) : null;
  const chunk = Math.max(1, Math.min(nq, Math.floor(budget / (bh * nk * 4))));
  const parts: tf.Tensor[] = [];
  for (let s = 0; s < nq; s += chunk) {
    const len = Math.min(chunk, nq - s);
    parts.push(
      tf.tidy(() => {
        const qc = len === nq ? qh : qh.slice([0, s, 0], [bh, len, d]);
        let scores: tf.Tensor = tf.matMul(qc, kh, false, true); // [B·H, len, Nk]
        if (m4) {
          const rows = m4.shape[2] === nq && len !== nq ? m4.slice([0, 0, s, 0], [m4.shape[0], 1, len, nk]) : m4;
          scores = tf.add(scores.reshape([b, heads, len, nk]), rows).reshape([bh, len, nk]);
        }
        return tf.matMul(tf.softmax(scores) as tf.Tensor3D, vh); // [B·H, len, dv]
      }),
    );
  }
  const o = parts.length === 1 ? parts[0] : tf.concat(parts, 1);
  if (heads === 1) return o.reshape([b, nq, cv]) as tf.Tensor3D;
  return o.reshape([b, heads, nq, dv]).transpose([0, 2, 1, 3]).reshape([b, nq, cv]) as tf.Tensor3D;
}
