// diffusers' UNet2DConditionModel (SD 1.x / 2.x), NHWC.
import * as tf from '@tensorflow/tfjs';
import { Conv2d, GroupNorm, LoadStateDictOptions, Module, sequential, silu, StateDictSource, WeightOffload } from '@ddsjs/nn';
import { Downsample2D, ResnetBlock2D, setAttentionByteBudget, TimestepEmbedding, timestepEmbedding, Transformer2DModel, Upsample2D } from './blocks';
import { UNet2DConditionConfig } from './config';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** Timesteps accepted by {@link UNet2DConditionModel.forward}: one for the whole batch, or one per sample. */
export type TimestepInput = number | number[] | tf.Tensor;

/** Common shape of the down blocks: returns the hidden state and the skip tensors it contributes. */
interface DownBlock {
  forward(x: tf.Tensor4D, temb: tf.Tensor2D, context: tf.Tensor3D): { hidden: tf.Tensor4D; skips: tf.Tensor4D[] };
}

/** Common shape of the up blocks: consume skip tensors (last first), optionally upsample to `size`. */
interface UpBlock {
  readonly numResnets: number;
  readonly hasUpsampler: boolean;
  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, context: tf.Tensor3D, size?: [number, number]): tf.Tensor4D;
}

/** Sizes shared by the UNet block constructors (one block's resolved config). */
export interface UNetBlockArgs {
  inChannels: number;
  outChannels: number;
  tembChannels: number;
  numLayers: number;
  groups: number;
  eps: number;
  heads: number;
  crossAttentionDim: number;
  transformerLayers: number;
  useLinearProjection: boolean;
}

/** diffusers' `CrossAttnDownBlock2D` / `DownBlock2D` (`withAttention` false): resnets (+ attentions), then an optional downsampler. */
export class UNetDownBlock extends Module implements DownBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly downsampler: Downsample2D | null;
  constructor(a: UNetBlockArgs, withAttention: boolean, addDownsample: boolean, downsamplePadding: number) {
    super();
    this.resnets = this.list(
      'resnets',
      Array.from({ length: a.numLayers }, (_, i) =>
        new ResnetBlock2D(i === 0 ? a.inChannels : a.outChannels, a.outChannels, a.tembChannels, a.groups, a.eps),
      ),
    );
    this.attentions = withAttention
      ? this.list(
          'attentions',
          Array.from({ length: a.numLayers }, () =>
            new Transformer2DModel(a.outChannels, a.heads, a.crossAttentionDim, a.transformerLayers, a.groups, a.useLinearProjection),
          ),
        )
      : null;
    this.downsampler = addDownsample ? this.list('downsamplers', [new Downsample2D(a.outChannels, downsamplePadding)])[0] : null;
  }

  /** Returns the hidden state and the skip tensors (one per resnet, plus the downsampled one; `hidden` is the last). */
  forward(x: tf.Tensor4D, temb: tf.Tensor2D, context: tf.Tensor3D): { hidden: tf.Tensor4D; skips: tf.Tensor4D[] } {
    const skips: tf.Tensor4D[] = [];
    let h = x;
    for (let i = 0; i < this.resnets.length; i++) {
      h = sequential(h, (t) => this.resnets[i].call(t, temb), this.attentions && ((t) => this.attentions![i].call(t, context)));
      skips.push(h);
    }
    if (this.downsampler) {
      h = this.downsampler.call(h);
      skips.push(h);
    }
    return { hidden: h, skips };
  }
}

/** diffusers' `CrossAttnUpBlock2D` / `UpBlock2D`: resnets on `concat(h, skip)` (+ attentions), then an optional upsampler. */
export class UNetUpBlock extends Module implements UpBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[] | null;
  readonly upsampler: Upsample2D | null;
  /**
   * `a.inChannels` is the block's skip-side input width (diffusers' `in_channels`), `prevOutputChannels`
   * the width of the hidden state coming from below.
   */
  constructor(a: UNetBlockArgs, prevOutputChannels: number, withAttention: boolean, addUpsample: boolean) {
    super();
    const n = a.numLayers;
    this.resnets = this.list(
      'resnets',
      Array.from({ length: n }, (_, i) => {
        const skipC = i === n - 1 ? a.inChannels : a.outChannels;
        const inC = i === 0 ? prevOutputChannels : a.outChannels;
        return new ResnetBlock2D(inC + skipC, a.outChannels, a.tembChannels, a.groups, a.eps);
      }),
    );
    this.attentions = withAttention
      ? this.list(
          'attentions',
          Array.from({ length: n }, () =>
            new Transformer2DModel(a.outChannels, a.heads, a.crossAttentionDim, a.transformerLayers, a.groups, a.useLinearProjection),
          ),
        )
      : null;
    this.upsampler = addUpsample ? this.list('upsamplers', [new Upsample2D(a.outChannels)])[0] : null;
  }

  /** Number of resnets, i.e. of skip tensors the block consumes. */
  get numResnets(): number {
    return this.resnets.length;
  }

  /** Whether the block ends with an upsampler. */
  get hasUpsampler(): boolean {
    return this.upsampler !== null;
  }

  /** `skips` holds exactly `numResnets` tensors, consumed last first (not disposed: they are the caller's). */
  forward(x: tf.Tensor4D, skips: tf.Tensor4D[], temb: tf.Tensor2D, context: tf.Tensor3D, size?: [number, number]): tf.Tensor4D {
    if (skips.length !== this.resnets.length) {
      throw new InvalidArgumentError(`UNetUpBlock: expected ${this.resnets.length} skip tensors, got ${skips.length}`);
    }
    const n = this.resnets.length;
    return sequential(
      x,
      ...this.resnets.flatMap((resnet, i) => [
        (h: tf.Tensor4D) => tf.concat([h, skips[n - 1 - i]], 3),
        (h: tf.Tensor4D) => resnet.call(h, temb),
        this.attentions && ((h: tf.Tensor4D) => this.attentions![i].call(h, context)),
      ]),
      this.upsampler && ((h) => this.upsampler!.call(h, size)),
    );
  }
}

/** diffusers' `UNetMidBlock2DCrossAttn`: resnet, then (attention, resnet) × layers (1). */
export class UNetMidBlock2DCrossAttn extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  constructor(a: UNetBlockArgs, outputScaleFactor: number) {
    super();
    const c = a.inChannels;
    this.resnets = this.list(
      'resnets',
      Array.from({ length: 2 }, () => new ResnetBlock2D(c, c, a.tembChannels, a.groups, a.eps, outputScaleFactor)),
    );
    this.attentions = this.list('attentions', [
      new Transformer2DModel(c, a.heads, a.crossAttentionDim, a.transformerLayers, a.groups, a.useLinearProjection),
    ]);
  }

  /** `x[B,H,W,C]` → same shape. */
  forward(x: tf.Tensor4D, temb: tf.Tensor2D, context: tf.Tensor3D): tf.Tensor4D {
    return sequential(
      x,
      (h) => this.resnets[0].call(h, temb),
      ...this.attentions.flatMap((attn, i) => [(h: tf.Tensor4D) => attn.call(h, context), (h: tf.Tensor4D) => this.resnets[i + 1].call(h, temb)]),
    );
  }
}

/**
 * Intermediate activations of one UNet call (NHWC), as the golden README defines them: `time_proj`,
 * `time_embedding`, `conv_in`, `down_block_i` (hidden state after down block i), `mid_block`, `up_block_i`.
 */
export type UNetIntermediates = Record<string, tf.Tensor>;

/**
 * diffusers' `UNet2DConditionModel` for SD 1.x/2.x configs, on NHWC tensors. Module paths equal the
 * diffusers checkpoint keys, so `loadStateDict(source)` loads `unet/diffusion_pytorch_model.safetensors`.
 */
export class UNet2DConditionModel extends Module {
  readonly convIn: Conv2d;
  readonly timeEmbedding: TimestepEmbedding;
  readonly downBlocks: UNetDownBlock[];
  readonly midBlock: UNetMidBlock2DCrossAttn;
  readonly upBlocks: UNetUpBlock[];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;

  constructor(readonly config: UNet2DConditionConfig) {
    super();
    const c = config;
    const boc = c.blockOutChannels;
    const n = boc.length;
    const temb = c.timeEmbedDim;
    this.convIn = this.child('conv_in', new Conv2d(c.inChannels, boc[0], c.convInKernel, { padding: (c.convInKernel - 1) / 2 }));
    this.timeEmbedding = this.child('time_embedding', new TimestepEmbedding(boc[0], temb));

    const common = { tembChannels: temb, groups: c.normNumGroups, eps: c.normEps, useLinearProjection: c.useLinearProjection };
    const downs: UNetDownBlock[] = [];
    let outC = boc[0];
    for (let i = 0; i < n; i++) {
      const inC = outC;
      outC = boc[i];
      downs.push(
        new UNetDownBlock(
          {
            ...common,
            inChannels: inC,
            outChannels: outC,
            numLayers: c.layersPerBlock[i],
            heads: c.numAttentionHeads[i],
            crossAttentionDim: c.crossAttentionDim[i],
            transformerLayers: c.transformerLayersPerBlock[i],
          },
          c.downBlockTypes[i] === 'CrossAttnDownBlock2D',
          i < n - 1,
          c.downsamplePadding,
        ),
      );
    }
    this.downBlocks = this.list('down_blocks', downs);

    this.midBlock = this.child(
      'mid_block',
      new UNetMidBlock2DCrossAttn(
        {
          ...common,
          inChannels: boc[n - 1],
          outChannels: boc[n - 1],
          numLayers: 1,
          heads: c.numAttentionHeads[n - 1],
          crossAttentionDim: c.crossAttentionDim[n - 1],
          transformerLayers: c.transformerLayersPerBlock[n - 1],
        },
        c.midBlockScaleFactor,
      ),
    );

    const rBoc = [...boc].reverse();
    const rHeads = [...c.numAttentionHeads].reverse();
    const rLayers = [...c.layersPerBlock].reverse();
    const rCross = [...c.crossAttentionDim].reverse();
    const rTrans = c.reverseTransformerLayersPerBlock ?? [...c.transformerLayersPerBlock].reverse();
    const ups: UNetUpBlock[] = [];
    let prevOut = rBoc[0];
    for (let i = 0; i < n; i++) {
      const out = rBoc[i];
      const inC = rBoc[Math.min(i + 1, n - 1)];
      ups.push(
        new UNetUpBlock(
          {
            ...common,
            inChannels: inC,
            outChannels: out,
            numLayers: rLayers[i] + 1,
            heads: rHeads[i],
            crossAttentionDim: rCross[i],
            transformerLayers: rTrans[i],
          },
          prevOut,
          c.upBlockTypes[i] === 'CrossAttnUpBlock2D',
          i < n - 1,
        ),
      );
      prevOut = out;
    }
    this.upBlocks = this.list('up_blocks', ups);
    this.convNormOut = this.child('conv_norm_out', new GroupNorm(c.normNumGroups, boc[0], c.normEps));
    this.convOut = this.child('conv_out', new Conv2d(boc[0], c.outChannels, c.convOutKernel, { padding: (c.convOutKernel - 1) / 2 }));
  }

  private offload: WeightOffload | null = null;

  /**
   * Loads the weights like `loadStateDict` (same strict checks) but keeps them in JavaScript memory and
   * streams them into the backend one block at a time during each forward (see {@link WeightOffload}).
   * Needed for SD 1.5/2.x (3.4 GB fp32) on the wasm backend, whose heap is capped at 4 GB.
   */
  async loadStateDictOffloaded(source: StateDictSource, options: LoadStateDictOptions = {}): Promise<void> {
    this.offload?.restore();
    this.offload = null;
    this.offload = await WeightOffload.load(this, source, options);
  }

  /** Moves already-loaded weights into JavaScript memory (as {@link loadStateDictOffloaded}); `false` moves them back. */
  async setOffloaded(offloaded: boolean): Promise<void> {
    if (offloaded && !this.offload) this.offload = await WeightOffload.fromModule(this);
    if (!offloaded && this.offload) {
      this.offload.restore();
      this.offload = null;
    }
  }

  /** Whether the weights live in JavaScript memory between forwards. */
  get isOffloaded(): boolean {
    return this.offload !== null;
  }

  /** Frees the weights (backend and offloaded). The model cannot be used afterwards. */
  override dispose(): void {
    this.offload = null;
    super.dispose();
  }

  /** Runs `f` with `m`'s weights resident (a no-op wrapper unless offloaded). */
  private use<T>(m: Module, f: () => T): T {
    return this.offload ? this.offload.use(m, f) : f();
  }

  /**
   * Sets the largest attention score chunk (bytes) of every attention layer (default: @ddsjs/nn's
   * `DEFAULT_ATTENTION_BYTE_BUDGET`); smaller values lower peak memory at 64×64 latents.
   */
  setAttentionByteBudget(bytes: number | undefined): this {
    setAttentionByteBudget(this, bytes);
    return this;
  }

  /**
   * Predicts the model output (ε or v) for `sample[B,h,w,in]` (NHWC) at `timestep` (a number or a
   * 0-d/1-element tensor for the whole batch, or one per sample) under `context[B,M,crossDim]` (the text
   * encoder's last_hidden_state). Any latent size is accepted, non-square included. Returns `[B,h,w,out]`.
   */
  forward(sample: tf.Tensor4D, timestep: TimestepInput, context: tf.Tensor3D): tf.Tensor4D {
    return tf.tidy(() => this.run(sample, timestep, context, null));
  }

  /**
   * As {@link forward}, also returning the intermediates of {@link UNetIntermediates} (NHWC; the caller's, as `out`).
   */
  forwardWithIntermediates(
    sample: tf.Tensor4D,
    timestep: TimestepInput,
    context: tf.Tensor3D,
  ): { out: tf.Tensor4D; debug: UNetIntermediates } {
    const debug: UNetIntermediates = {};
    const out = tf.tidy(() => {
      const o = this.run(sample, timestep, context, debug);
      for (const t of Object.values(debug)) tf.keep(t);
      return o;
    });
    return { out, debug };
  }

  private run(sample: tf.Tensor4D, timestep: TimestepInput, context: tf.Tensor3D, debug: UNetIntermediates | null): tf.Tensor4D {
    const c = this.config;
    if (sample.rank !== 4 || sample.shape[3] !== c.inChannels) {
      throw new InvalidArgumentError(`UNet2DConditionModel.forward: sample must be NHWC [B,h,w,${c.inChannels}], got [${sample.shape}]`);
    }
    const b = sample.shape[0];
    const crossDim = c.crossAttentionDim[0];
    if (context.rank !== 3 || context.shape[0] !== b) {
      throw new InvalidArgumentError(`UNet2DConditionModel.forward: context must be [${b},M,${crossDim}] (one per sample), got [${context.shape}]`);
    }
    if (c.crossAttentionDim.some((d) => d !== context.shape[2])) {
      throw new InvalidArgumentError(`UNet2DConditionModel.forward: context width ${context.shape[2]} does not match cross_attention_dim ${c.crossAttentionDim} of ${c.file}`);
    }
    const ts = timestepTensor(timestep, b);
    const tProj = timestepEmbedding(ts, c.blockOutChannels[0], c.flipSinToCos, c.freqShift);
    const emb = this.use(this.timeEmbedding, () => this.timeEmbedding.call(tProj));
    if (debug) {
      debug.time_proj = tProj;
      debug.time_embedding = emb;
    }

    // diffusers' forward_upsample_size: sizes that don't divide by 2^(#upsamplers) upsample to the skip's size.
    const numUp = this.upBlocks.filter((u) => u.hasUpsampler).length;
    const factor = 2 ** numUp;
    const forwardUpsampleSize = sample.shape[1] % factor !== 0 || sample.shape[2] % factor !== 0;

    let x = c.centerInputSample ? (tf.sub(tf.mul(sample, 2), 1) as tf.Tensor4D) : sample;
    x = this.use(this.convIn, () => this.convIn.call(x));
    if (debug) debug.conv_in = x;
    const skips: tf.Tensor4D[] = [x];
    this.downBlocks.forEach((blk, i) => {
      const r = this.use(blk, () => blk.call(x, emb, context));
      x = r.hidden;
      skips.push(...r.skips);
      if (debug) debug[`down_block_${i}`] = x;
    });
    x = this.use(this.midBlock, () => this.midBlock.call(x, emb, context));
    if (debug) debug.mid_block = x;
    this.upBlocks.forEach((blk, i) => {
      const res = skips.splice(skips.length - blk.numResnets, blk.numResnets);
      let size: [number, number] | undefined;
      if (blk.hasUpsampler && forwardUpsampleSize) {
        const next = skips[skips.length - 1];
        size = [next.shape[1], next.shape[2]];
      }
      const prev = x;
      x = this.use(blk, () => blk.call(x, res, emb, context, size));
      // The block's input and the skips it consumed are dead from here (unless kept as intermediates).
      if (!debug) tf.dispose([prev, ...res]);
      if (debug) debug[`up_block_${i}`] = x;
    });
    return sequential(
      x,
      (h) => this.use(this.convNormOut, () => this.convNormOut.call(h)),
      silu,
      (h) => this.use(this.convOut, () => this.convOut.call(h)),
    );
  }
}

/** Turns a timestep input into a float32 `[B]` tensor (broadcasting one value to the batch). */
function timestepTensor(t: TimestepInput, batch: number): tf.Tensor1D {
  if (typeof t === 'number') {
    if (!Number.isFinite(t)) throw new InvalidArgumentError(`UNet2DConditionModel.forward: timestep must be finite, got ${t}`);
    return tf.fill([batch], t, 'float32') as tf.Tensor1D;
  }
  if (Array.isArray(t)) {
    if (t.length !== 1 && t.length !== batch) {
      throw new InvalidArgumentError(`UNet2DConditionModel.forward: ${t.length} timesteps given for a batch of ${batch} (give 1 or ${batch})`);
    }
    return tf.tensor1d(t.length === 1 ? new Array<number>(batch).fill(t[0]) : t, 'float32');
  }
  const flat = tf.cast(t.reshape([-1]), 'float32') as tf.Tensor1D;
  if (flat.shape[0] === batch) return flat;
  if (flat.shape[0] === 1) return tf.tile(flat, [batch]);
  throw new InvalidArgumentError(`UNet2DConditionModel.forward: timestep tensor of shape [${t.shape}] for a batch of ${batch} (give 1 or ${batch} values)`);
}
