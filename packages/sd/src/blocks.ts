// Building blocks shared by the UNet and the VAE, named as diffusers names them so that module paths
// equal checkpoint keys. Every tensor is NHWC float32.
import * as tf from '@tensorflow/tfjs';
import {
  attention,
  Conv2d,
  DEFAULT_ATTENTION_BYTE_BUDGET,
  GEGLU,
  GroupNorm,
  LayerNorm,
  Linear,
  LoadStateDictOptions,
  Module,
  Parameter,
  silu,
  StateDictSource,
  upsampleNearest,
} from '@ddsjs/nn';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/**
 * diffusers' `get_timestep_embedding`: sinusoidal embedding of `timesteps[B]` → `[B, dim]`, with
 * frequencies `exp(-ln(maxPeriod)·i/(half − freqShift))` computed in float32 exactly as PyTorch does, and
 * `[sin, cos]` swapped to `[cos, sin]` when `flipSinToCos`. Caller owns the result.
 */
export function timestepEmbedding(
  timesteps: tf.Tensor1D,
  dim: number,
  flipSinToCos: boolean,
  freqShift: number,
  maxPeriod = 10000,
): tf.Tensor2D {
  return tf.tidy(() => {
    const half = Math.floor(dim / 2);
    const freqs = new Float32Array(half);
    const negLog = Math.fround(-Math.log(maxPeriod));
    const denom = Math.fround(half - freqShift);
    for (let i = 0; i < half; i++) {
      const exponent = Math.fround(Math.fround(negLog * i) / denom);
      freqs[i] = Math.exp(exponent);
    }
    const args = tf.mul(tf.cast(timesteps, 'float32').reshape([-1, 1]), tf.tensor2d(freqs, [1, half]));
    const sin = tf.sin(args);
    const cos = tf.cos(args);
    let emb = tf.concat(flipSinToCos ? [cos, sin] : [sin, cos], 1);
    if (dim % 2 === 1) emb = tf.pad(emb, [[0, 0], [0, 1]]);
    return emb as tf.Tensor2D;
  });
}

/**
 * Applies `f` to `x` and disposes `x` (unless `disposeInput` is false), to keep peak memory low inside a
 * `tf.tidy`. Gradient-safe: the tape holds its own references to saved tensors. Caller owns the result.
 */
export function chain<T extends tf.Tensor, U extends tf.Tensor>(x: T, f: (x: T) => U, disposeInput = true): U {
  const y = f(x);
  if (disposeInput && (y as tf.Tensor) !== x) x.dispose();
  return y;
}

/** diffusers' `TimestepEmbedding`: `linear_2(silu(linear_1(x)))`. Keys `linear_1`, `linear_2`. */
export class TimestepEmbedding extends Module {
  readonly linear1: Linear;
  readonly linear2: Linear;
  constructor(inChannels: number, timeEmbedDim: number) {
    super();
    this.linear1 = this.child('linear_1', new Linear(inChannels, timeEmbedDim));
    this.linear2 = this.child('linear_2', new Linear(timeEmbedDim, timeEmbedDim));
  }

  /** `x[B, in]` → `[B, timeEmbedDim]`. Caller owns the result. */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.linear2.forward(silu(this.linear1.forward(x))) as tf.Tensor2D);
  }
}

/**
 * diffusers' `ResnetBlock2D` (time-scale-shift 'default'): `norm1 → silu → conv1 (+ time_emb_proj(silu(temb)))
 * → norm2 → silu → conv2`, plus the input (through a 1×1 `conv_shortcut` when channels change), divided by
 * `outputScaleFactor`. Without `tembChannels` (the VAE) there is no `time_emb_proj`.
 */
export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly timeEmbProj: Linear | null;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly convShortcut: Conv2d | null;
  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    tembChannels: number | null,
    groups: number,
    eps: number,
    readonly outputScaleFactor = 1,
  ) {
    super();
    this.norm1 = this.child('norm1', new GroupNorm(groups, inChannels, eps));
    this.conv1 = this.child('conv1', new Conv2d(inChannels, outChannels, 3, { padding: 1 }));
    this.timeEmbProj = tembChannels === null ? null : this.child('time_emb_proj', new Linear(tembChannels, outChannels));
    this.norm2 = this.child('norm2', new GroupNorm(groups, outChannels, eps));
    this.conv2 = this.child('conv2', new Conv2d(outChannels, outChannels, 3, { padding: 1 }));
    this.convShortcut = inChannels !== outChannels ? this.child('conv_shortcut', new Conv2d(inChannels, outChannels, 1)) : null;
  }

  /**
   * `x[B,H,W,in]`, `temb[B,T]` (silu is applied here, as diffusers does; required iff the block has
   * `time_emb_proj`) → `[B,H,W,out]`. Caller owns the result.
   */
  forward(x: tf.Tensor4D, temb: tf.Tensor2D | null = null): tf.Tensor4D {
    if (this.timeEmbProj && !temb) throw new InvalidArgumentError('ResnetBlock2D: this block needs a time embedding');
    return tf.tidy(() => {
      // Intermediates are disposed as soon as they are used (tidy would keep them all to the end: at 512×512
      // in the VAE decoder that is ~1.5 GB); gradients stay correct because the tape keeps its own references.
      let h = chain(x, (t) => this.norm1.forward(t), false);
      h = chain(h, silu);
      h = chain(h, (t) => this.conv1.forward(t));
      if (this.timeEmbProj && temb) {
        const te = this.timeEmbProj.forward(silu(temb));
        h = chain(h, (t) => tf.add(t, te.reshape([te.shape[0], 1, 1, this.outChannels])) as tf.Tensor4D);
      }
      h = chain(h, (t) => this.norm2.forward(t));
      h = chain(h, silu);
      h = chain(h, (t) => this.conv2.forward(t));
      const skip = this.convShortcut ? this.convShortcut.forward(x) : x;
      let out = chain(h, (t) => tf.add(skip, t) as tf.Tensor4D);
      if (skip !== x) skip.dispose();
      if (this.outputScaleFactor !== 1) out = chain(out, (t) => tf.div(t, this.outputScaleFactor) as tf.Tensor4D);
      return out;
    });
  }
}

/**
 * diffusers' `Downsample2D` with a conv: 3×3 stride 2. The UNet uses symmetric `padding` (1); the VAE
 * encoder uses padding 0 after an explicit (0,1,0,1) pad (bottom and right). Key: `conv`.
 */
export class Downsample2D extends Module {
  readonly conv: Conv2d;
  constructor(channels: number, padding: number) {
    super();
    this.conv = this.child(
      'conv',
      new Conv2d(channels, channels, 3, { stride: 2, padding: padding === 0 ? [0, 1, 0, 1] : padding }),
    );
  }

  /** `x[B,H,W,C]` → `[B,H',W',C]`. Caller owns the result. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return this.conv.forward(x);
  }
}

/** diffusers' `Upsample2D` with a conv: nearest ×2 (or to `size`), then 3×3 conv. Key: `conv`. */
export class Upsample2D extends Module {
  readonly conv: Conv2d;
  constructor(channels: number) {
    super();
    this.conv = this.child('conv', new Conv2d(channels, channels, 3, { padding: 1 }));
  }

  /** `x[B,H,W,C]` → `[B,2H,2W,C]` (or `[B,size[0],size[1],C]`). Caller owns the result. */
  forward(x: tf.Tensor4D, size?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => this.conv.forward(upsampleNearest(x, size)));
  }
}

/** Options of {@link Attention}. */
export interface AttentionModuleOptions {
  /** Width of the context (keys/values input); default: `queryDim` (self attention). */
  crossAttentionDim?: number;
  /** Whether `to_q`/`to_k`/`to_v` have biases (false in the UNet, true in the VAE). */
  qkvBias?: boolean;
  /** Largest attention score chunk in bytes (see `attention` of @ddsjs/nn). */
  byteBudget?: number;
}

/**
 * diffusers' `Attention` (the projections only): `to_q`, `to_k`, `to_v`, `to_out.0`, multi-head
 * scaled dot-product attention with `heads` heads of `innerDim / heads` channels.
 */
export class Attention extends Module {
  readonly toQ: Linear;
  readonly toK: Linear;
  readonly toV: Linear;
  readonly toOut: Linear;
  byteBudget: number | undefined;
  constructor(
    readonly queryDim: number,
    readonly heads: number,
    readonly innerDim: number,
    options: AttentionModuleOptions = {},
  ) {
    super();
    const ctxDim = options.crossAttentionDim ?? queryDim;
    const bias = options.qkvBias ?? false;
    this.toQ = this.child('to_q', new Linear(queryDim, innerDim, bias));
    this.toK = this.child('to_k', new Linear(ctxDim, innerDim, bias));
    this.toV = this.child('to_v', new Linear(ctxDim, innerDim, bias));
    [this.toOut] = this.list('to_out', [new Linear(innerDim, queryDim)]);
    this.byteBudget = options.byteBudget;
  }

  /** `x[B,N,queryDim]`, optional `context[B,M,ctxDim]` (default `x`) → `[B,N,queryDim]`. Caller owns the result. */
  forward(x: tf.Tensor3D, context?: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      const ctx = context ?? x;
      if (ctx.shape[0] !== x.shape[0]) {
        throw new InvalidArgumentError(`Attention: context batch ${ctx.shape[0]} does not match the input batch ${x.shape[0]}`);
      }
      const q = this.toQ.forward(x) as tf.Tensor3D;
      const k = this.toK.forward(ctx) as tf.Tensor3D;
      const v = this.toV.forward(ctx) as tf.Tensor3D;
      const o = attention(q, k, v, { heads: this.heads, byteBudget: this.byteBudget ?? DEFAULT_ATTENTION_BYTE_BUDGET });
      return chain(o, (t) => this.toOut.forward(t) as tf.Tensor3D);
    });
  }
}


/** diffusers' `FeedForward` with GEGLU: `net.0` = GEGLU(dim, 4·dim), `net.2` = Linear(4·dim, dim). */
export class FeedForward extends Module {
  readonly geglu: GEGLU;
  readonly out: Linear;
  constructor(dim: number, mult = 4) {
    super();
    const inner = dim * mult;
    this.geglu = new GEGLU(dim, inner);
    this.out = new Linear(inner, dim);
    this.child('net', new NetList(this.geglu, this.out));
  }

  /** `x[..., dim]` → `[..., dim]`. Caller owns the result. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.out.forward(this.geglu.forward(x)));
  }
}

/** `net` of FeedForward: index 0 (GEGLU) and 2 (Linear); index 1 is a parameterless dropout. */
class NetList extends Module {
  constructor(a: Module, b: Module) {
    super();
    this.child('0', a);
    this.child('2', b);
  }
}

/**
 * diffusers' `BasicTransformerBlock` (layer-norm variant): self attention `attn1`, cross attention
 * `attn2` on the context, GEGLU feed-forward `ff`, each pre-normed (`norm1..3`, LayerNorm eps 1e-5) with a residual.
 */
export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm;
  readonly attn2: Attention;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  constructor(dim: number, heads: number, crossAttentionDim: number) {
    super();
    this.norm1 = this.child('norm1', new LayerNorm(dim, 1e-5));
    this.attn1 = this.child('attn1', new Attention(dim, heads, dim));
    this.norm2 = this.child('norm2', new LayerNorm(dim, 1e-5));
    this.attn2 = this.child('attn2', new Attention(dim, heads, dim, { crossAttentionDim }));
    this.norm3 = this.child('norm3', new LayerNorm(dim, 1e-5));
    this.ff = this.child('ff', new FeedForward(dim));
  }

  /** `x[B,N,dim]`, `context[B,M,crossDim]` → `[B,N,dim]`. Caller owns the result. */
  forward(x: tf.Tensor3D, context: tf.Tensor3D): tf.Tensor3D {
    return tf.tidy(() => {
      // h + f(h), disposing f(h) and (when this block owns it) h right after use.
      const residual = (h: tf.Tensor3D, f: (t: tf.Tensor3D) => tf.Tensor3D, own: boolean): tf.Tensor3D => {
        const y = chain(f(h), (t) => tf.add(t, h) as tf.Tensor3D);
        if (own) h.dispose();
        return y;
      };
      let h = residual(x, (t) => chain(this.norm1.forward(t), (n) => this.attn1.forward(n)), false);
      h = residual(h, (t) => chain(this.norm2.forward(t), (n) => this.attn2.forward(n, context)), true);
      return residual(h, (t) => chain(this.norm3.forward(t), (n) => this.ff.forward(n) as tf.Tensor3D), true);
    });
  }
}

/**
 * diffusers' `Transformer2DModel` (continuous input): GroupNorm (eps 1e-6) → `proj_in` (1×1 conv, or
 * Linear with `useLinearProjection`) → `transformer_blocks` → `proj_out`, plus the input.
 */
export class Transformer2DModel extends Module {
  readonly norm: GroupNorm;
  readonly projIn: Linear | Conv2d;
  readonly blocks: BasicTransformerBlock[];
  readonly projOut: Linear | Conv2d;
  constructor(
    readonly channels: number,
    heads: number,
    crossAttentionDim: number,
    layers: number,
    groups: number,
    useLinearProjection: boolean,
  ) {
    super();
    this.norm = this.child('norm', new GroupNorm(groups, channels, 1e-6));
    this.projIn = this.child('proj_in', useLinearProjection ? new Linear(channels, channels) : new Conv2d(channels, channels, 1));
    this.blocks = this.list(
      'transformer_blocks',
      Array.from({ length: layers }, () => new BasicTransformerBlock(channels, heads, crossAttentionDim)),
    );
    this.projOut = this.child('proj_out', useLinearProjection ? new Linear(channels, channels) : new Conv2d(channels, channels, 1));
  }

  /** `x[B,H,W,C]`, `context[B,M,crossDim]` → `[B,H,W,C]`. Caller owns the result. */
  forward(x: tf.Tensor4D, context: tf.Tensor3D): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      // A 1×1 conv and a Linear are the same matMul over the channel axis in NHWC.
      const n = this.norm.forward(x);
      let t = chain(n, (y) => applyPointwise(this.projIn, y)).reshape([b, h * w, c]) as tf.Tensor3D;
      for (const blk of this.blocks) t = chain(t, (y) => blk.forward(y, context));
      const out = chain(t, (y) => applyPointwise(this.projOut, y.reshape([b, h, w, c]) as tf.Tensor4D));
      return chain(out, (y) => tf.add(y, x) as tf.Tensor4D);
    });
  }
}

function applyPointwise(m: Linear | Conv2d, x: tf.Tensor4D): tf.Tensor4D {
  return m instanceof Conv2d ? m.forward(x) : (m.forward(x) as tf.Tensor4D);
}

/**
 * The VAE mid-block attention (diffusers `Attention` built with `_from_deprecated_attn_block`): one head
 * over all channels, `group_norm` (eps 1e-6) → `to_q/to_k/to_v` (with bias) → softmax attention over
 * the H·W positions → `to_out.0`, plus the input.
 */
export class SpatialSelfAttention extends Module {
  readonly groupNorm: GroupNorm;
  readonly attn: Attention;
  constructor(
    readonly channels: number,
    groups: number,
    eps: number,
    heads = 1,
  ) {
    super();
    this.groupNorm = this.child('group_norm', new GroupNorm(groups, channels, eps));
    this.attn = new Attention(channels, heads, channels, { qkvBias: true });
    // Flatten the projections into this module so keys are `to_q.weight`, not `attn.to_q.weight`.
    this.child('to_q', this.attn.toQ);
    this.child('to_k', this.attn.toK);
    this.child('to_v', this.attn.toV);
    this.list('to_out', [this.attn.toOut]);
  }

  /** `x[B,H,W,C]` → `[B,H,W,C]`. Caller owns the result. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      const t = this.groupNorm.forward(x).reshape([b, h * w, c]) as tf.Tensor3D;
      const a = chain(t, (y) => this.attn.forward(y));
      return chain(a, (y) => tf.add(y.reshape([b, h, w, c]), x) as tf.Tensor4D);
    });
  }
}

/**
 * Sets `byteBudget` (largest attention score chunk in bytes; `undefined` = the nn default) on every
 * {@link Attention} below `root`, including the VAE's {@link SpatialSelfAttention}s. Returns how many were set.
 */
export function setAttentionByteBudget(root: Module, bytes: number | undefined): number {
  if (bytes !== undefined && !(bytes > 0)) throw new InvalidArgumentError(`setAttentionByteBudget: bytes must be positive, got ${bytes}`);
  let n = 0;
  const visit = (m: Module): void => {
    if (m instanceof Attention) {
      m.byteBudget = bytes;
      n++;
    } else if (m instanceof SpatialSelfAttention) {
      m.attn.byteBudget = bytes;
      n++;
      return;
    }
    for (const [, c] of m.namedChildren()) visit(c);
  };
  visit(root);
  return n;
}

/**
 * Keeps a module's weights in JavaScript memory (float32, tfjs layout) instead of backend memory, and
 * materialises them one sub-module at a time around its forward ({@link WeightOffload.use}). This is what
 * lets SD 1.5's 3.4 GB fp32 UNet run on the wasm backend, whose heap is capped at 4 GB: with all weights
 * resident the first forward aborts. The cost is one copy of the weights into the backend per forward
 * (about a second for SD 1.5), small next to the forward itself. Offloaded weights are for inference
 * (frozen models such as the DDS teacher): gradients w.r.t. inputs still flow, optimisers cannot update them.
 */
export class WeightOffload {
  private readonly store = new Map<Parameter, Float32Array>();
  private constructor(private readonly root: Module) {}

  /**
   * Loads `root`'s weights from `source` straight into JavaScript memory, with the strict key/shape
   * checks and layout conversion of `Module.loadStateDict`; at most one tensor is in backend memory at once.
   */
  static async load(root: Module, source: StateDictSource, options: LoadStateDictOptions = {}): Promise<WeightOffload> {
    const off = new WeightOffload(root);
    const byName = new Map(root.namedParameters());
    let pending: Parameter | null = null;
    const flush = async (): Promise<void> => {
      if (pending) await off.take(pending);
      pending = null;
    };
    await root.loadStateDict(
      { keys: () => source.keys(), shape: (k) => source.shape(k), read: async (k) => (await flush(), source.read(k)) },
      {
        ...options,
        onTensor: (key, i, total) => {
          pending = byName.get(key) ?? null;
          options.onTensor?.(key, i, total);
        },
      },
    );
    await flush();
    return off;
  }

  /** Moves the current (loaded or initialised) weights of `root` into JavaScript memory. */
  static async fromModule(root: Module): Promise<WeightOffload> {
    const off = new WeightOffload(root);
    for (const [, p] of root.namedParameters()) if (p.isSet) await off.take(p);
    return off;
  }

  private async take(p: Parameter): Promise<void> {
    this.store.set(p, (await p.value.data()) as Float32Array);
    p.dispose();
  }

  /** Bytes held in JavaScript memory. */
  get bytes(): number {
    let n = 0;
    for (const d of this.store.values()) n += d.byteLength;
    return n;
  }

  /**
   * Runs `f` with the weights of `m` (a sub-module of the offloaded root) in backend memory, freeing them
   * afterwards. Synchronous, so it can run inside `tf.tidy`.
   */
  use<T>(m: Module, f: () => T): T {
    const loaded: Parameter[] = [];
    try {
      for (const [, p] of m.namedParameters()) {
        const d = this.store.get(p);
        if (!d || p.isSet) continue;
        const t = tf.tensor(d, [...p.shape], 'float32');
        p.set(t);
        t.dispose();
        loaded.push(p);
      }
      return f();
    } finally {
      for (const p of loaded) p.dispose();
    }
  }

  /** Puts every weight back into backend memory (the module then works without this object). */
  restore(): void {
    for (const [p, d] of this.store) {
      if (p.isSet) continue;
      const t = tf.tensor(d, [...p.shape], 'float32');
      p.set(t);
      t.dispose();
    }
    this.store.clear();
  }

  /** The module whose weights this holds. */
  get module(): Module {
    return this.root;
  }
}
