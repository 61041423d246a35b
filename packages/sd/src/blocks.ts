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
  residual,
  sequential,
  silu,
  StateDictSource,
  upsampleNearest,
} from '@ddsjs/nn';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/**
 * diffusers' `get_timestep_embedding`: sinusoidal embedding of `timesteps[B]` → `[B, dim]`, with
 * frequencies `exp(-ln(maxPeriod)·i/(half − freqShift))` computed in float32 exactly as PyTorch does, and
 * `[sin, cos]` swapped to `[cos, sin]` when `flipSinToCos`.
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

/** diffusers' `TimestepEmbedding`: `linear_2(silu(linear_1(x)))`. Keys `linear_1`, `linear_2`. */
export class TimestepEmbedding extends Module {
  readonly linear1: Linear;
  readonly linear2: Linear;
  constructor(inChannels: number, timeEmbedDim: number) {
    super();
    this.linear1 = this.child('linear_1', new Linear(inChannels, timeEmbedDim));
    this.linear2 = this.child('linear_2', new Linear(timeEmbedDim, timeEmbedDim));
  }

  /** `x[B, in]` → `[B, timeEmbedDim]`. */
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return sequential(x, this.linear1, silu, this.linear2);
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
   * `time_emb_proj`) → `[B,H,W,out]`.
   */
  forward(x: tf.Tensor4D, temb: tf.Tensor2D | null = null): tf.Tensor4D {
    if (this.timeEmbProj && !temb) throw new InvalidArgumentError('ResnetBlock2D: this block needs a time embedding');
    const te = this.timeEmbProj && temb ? this.timeEmbProj.call(silu(temb)).reshape([temb.shape[0], 1, 1, this.outChannels]) : null;
    return sequential(
      x,
      (h) => residual(h, [this.norm1, silu, this.conv1, te && ((t) => tf.add(t, te)), this.norm2, silu, this.conv2], this.convShortcut),
      this.outputScaleFactor !== 1 && ((h) => tf.div(h, this.outputScaleFactor)),
    );
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

  /** `x[B,H,W,C]` → `[B,H',W',C]`. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return this.conv.call(x);
  }
}

/** diffusers' `Upsample2D` with a conv: nearest ×2 (or to `size`), then 3×3 conv. Key: `conv`. */
export class Upsample2D extends Module {
  readonly conv: Conv2d;
  constructor(channels: number) {
    super();
    this.conv = this.child('conv', new Conv2d(channels, channels, 3, { padding: 1 }));
  }

  /** `x[B,H,W,C]` → `[B,2H,2W,C]` (or `[B,size[0],size[1],C]`). */
  forward(x: tf.Tensor4D, size?: [number, number]): tf.Tensor4D {
    return sequential(x, (h) => upsampleNearest(h, size), this.conv);
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

  /** `x[B,N,queryDim]`, optional `context[B,M,ctxDim]` (default `x`) → `[B,N,queryDim]`. */
  forward(x: tf.Tensor3D, context?: tf.Tensor3D): tf.Tensor3D {
    const ctx = context ?? x;
    if (ctx.shape[0] !== x.shape[0]) {
      throw new InvalidArgumentError(`Attention: context batch ${ctx.shape[0]} does not match the input batch ${x.shape[0]}`);
    }
    const [q, k, v] = [this.toQ.call(x), this.toK.call(ctx), this.toV.call(ctx)] as tf.Tensor3D[];
    const o = attention(q, k, v, { heads: this.heads, byteBudget: this.byteBudget ?? DEFAULT_ATTENTION_BYTE_BUDGET });
    return this.toOut.call(o) as tf.Tensor3D;
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

  /** `x[..., dim]` → `[..., dim]`. */
  forward(x: tf.Tensor): tf.Tensor {
    return sequential(x, this.geglu, this.out);
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

  /** `x[B,N,dim]`, `context[B,M,crossDim]` → `[B,N,dim]`. */
  forward(x: tf.Tensor3D, context: tf.Tensor3D): tf.Tensor3D {
    return sequential(
      x,
      (h) => residual(h, [this.norm1, this.attn1]),
      (h) => residual(h, [this.norm2, (n) => this.attn2.call(n, context)]),
      (h) => residual(h, [this.norm3, this.ff]),
    );
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

  /** `x[B,H,W,C]`, `context[B,M,crossDim]` → `[B,H,W,C]`. */
  forward(x: tf.Tensor4D, context: tf.Tensor3D): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    // A 1×1 conv and a Linear (proj_in / proj_out) are the same matMul over the channel axis in NHWC.
    return residual<tf.Tensor>(x, [
      this.norm,
      this.projIn,
      (t) => t.reshape([b, h * w, c]),
      ...this.blocks.map((blk) => (t: tf.Tensor) => blk.call(t as tf.Tensor3D, context)),
      (t) => t.reshape([b, h, w, c]),
      this.projOut,
    ]) as tf.Tensor4D;
  }
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

  /** `x[B,H,W,C]` → `[B,H,W,C]`. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    const [b, h, w, c] = x.shape;
    return residual<tf.Tensor>(x, [
      this.groupNorm,
      (t) => t.reshape([b, h * w, c]),
      this.attn,
      (t) => t.reshape([b, h, w, c]),
    ]) as tf.Tensor4D;
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
