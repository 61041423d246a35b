// The one place where each backend-aware op of @ddsjs/nn picks its implementation (see docs/backends.md).
import * as tf from '@tensorflow/tfjs';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** The two ways {@link attention} can compute its heads. */
export type AttentionStrategy = 'per-head' | 'batched';

/**
 * Work of one head below which wasm runs attention batched: `Nq·Nk·d` multiply-adds of `q·kᵀ` per (batch, head).
 * The toy model's heads (64×77×8 at most) are far below it, SD-sized ones (≥ 64×64×160 = 655k) above it.
 */
export const SMALL_HEAD_WORK = 256 * 1024;

/**
 * The attention strategy used on `backend` (default: the active one) for heads of `headWork = Nq·Nk·d`
 * multiply-adds (default: large): `'batched'` on `tensorflow` (tfjs-node, where each op costs a fixed dispatch and
 * BatchMatMul is multi-threaded over the batch) and on wasm for small heads (≤ {@link SMALL_HEAD_WORK}: there the
 * per-head slices, reshapes and stack cost more than the matMuls — 9% of a toy-model DDS step, measured), `'per-head'`
 * otherwise (wasm's 2-D matMul is its fastest kernel for large heads; cpu and webgpu keep the reference path). The one
 * place this choice is made.
 */
export function attentionStrategy(backend: string = tf.getBackend(), headWork = Infinity): AttentionStrategy {
  if (backend === 'tensorflow') return 'batched';
  if (backend === 'wasm' && headWork <= SMALL_HEAD_WORK) return 'batched';
  return 'per-head';
}

/**
 * How GroupNorm computes its per-group statistics: `'blocked'` sums in two stages (blocks of ≈ √L positions, then
 * the block sums), needed where tfjs' reductions add sequentially (wasm, cpu, webgpu: one pass over 4096+ values
 * biases each group's mean); `'single'` is one `tf.moments` (TensorFlow's reductions are tree-summed, so one pass
 * is as precise, with fewer ops).
 */
export type GroupNormStats = 'blocked' | 'single';

/** The implementation of each backend-aware op of @ddsjs/nn (see {@link hotOps}). */
export interface HotOps {
  /** {@link attention}'s strategy; `'auto'`: {@link attentionStrategy} of the backend and each call's size. */
  attention: 'auto' | AttentionStrategy;
  /** GroupNorm's statistics. */
  groupNormStats: GroupNormStats;
}

/** The backend-agnostic choices every backend had before ops became backend-aware (for A/B benchmarks and parity tests). */
export const PORTABLE_HOT_OPS: Readonly<HotOps> = Object.freeze({ attention: 'per-head', groupNormStats: 'blocked' });

let hotOpsOverride: Partial<HotOps> | null = null;

/**
 * The one place where @ddsjs/nn decides, per backend (default: the active one), which implementation of each hot op
 * runs: attention by {@link attentionStrategy} (per backend and size), single-pass GroupNorm statistics on
 * `tensorflow` and blocked ones elsewhere. Values set with {@link setHotOps} take precedence.
 */
export function hotOps(backend: string = tf.getBackend()): HotOps {
  const byBackend: HotOps = {
    attention: 'auto',
    groupNormStats: backend === 'tensorflow' ? 'single' : 'blocked',
  };
  return hotOpsOverride ? { ...byBackend, ...hotOpsOverride } : byBackend;
}

/**
 * Forces some (or all) hot-op choices on every backend, for A/B benchmarks in one process and parity tests;
 * `null` returns to the per-backend choices of {@link hotOps}. Throws on an unknown key or value. Global state:
 * reset it when done.
 */
export function setHotOps(override: Partial<HotOps> | null): void {
  if (override !== null) {
    const allowed: Record<keyof HotOps, readonly string[]> = { attention: ['auto', 'per-head', 'batched'], groupNormStats: ['blocked', 'single'] };
    for (const [k, v] of Object.entries(override)) {
      const values = allowed[k as keyof HotOps];
      if (!values) throw new InvalidArgumentError(`setHotOps: unknown op '${k}' (known: ${Object.keys(allowed).join(', ')})`);
      if (v !== undefined && !values.includes(v as string)) throw new InvalidArgumentError(`setHotOps: ${k} must be one of ${values.join(', ')}, got '${v}'`);
    }
  }
  hotOpsOverride = override === null ? null : Object.fromEntries(Object.entries(override).filter(([, v]) => v !== undefined));
}
