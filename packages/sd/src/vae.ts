// diffusers' AutoencoderKL (SD 1.x/2.x VAE), NHWC.
import * as tf from '@tensorflow/tfjs';
import { Conv2d, GroupNorm, Module, sequential, silu, StateDictSource } from '@ddsjs/nn';
import { Downsample2D, ResnetBlock2D, setAttentionByteBudget, SpatialSelfAttention, Upsample2D } from './blocks';
import { AutoencoderKLConfig } from './config';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** GroupNorm epsilon used everywhere in diffusers' VAE. */
const VAE_EPS = 1e-6;

/** diffusers' `DownEncoderBlock2D`: resnets (no time embedding), then an optional (0,1,0,1)-padded downsampler. */
export class DownEncoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly downsampler: Downsample2D | null;
  constructor(inChannels: number, outChannels: number, numLayers: number, groups: number, addDownsample: boolean) {
    super();
    this.resnets = this.list(
      'resnets',
      Array.from({ length: numLayers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, null, groups, VAE_EPS)),
    );
    this.downsampler = addDownsample ? this.list('downsamplers', [new Downsample2D(outChannels, 0)])[0] : null;
  }

  /** `x[B,H,W,in]` → `[B,H',W',out]`. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return sequential(x, ...this.resnets, this.downsampler);
  }
}

/** diffusers' `UpDecoderBlock2D`: resnets (no time embedding), then an optional nearest ×2 + conv upsampler. */
export class UpDecoderBlock2D extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly upsampler: Upsample2D | null;
  constructor(inChannels: number, outChannels: number, numLayers: number, groups: number, addUpsample: boolean) {
    super();
    this.resnets = this.list(
      'resnets',
      Array.from({ length: numLayers }, (_, i) => new ResnetBlock2D(i === 0 ? inChannels : outChannels, outChannels, null, groups, VAE_EPS)),
    );
    this.upsampler = addUpsample ? this.list('upsamplers', [new Upsample2D(outChannels)])[0] : null;
  }

  /** `x[B,H,W,in]` → `[B,H',W',out]`. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return sequential(x, ...this.resnets, this.upsampler);
  }
}

/** diffusers' `UNetMidBlock2D` as the VAE uses it: resnet, (single-head spatial attention), resnet. */
export class VaeMidBlock extends Module {
  readonly resnets: ResnetBlock2D[];
  readonly attention: SpatialSelfAttention | null;
  constructor(channels: number, groups: number, addAttention: boolean) {
    super();
    this.resnets = this.list('resnets', [
      new ResnetBlock2D(channels, channels, null, groups, VAE_EPS),
      new ResnetBlock2D(channels, channels, null, groups, VAE_EPS),
    ]);
    this.attention = addAttention ? this.list('attentions', [new SpatialSelfAttention(channels, groups, VAE_EPS)])[0] : null;
  }

  /** `x[B,H,W,C]` → same shape. */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return sequential(x, this.resnets[0], this.attention, this.resnets[1]);
  }
}

/** diffusers' VAE `Encoder`: conv_in, down blocks, mid block, norm, silu, conv_out → 2 × latent channels. */
export class Encoder extends Module {
  readonly convIn: Conv2d;
  readonly downBlocks: DownEncoderBlock2D[];
  readonly midBlock: VaeMidBlock;
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;
  constructor(c: AutoencoderKLConfig) {
    super();
    const boc = c.blockOutChannels;
    const n = boc.length;
    this.convIn = this.child('conv_in', new Conv2d(c.inChannels, boc[0], 3, { padding: 1 }));
    this.downBlocks = this.list(
      'down_blocks',
      boc.map((out, i) => new DownEncoderBlock2D(i === 0 ? boc[0] : boc[i - 1], out, c.layersPerBlock, c.normNumGroups, i < n - 1)),
    );
    this.midBlock = this.child('mid_block', new VaeMidBlock(boc[n - 1], c.normNumGroups, c.midBlockAddAttention));
    this.convNormOut = this.child('conv_norm_out', new GroupNorm(c.normNumGroups, boc[n - 1], VAE_EPS));
    this.convOut = this.child('conv_out', new Conv2d(boc[n - 1], 2 * c.latentChannels, 3, { padding: 1 }));
  }

  /** `x[B,H,W,in]` → `[B,H/f,W/f,2·latent]` (mean and log-variance halves). */
  forward(x: tf.Tensor4D): tf.Tensor4D {
    return sequential(x, this.convIn, ...this.downBlocks, this.midBlock, this.convNormOut, silu, this.convOut);
  }
}

/** diffusers' VAE `Decoder`: conv_in, mid block, up blocks (layers_per_block + 1 resnets), norm, silu, conv_out. */
export class Decoder extends Module {
  readonly convIn: Conv2d;
  readonly midBlock: VaeMidBlock;
  readonly upBlocks: UpDecoderBlock2D[];
  readonly convNormOut: GroupNorm;
  readonly convOut: Conv2d;
  constructor(c: AutoencoderKLConfig) {
    super();
    const boc = c.blockOutChannels;
    const n = boc.length;
    const rev = [...boc].reverse();
    this.convIn = this.child('conv_in', new Conv2d(c.latentChannels, boc[n - 1], 3, { padding: 1 }));
    this.midBlock = this.child('mid_block', new VaeMidBlock(boc[n - 1], c.normNumGroups, c.midBlockAddAttention));
    this.upBlocks = this.list(
      'up_blocks',
      rev.map((out, i) => new UpDecoderBlock2D(i === 0 ? rev[0] : rev[i - 1], out, c.layersPerBlock + 1, c.normNumGroups, i < n - 1)),
    );
    this.convNormOut = this.child('conv_norm_out', new GroupNorm(c.normNumGroups, boc[0], VAE_EPS));
    this.convOut = this.child('conv_out', new Conv2d(boc[0], c.outChannels, 3, { padding: 1 }));
  }

  /** `z[B,h,w,latent]` → `[B,h·f,w·f,out]`. */
  forward(z: tf.Tensor4D): tf.Tensor4D {
    return sequential(z, this.convIn, this.midBlock, ...this.upBlocks, this.convNormOut, silu, this.convOut);
  }
}

/** The VAE's latent distribution for a batch of images (unscaled: not multiplied by the scaling factor). */
export interface LatentDistribution {
  /** `[B,h,w,latent]`. */
  mean: tf.Tensor4D;
  /** `exp(0.5·logvar)`, `[B,h,w,latent]`. */
  std: tf.Tensor4D;
  /** Log-variance clamped to [−30, 20], `[B,h,w,latent]`. */
  logvar: tf.Tensor4D;
}

/**
 * diffusers' `AutoencoderKL` on NHWC tensors. Module paths equal the diffusers checkpoint keys; use
 * {@link legacyVaeSource} to load checkpoints with the old attention names (`query`, `key`, `value`, `proj_attn`).
 */
export class AutoencoderKL extends Module {
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quantConv: Conv2d | null;
  readonly postQuantConv: Conv2d | null;
  constructor(readonly config: AutoencoderKLConfig) {
    super();
    const l = config.latentChannels;
    this.encoder = this.child('encoder', new Encoder(config));
    this.decoder = this.child('decoder', new Decoder(config));
    this.quantConv = config.useQuantConv ? this.child('quant_conv', new Conv2d(2 * l, 2 * l, 1)) : null;
    this.postQuantConv = config.usePostQuantConv ? this.child('post_quant_conv', new Conv2d(l, l, 1)) : null;
  }

  /**
   * Sets the largest attention score chunk (bytes) of the mid-block attentions (default: @ddsjs/nn's
   * `DEFAULT_ATTENTION_BYTE_BUDGET`); at 512×512 images the single-head score is 4096×4096 per image.
   */
  setAttentionByteBudget(bytes: number | undefined): this {
    setAttentionByteBudget(this, bytes);
    return this;
  }

  /** The latent scaling factor of the config (`z = scalingFactor · mean`). */
  get scalingFactor(): number {
    return this.config.scalingFactor;
  }

  /** Spatial downscale factor between images and latents (2^(blocks − 1), 8 for SD). */
  get downscaleFactor(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /**
   * Encodes `image[B,H,W,in]` (values in [−1, 1]; H and W multiples of {@link downscaleFactor}) into the
   * unscaled latent distribution. Differentiable.
   */
  encode(image: tf.Tensor4D): LatentDistribution {
    const c = this.config;
    const f = this.downscaleFactor;
    if (image.rank !== 4 || image.shape[3] !== c.inChannels) {
      throw new InvalidArgumentError(`AutoencoderKL.encode: image must be NHWC [B,H,W,${c.inChannels}], got [${image.shape}]`);
    }
    if (image.shape[1] % f !== 0 || image.shape[2] % f !== 0) {
      throw new InvalidArgumentError(`AutoencoderKL.encode: image size ${image.shape[1]}×${image.shape[2]} is not a multiple of ${f}`);
    }
    const [mean, logvar, std] = tf.tidy(() => {
      const m = sequential(image, this.encoder, this.quantConv);
      const [mu, lv] = tf.split(m, 2, 3) as [tf.Tensor4D, tf.Tensor4D];
      const lvc = tf.clipByValue(lv, -30, 20) as tf.Tensor4D;
      return [mu, lvc, tf.exp(tf.mul(lvc, 0.5)) as tf.Tensor4D];
    });
    return { mean, std, logvar };
  }

  /**
   * Decodes unscaled latents `z[B,h,w,latent]` (divide diffusion latents by {@link scalingFactor} first)
   * into images `[B,h·f,w·f,out]` in about [−1, 1]. Differentiable.
   */
  decode(latents: tf.Tensor4D): tf.Tensor4D {
    const c = this.config;
    if (latents.rank !== 4 || latents.shape[3] !== c.latentChannels) {
      throw new InvalidArgumentError(`AutoencoderKL.decode: latents must be NHWC [B,h,w,${c.latentChannels}], got [${latents.shape}]`);
    }
    return sequential(latents, this.postQuantConv, this.decoder);
  }
}

const LEGACY_ATTN: Record<string, string> = { query: 'to_q', key: 'to_k', value: 'to_v', proj_attn: 'to_out.0' };
const ATTN_PROJ = /^(.*\.mid_block\.attentions\.\d+\.)(query|key|value|proj_attn|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/;

/**
 * Maps a VAE checkpoint key to the diffusers name: legacy mid-block attention names (`query`, `key`,
 * `value`, `proj_attn`) become `to_q`, `to_k`, `to_v`, `to_out.0`; other keys are returned unchanged.
 */
export function vaeKeyMap(key: string): string {
  const m = ATTN_PROJ.exec(key);
  if (!m) return key;
  const name = LEGACY_ATTN[m[2]] ?? m[2];
  return `${m[1]}${name}.${m[3]}`;
}

/**
 * Wraps a VAE state-dict source so that it exposes diffusers' current key names: legacy attention keys
 * are renamed with {@link vaeKeyMap}, and conv-shaped `[C,C,1,1]` attention projection weights (as
 * single-file checkpoints store them) are presented as Linear `[C,C]`. Throws if two keys map to the same name.
 */
export function legacyVaeSource(source: StateDictSource): StateDictSource {
  const toOrig = new Map<string, string>();
  for (const k of source.keys()) {
    const n = vaeKeyMap(k);
    const prev = toOrig.get(n);
    if (prev !== undefined) throw new InvalidArgumentError(`VAE state dict: keys '${prev}' and '${k}' both map to '${n}'`);
    toOrig.set(n, k);
  }
  const orig = (key: string): string => {
    const o = toOrig.get(key);
    if (o === undefined) throw new InvalidArgumentError(`VAE state dict: no key '${key}'`);
    return o;
  };
  const isProjWeight = (key: string) => ATTN_PROJ.test(key) && key.endsWith('.weight');
  return {
    keys: () => [...toOrig.keys()],
    shape: (key: string) => {
      const s = source.shape(orig(key));
      if (isProjWeight(key) && s.length === 4 && s[2] === 1 && s[3] === 1) return [s[0], s[1]];
      return s;
    },
    read: (key: string) => source.read(orig(key)),
  };
}
