// `dds-weights train-toy`: trains the embedded toy model of @ddsjs/toy-shapes — a latent diffusion model with
// exactly the Stable Diffusion structure (CLIP tokenizer + CLIP text model, AutoencoderKL, UNet2DConditionModel
// with cross-attention) — on the synthetic shapes world, with @ddsjs code on tfjs. Two sequential phases:
//   1. the VAE (reconstruction MSE + a small KL term), then the latent scaling factor = 1 / std(latents);
//   2. the UNet (epsilon prediction, SD's scaled_linear betas, 10% caption dropout for classifier-free guidance),
//      the VAE frozen.
// The text encoder is a CLIP text model frozen at its seeded random initialisation: the world has 60 training
// captions, so their embeddings are computed once into a table and each step gathers rows (no text forward or
// backward per step); the UNet's cross-attention learns to read those random but distinct features.
// Every checkpoint is a complete diffusers folder (loadable by loadStableDiffusion) plus `train/` (state, Adam
// moments, loss log), so a run resumes exactly where its last checkpoint left off.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { BACKEND_NAMES, BackendName, Module, Parameter, globalNorm, initBackend, toTorchLayout, tfSeed } from '@ddsjs/nn';
import {
  AutoencoderKL,
  CLIPTextModel,
  CLIPTokenizer,
  UNet2DConditionModel,
  addNoise,
} from '@ddsjs/sd';
import {
  makeNoiseSchedule,
  parseCLIPTextConfig,
  parseSchedulerConfig,
  parseUNetConfig,
  parseVaeConfig,
  safetensorsSource,
} from '@ddsjs/sd/internals';
import { SafetensorsFile, TensorData, f32ToF16, writeSafetensors } from '@ddsjs/safetensors';
import { BACKGROUND_NAMES, type BackgroundName, Rng, type SceneSpec, captions, renderScene, sampleScene } from '@ddsjs/toy-shapes';
import { RawComponentConfigs, prepareOutdir, writeConfigs, writeTokenizer } from './folder';
import { abortOnInterrupt } from './interrupt';

/** Named architecture presets of {@link toyConfigs}. */
export type ToyPreset = 'toy' | 'toy16' | 'micro';

/** Every {@link ToyPreset}, for argument checking. */
export const TOY_PRESETS: readonly ToyPreset[] = ['toy', 'toy16', 'micro'];

/** What the presets of {@link toyConfigs} differ in; everything else is shared. */
interface PresetArch {
  image: number;
  vaeChannels: number[];
  vaeGroups: number;
  unetChannels: number[];
  unetGroups: number;
  /** Per UNet level, top first: cross-attention or not (the up blocks mirror it). */
  unetAttention: boolean[];
  /** Text hidden size = UNet cross-attention dim. */
  hidden: number;
  heads: number;
  textLayers: number;
}

const PRESET_ARCH: Record<ToyPreset, PresetArch> = {
  toy: { image: 64, vaeChannels: [16, 32, 64, 64], vaeGroups: 4, unetChannels: [32, 64, 64], unetGroups: 8, unetAttention: [true, true, false], hidden: 64, heads: 4, textLayers: 2 },
  toy16: { image: 64, vaeChannels: [16, 32, 64], vaeGroups: 4, unetChannels: [16, 32, 64, 64], unetGroups: 4, unetAttention: [false, true, true, false], hidden: 64, heads: 4, textLayers: 2 },
  micro: { image: 16, vaeChannels: [32, 32], vaeGroups: 8, unetChannels: [32, 32], unetGroups: 8, unetAttention: [true, false], hidden: 32, heads: 2, textLayers: 1 },
};

/**
 * The diffusers configs of a toy model (as the files `unet/config.json`, `vae/config.json`,
 * `text_encoder/config.json`, `scheduler/scheduler_config.json` hold them).
 * - `'toy'` (the shipped model): 64×64 RGB pictures; VAE `block_out_channels` [16, 32, 64, 64] (4 GroupNorm
 *   groups), one resnet per block → 8×8×4 latents (downscale 8, as SD); UNet [32, 64, 64], `layers_per_block` 1,
 *   8 GroupNorm groups, cross-attention in the two upper levels (8×8 and 4×4), 4 heads, `cross_attention_dim` 64; CLIP text model hidden 64, 2 layers, 4 heads, MLP
 *   128, the real 49408-token vocabulary; DDIM scheduler with SD's scaled_linear betas (0.00085 → 0.012, 1000 steps).
 *   GroupNorm groups are few on purpose: with one channel per group (e.g. 16 groups on 16 channels) the norm is a
 *   per-channel instance norm that erases each picture's mean colour, and a first VAE run could not reproduce
 *   background colours; SD keeps ≥ 4 channels per group (32 groups on 128–1280 channels).
 * - `'toy16'`: the same world and text encoder with **16×16×4 latents** (downscale 4): VAE [16, 32, 64] (the toy
 *   VAE without its last level); UNet [16, 32, 64, 64] with 4 GroupNorm groups — a cheap 16-channel level without
 *   attention at 16×16 on top of the toy UNet's levels (cross-attention at 8×8 and 4×4, plain at 2×2). Measured on
 *   wasm, batch 16, fwd+bwd: 2.6 s/step against the toy UNet's 2.1 s (putting the toy UNet itself at 16×16 costs
 *   6.9 s, most of it attention over 256 positions; without attention at 16×16, 3.7 s). Not shipped (yet): see
 *   docs/notes/2026-12-toy-model-log.md, "16×16 latents".
 * - `'micro'` (tests): 16×16 pictures, VAE [32, 32] → 8×8×4, UNet [32, 32], text hidden 32 with 1 layer.
 */
export function toyConfigs(preset: ToyPreset = 'toy'): RawComponentConfigs {
  if (!TOY_PRESETS.includes(preset)) throw new Error(`train-toy: --preset must be one of ${TOY_PRESETS.join(', ')}, got ${JSON.stringify(preset)}`);
  const a = PRESET_ARCH[preset];
  const { image, vaeChannels, hidden, unetChannels } = a;
  const latent = image / 2 ** (vaeChannels.length - 1);
  const down = a.unetAttention.map((x) => (x ? 'CrossAttnDownBlock2D' : 'DownBlock2D'));
  const up = [...a.unetAttention].reverse().map((x) => (x ? 'CrossAttnUpBlock2D' : 'UpBlock2D'));
  return {
    unet: {
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.35.2',
      act_fn: 'silu',
      attention_head_dim: a.heads,
      block_out_channels: unetChannels,
      center_input_sample: false,
      cross_attention_dim: hidden,
      down_block_types: down,
      downsample_padding: 1,
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 1,
      mid_block_scale_factor: 1,
      norm_eps: 1e-5,
      norm_num_groups: a.unetGroups,
      out_channels: 4,
      sample_size: latent,
      up_block_types: up,
    },
    vae: {
      _class_name: 'AutoencoderKL',
      _diffusers_version: '0.35.2',
      act_fn: 'silu',
      block_out_channels: vaeChannels,
      down_block_types: vaeChannels.map(() => 'DownEncoderBlock2D'),
      in_channels: 3,
      latent_channels: 4,
      layers_per_block: 1,
      norm_num_groups: a.vaeGroups,
      out_channels: 3,
      sample_size: image,
      scaling_factor: 0.18215,
      up_block_types: vaeChannels.map(() => 'UpDecoderBlock2D'),
    },
    textEncoder: {
      architectures: ['CLIPTextModel'],
      attention_dropout: 0.0,
      bos_token_id: 49406,
      dropout: 0.0,
      eos_token_id: 49407,
      hidden_act: 'quick_gelu',
      hidden_size: hidden,
      initializer_factor: 1.0,
      initializer_range: 0.02,
      intermediate_size: 2 * hidden,
      layer_norm_eps: 1e-5,
      max_position_embeddings: 77,
      model_type: 'clip_text_model',
      num_attention_heads: a.heads,
      num_hidden_layers: a.textLayers,
      pad_token_id: 49407,
      projection_dim: hidden,
      torch_dtype: 'float32',
      transformers_version: '4.57.6',
      vocab_size: 49408,
    },
    scheduler: {
      _class_name: 'DDIMScheduler',
      _diffusers_version: '0.35.2',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      clip_sample: false,
      num_train_timesteps: 1000,
      prediction_type: 'epsilon',
      set_alpha_to_one: false,
      steps_offset: 1,
      trained_betas: null,
    },
  };
}

/** Progress of {@link trainToy}, reported after every step. */
export interface TrainToyProgress {
  /** The phase running. */
  phase: 'vae' | 'unet';
  /** Steps done in this phase (1-based after the first step). */
  step: number;
  /** Steps this phase runs to. */
  total: number;
  /** This step's loss. */
  loss: number;
  /** Mean seconds per step of this phase in this process (excluding the first, warm-up step when possible). */
  secondsPerStep: number;
  /** Estimated seconds left for this phase. */
  etaSeconds: number;
}

/** Options of {@link trainToy}. */
export interface TrainToyOptions {
  /** Output diffusers folder (created; training state goes to `<outdir>/train/`). */
  outdir: string;
  /** Architecture preset (default `'toy'`); ignored when resuming (the saved configs and preset win). */
  preset?: ToyPreset;
  /** Master seed: initialisation, data and noise (default 0). */
  seed?: number;
  /** VAE steps (default 1200; 20 for 'micro'). */
  vaeSteps?: number;
  /** UNet steps (default 2000; 20 for 'micro'). */
  unetSteps?: number;
  /** VAE batch size (default 4). */
  vaeBatch?: number;
  /** UNet batch size (default 16). */
  unetBatch?: number;
  /** VAE learning rate (Adam, default 1e-3). */
  vaeLr?: number;
  /** UNet learning rate (Adam, default 5e-4, linear warm-up over the first 100 steps). */
  unetLr?: number;
  /** Weight of the mean per-element KL term of the VAE loss (default 1e-4). */
  klWeight?: number;
  /**
   * Weight of shape pixels relative to background pixels in the VAE's reconstruction loss (default 5; 1 = plain
   * MSE). Without it a VAE run reproduced positions and backgrounds but turned every shape brown.
   */
  shapeWeight?: number;
  /**
   * Initial bias of the VAE encoder's log-variance channels (default −6, i.e. posterior std ≈ 0.05 at the start).
   * With the default initialisation (logvar ≈ 0, std ≈ 1) the decoder first sees latents drowned in unit noise and
   * learns to ignore them: a run reproduced backgrounds but turned every shape brown (the mean colour).
   */
  vaeLogvarInit?: number;
  /** Weight of the VAE's colour term: MSE of 4×4-pixel block means of reconstruction and picture (default 4; 0 = off). */
  vaeLowFreqWeight?: number;
  /**
   * Weight of the latent colour term: MSE between the first three channels of the posterior mean and 2 × each latent
   * cell's mean RGB (default 0 = off). Makes the encoder carry colour explicitly.
   */
  vaeLatentColourWeight?: number;
  /**
   * Weight of the latent foreground term (default 0 = off): MSE between latent channel 3 of the posterior mean and
   * `vaeLatentMaskLevel · (2·coverage − 1)`, coverage = the fraction of each latent cell the shape covers. It gives the
   * latent a foreground channel, so that every shape colour lies on the same side of every background there: without
   * it, colours on opposite sides of a background in the colour channels (green and red around gray) make "the shape
   * is elsewhere" a likelier reading of a recoloured latent than "the shape changed colour" (see the package README).
   */
  vaeLatentMaskWeight?: number;
  /** The latent foreground term's level: channel 3 → +level on the shape, −level on the background (default 2). */
  vaeLatentMaskLevel?: number;
  /** Train only the VAE decoder (and post_quant_conv): the latents stay as they are (default false). */
  vaeFreezeEncoder?: boolean;
  /**
   * Start from this diffusers folder's weights and configs instead of a seeded initialisation (fine-tuning; ignored
   * when resuming). Each component's float32 `*.safetensors` is read, or its `*.fp16.safetensors` where only that
   * exists. Its VAE `scaling_factor` is kept as long as the encoder stays frozen (`vaeFreezeEncoder`), so a UNet
   * trained on its latents stays valid; the step counters start at 0.
   */
  initFrom?: string;
  /** Probability of replacing a caption with `""` in UNet training (default 0.1). */
  captionDropout?: number;
  /**
   * Offset noise for the UNet phase (default 0 = off), as diffusers' `--noise_offset`: the diffusion noise gets
   * `noiseOffset · n` added, n ~ N(0, 1) drawn once per sample and channel (constant over the picture). Without it a
   * model trained at 16×16 latents never learnt to choose the background's overall colour when sampling from pure
   * noise: the residual signal at t = 999 of the training schedule (√ᾱ = 0.068 on the latent's mean, averaged over
   * 256 cells) is a cue that pure noise lacks, and generation fell back to the mean colour (grey).
   */
  noiseOffset?: number;
  /** Global gradient-norm clip (default 1). */
  gradClip?: number;
  /** Write a checkpoint every this many steps of each phase (default 250) and at each phase's end. */
  checkpointEvery?: number;
  /**
   * Number of distinct training pictures the UNet phase draws from (default 8192; 64 for 'micro'): they are
   * rendered and encoded once by the frozen VAE (≈ 2 KB of latent mean/std each); every draw samples fresh latent
   * noise, diffusion noise and timestep.
   */
  poolSize?: number;
  /**
   * Relative frequency of each background in the UNet's picture pool (default: every background 1, i.e. uniform
   * captions). A picture whose background has weight w is kept with probability w / max(weights), otherwise redrawn
   * (from the same per-picture generator, so the pool stays a function of the seed); e.g. `{ gray: 3 }` makes gray
   * backgrounds 3× as frequent as each other one. Backgrounds not named weigh 1.
   */
  poolBackgroundWeights?: Partial<Record<BackgroundName, number>>;
  /** Train on the same batch every step (overfitting check for tests; default false). */
  fixedBatch?: boolean;
  /** Stop (after writing a checkpoint) once this many seconds have passed in this call; resume later. */
  timeBudgetSeconds?: number;
  /**
   * Stop (after writing a checkpoint) at the end of the current step once this signal is aborted (the command aborts it
   * on Ctrl-C); the result has `done: false` and rerunning resumes exactly.
   */
  signal?: AbortSignal;
  /**
   * Also keep a copy of the trained component's float32 weights at every checkpoint, as
   * `<outdir>/train/checkpoints/<vae|unet>-<step>.safetensors` (≈ 8 MB per UNet checkpoint of the toy preset), for
   * checkpoint averaging (`dds-weights average`). Default false.
   */
  keepCheckpoints?: boolean;
  /** Start afresh in an existing non-empty `outdir` (overwriting its files) instead of refusing or resuming. */
  force?: boolean;
  /** Resume from `<outdir>/train/state.json` when present (default true). */
  resume?: boolean;
  /** Also write the `*.fp16.safetensors` variant at the end (default true). */
  fp16?: boolean;
  /** Called after every step. */
  onProgress?: (p: TrainToyProgress) => void;
  /** Called with informational lines (checkpoints, phase changes). */
  log?: (line: string) => void;
}

/** What {@link trainToy} did. */
export interface TrainToyResult {
  /** The (absolute) output folder. */
  outdir: string;
  /** VAE steps completed in total (including earlier runs this one resumed). */
  vaeSteps: number;
  /** UNet steps completed in total. */
  unetSteps: number;
  /** Whether both phases are complete. */
  done: boolean;
  /** Wall seconds of this call. */
  seconds: number;
  /** Mean seconds per VAE step measured in this call (NaN when no VAE step ran). */
  vaeSecondsPerStep: number;
  /** Mean seconds per UNet step measured in this call (NaN when no UNet step ran). */
  unetSecondsPerStep: number;
  /** Losses of this call's VAE steps, in order. */
  vaeLosses: number[];
  /** Losses of this call's UNet steps, in order. */
  unetLosses: number[];
  /** The latent scaling factor written to `vae/config.json` (after the VAE phase). */
  scalingFactor: number;
}

/** The saved training state (`<outdir>/train/state.json`). */
interface TrainState {
  version: 1;
  seed: number;
  /** Preset the configs came from (defaults of steps and pool size follow it on resume). */
  preset?: ToyPreset;
  configs: RawComponentConfigs;
  vaeStep: number;
  unetStep: number;
  scalingFactor: number | null;
  /** The VAE step the scaling factor was measured at (it is re-measured when the VAE trains further). */
  scalingFactorStep?: number;
  /** The folder the weights were initialised from (`initFrom`), when they were. */
  initFrom?: string;
  seconds: number;
}

const PHASE_SALT = { vae: 0x5eed_0001, unet: 0x5eed_0002 } as const;

/** Means of `f×f` pixel blocks of NHWC `t` (by reshape: wasm has no AvgPool gradient). */
function blockMean(t: tf.Tensor4D, f: number): tf.Tensor4D {
  const [n, h, w, c] = t.shape;
  return tf.mean(t.reshape([n, h / f, f, w / f, f, c]), [2, 4]) as tf.Tensor4D;
}

function mix(...xs: number[]): number {
  let h = 0x811c9dc5;
  for (const x of xs) {
    h = Math.imul(h ^ (x >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
  }
  return h >>> 0;
}

function checkPositiveInt(v: number, name: string, allowZero = false): void {
  if (!Number.isInteger(v) || v < (allowZero ? 0 : 1)) throw new Error(`train-toy: ${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${v}`);
}

function checkPositive(v: number, name: string): void {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`train-toy: ${name} must be a positive number, got ${v}`);
}

/** Adam (β = 0.9, 0.999, ε = 1e-8) over named parameters, with moments saved/restored by parameter name. */
class NamedAdam {
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  step = 0;
  constructor(private readonly params: [string, Parameter][]) {
    const zeroVariable = (p: Parameter) => {
      const z = tf.zeros([...p.shape]);
      const v = tf.variable(z, false);
      z.dispose();
      return v;
    };
    for (const [n, p] of params) {
      this.m.set(n, zeroVariable(p));
      this.v.set(n, zeroVariable(p));
    }
  }

  /** Applies one update with `grads` (by variable name), clipped to global norm `clip`; returns the pre-clip norm. */
  async apply(grads: tf.NamedTensorMap, lr: number, clip: number): Promise<number> {
    this.step++;
    const t = this.step;
    const b1 = 0.9;
    const b2 = 0.999;
    const normT = globalNorm(this.params.map(([, p]) => grads[p.value.name]));
    const norm = (await normT.data())[0];
    normT.dispose();
    const scale = norm > clip ? clip / norm : 1;
    const lrT = (lr * Math.sqrt(1 - b2 ** t)) / (1 - b1 ** t);
    tf.tidy(() => {
      for (const [n, p] of this.params) {
        const g = tf.mul(grads[p.value.name], scale);
        const m = this.m.get(n) as tf.Variable;
        const v = this.v.get(n) as tf.Variable;
        m.assign(tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1)));
        v.assign(tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2)));
        p.value.assign(tf.sub(p.value, tf.mul(lrT, tf.div(m, tf.add(tf.sqrt(v), 1e-8)))));
      }
    });
    return norm;
  }

  async save(file: string): Promise<void> {
    const tensors: Record<string, TensorData> = {};
    for (const [n] of this.params) {
      const m = this.m.get(n) as tf.Variable;
      tensors[`m.${n}`] = { dtype: 'F32', shape: m.shape, data: (await m.data()) as Float32Array };
      tensors[`v.${n}`] = { dtype: 'F32', shape: m.shape, data: (await (this.v.get(n) as tf.Variable).data()) as Float32Array };
    }
    await writeSafetensors(file, tensors, { step: String(this.step) });
  }

  async load(file: string): Promise<void> {
    const f = await SafetensorsFile.open(file);
    try {
      for (const [n, p] of this.params) {
        for (const [k, map] of [['m', this.m], ['v', this.v]] as const) {
          const key = `${k}.${n}`;
          if (!f.keys().includes(key)) throw new Error(`${file}: missing optimizer tensor '${key}'`);
          const t = tf.tensor(await f.readFloat32(key), [...p.shape]);
          (map.get(n) as tf.Variable).assign(t);
          t.dispose();
        }
      }
      this.step = Number(f.metadata.step ?? 0);
    } finally {
      await f.close();
    }
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

/**
 * One scene of the UNet's training pool: `sampleScene(rng, { split: 'train', size })`, redrawn until accepted with
 * probability weight / max weight of its background (see {@link TrainToyOptions.poolBackgroundWeights}); without
 * weights exactly `sampleScene`'s draw.
 */
export function poolScene(rng: Rng, size: number, weights: Partial<Record<BackgroundName, number>> | undefined): SceneSpec {
  let spec = sampleScene(rng, { split: 'train', size });
  if (weights === undefined) return spec;
  const w = (b: BackgroundName) => weights[b] ?? 1;
  const max = Math.max(...BACKGROUND_NAMES.map(w));
  while (rng.next() * max >= w(spec.background)) spec = sampleScene(rng, { split: 'train', size });
  return spec;
}

/** A batch of world pictures as `[B,H,W,3]` in [−1, 1] and their caption indices, drawn deterministically. */
function makeBatch(seed: number, phase: 'vae', step: number, batch: number, size: number, table: Map<string, number>, dropout: number, emptyIndex: number) {
  const rng = new Rng(mix(seed, PHASE_SALT[phase], step));
  const pixels = new Float32Array(batch * size * size * 3);
  const masks = new Float32Array(batch * size * size);
  const ctx: number[] = [];
  const timesteps: number[] = [];
  for (let b = 0; b < batch; b++) {
    const spec = sampleScene(rng, { split: 'train', size });
    const r = renderScene(spec);
    for (let i = 0; i < r.image.length; i++) pixels[b * r.image.length + i] = r.image[i] / 127.5 - 1;
    masks.set(r.mask, b * r.mask.length);
    const idx = table.get(r.caption);
    if (idx === undefined) throw new Error(`train-toy: caption '${r.caption}' missing from the text table`);
    ctx.push(rng.next() < dropout ? emptyIndex : idx);
    timesteps.push(rng.int(1000));
  }
  return { pixels, masks, ctx, timesteps, noiseSeed: mix(seed, PHASE_SALT[phase], step, 7) };
}

async function writeComponent(file: string, module: Module, fp16: boolean): Promise<void> {
  const tensors: Record<string, TensorData> = {};
  for (const [key, p] of module.namedParameters()) {
    const t = toTorchLayout(p.value, p.layout);
    const data = (await t.data()) as Float32Array;
    tensors[key] = fp16 ? { dtype: 'F16', shape: t.shape, data: f32ToF16(data) } : { dtype: 'F32', shape: t.shape, data };
    t.dispose();
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await writeSafetensors(file, tensors, { format: 'pt' });
}

async function loadComponent(file: string, module: Module): Promise<void> {
  const f = await SafetensorsFile.open(file);
  try {
    await module.loadStateDict(safetensorsSource(f, { name: file }));
  } finally {
    await f.close();
  }
}

/** The component configs of a diffusers folder `dir` (for `initFrom`); throws naming the file that is missing or bad. */
function readInitConfigs(dir: string): RawComponentConfigs {
  const read = (rel: string): Record<string, unknown> => {
    const f = path.join(dir, rel);
    let v: unknown;
    try {
      v = JSON.parse(fs.readFileSync(f, 'utf8'));
    } catch (e) {
      throw new Error(`train-toy: --init ${dir}: cannot read ${rel}: ${(e as Error).message}`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`train-toy: --init ${dir}: ${rel} is not a JSON object`);
    return v as Record<string, unknown>;
  };
  return {
    unet: read('unet/config.json'),
    vae: read('vae/config.json'),
    textEncoder: read('text_encoder/config.json'),
    scheduler: read('scheduler/scheduler_config.json'),
  };
}

const FILES = {
  unet: 'unet/diffusion_pytorch_model.safetensors',
  vae: 'vae/diffusion_pytorch_model.safetensors',
  textEncoder: 'text_encoder/model.safetensors',
} as const;

function fp16Name(f: string): string {
  return f.replace(/\.safetensors$/, '.fp16.safetensors');
}

/**
 * Trains the toy model into `options.outdir` (a diffusers folder): the VAE, then the UNet, with the text encoder
 * frozen at its seeded initialisation (see the file header). Resumes from `<outdir>/train/` when it exists (the
 * saved configs, seed, weights and Adam moments are used; data and noise are functions of (seed, phase, step),
 * so a resumed run sees the same batches an uninterrupted one would). Appends one JSON line per step to
 * `<outdir>/train/loss.jsonl`. Works on any tfjs backend (wasm and cpu included).
 * @returns what was done; throws an Error naming the option at fault on bad options, or when `outdir` is a
 *   non-empty folder without training state (unless `force`).
 */
export async function trainToy(options: TrainToyOptions): Promise<TrainToyResult> {
  const t0 = Date.now();
  const outdir = path.resolve(options.outdir);
  const trainDir = path.join(outdir, 'train');
  const stateFile = path.join(trainDir, 'state.json');
  const log = options.log ?? (() => undefined);
  // ---- saved state (read only; nothing is written before the options are validated)
  const resuming = (options.resume ?? true) && !options.force && fs.existsSync(stateFile);
  let saved: TrainState | null = null;
  if (resuming) {
    try {
      saved = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as TrainState;
    } catch (e) {
      throw new Error(`${stateFile}: cannot read the training state: ${(e as Error).message}`);
    }
    if (saved.version !== 1) throw new Error(`${stateFile}: unknown state version ${saved.version}`);
    if (options.seed !== undefined && options.seed !== saved.seed) {
      throw new Error(`train-toy: ${outdir} was trained with seed ${saved.seed}, not ${options.seed} (pass --force to start afresh)`);
    }
  }
  const preset: ToyPreset = saved?.preset ?? options.preset ?? 'toy';
  const micro = preset === 'micro';
  const o = {
    vaeSteps: options.vaeSteps ?? (micro ? 20 : 1200),
    unetSteps: options.unetSteps ?? (micro ? 20 : 2000),
    vaeBatch: options.vaeBatch ?? 4,
    unetBatch: options.unetBatch ?? 16,
    vaeLr: options.vaeLr ?? 1e-3,
    unetLr: options.unetLr ?? 5e-4,
    klWeight: options.klWeight ?? 1e-4,
    shapeWeight: options.shapeWeight ?? 5,
    vaeLogvarInit: options.vaeLogvarInit ?? -6,
    vaeLowFreqWeight: options.vaeLowFreqWeight ?? 4,
    vaeFreezeEncoder: options.vaeFreezeEncoder ?? false,
    vaeLatentColourWeight: options.vaeLatentColourWeight ?? 0,
    vaeLatentMaskWeight: options.vaeLatentMaskWeight ?? 0,
    vaeLatentMaskLevel: options.vaeLatentMaskLevel ?? 2,
    captionDropout: options.captionDropout ?? 0.1,
    noiseOffset: options.noiseOffset ?? 0,
    gradClip: options.gradClip ?? 1,
    checkpointEvery: options.checkpointEvery ?? 250,
    poolSize: options.poolSize ?? (micro ? 64 : 8192),
  };
  checkPositiveInt(o.vaeSteps, 'vaeSteps', true);
  checkPositiveInt(o.unetSteps, 'unetSteps', true);
  checkPositiveInt(o.vaeBatch, 'vaeBatch');
  checkPositiveInt(o.unetBatch, 'unetBatch');
  checkPositiveInt(o.checkpointEvery, 'checkpointEvery');
  checkPositiveInt(o.poolSize, 'poolSize');
  const bgWeights = options.poolBackgroundWeights;
  if (bgWeights !== undefined) {
    for (const [k, w] of Object.entries(bgWeights)) {
      if (!(BACKGROUND_NAMES as readonly string[]).includes(k)) throw new Error(`train-toy: poolBackgroundWeights: unknown background '${k}' (one of ${BACKGROUND_NAMES.join(', ')})`);
      if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) throw new Error(`train-toy: poolBackgroundWeights.${k} must be a non-negative number, got ${String(w)}`);
    }
    if (BACKGROUND_NAMES.every((b) => (bgWeights[b] ?? 1) === 0)) throw new Error('train-toy: poolBackgroundWeights: every background has weight 0');
  }
  checkPositive(o.vaeLr, 'vaeLr');
  checkPositive(o.unetLr, 'unetLr');
  checkPositive(o.gradClip, 'gradClip');
  checkPositive(o.shapeWeight, 'shapeWeight');
  if (!(o.klWeight >= 0)) throw new Error(`train-toy: klWeight must be ≥ 0, got ${o.klWeight}`);
  if (!(o.vaeLatentMaskWeight >= 0 && Number.isFinite(o.vaeLatentMaskWeight))) throw new Error(`train-toy: vaeLatentMaskWeight must be a non-negative number, got ${o.vaeLatentMaskWeight}`);
  if (!Number.isFinite(o.vaeLatentMaskLevel)) throw new Error(`train-toy: vaeLatentMaskLevel must be a finite number, got ${o.vaeLatentMaskLevel}`);
  if (!(o.noiseOffset >= 0 && Number.isFinite(o.noiseOffset))) throw new Error(`train-toy: noiseOffset must be a non-negative number, got ${o.noiseOffset}`);
  if (!(o.captionDropout >= 0 && o.captionDropout < 1)) throw new Error(`train-toy: captionDropout must be in [0, 1), got ${o.captionDropout}`);
  if (options.timeBudgetSeconds !== undefined) checkPositive(options.timeBudgetSeconds, 'timeBudgetSeconds');

  // ---- state: fresh or resumed
  let state: TrainState;
  if (saved) {
    state = saved;
    log(`resuming ${outdir}: VAE step ${state.vaeStep}, UNet step ${state.unetStep}`);
  } else {
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed) || seed < 0) throw new Error(`train-toy: seed must be a non-negative integer, got ${seed}`);
    prepareOutdir(outdir, options.force);
    // A forced fresh start must not inherit an older run's log, optimizer moments or state.
    for (const f of ['loss.jsonl', 'adam-vae.safetensors', 'adam-unet.safetensors', 'state.json']) fs.rmSync(path.join(trainDir, f), { force: true });
    state = { version: 1, seed, preset, configs: toyConfigs(preset), vaeStep: 0, unetStep: 0, scalingFactor: null, seconds: 0 };
    if (options.initFrom !== undefined) {
      const from = path.resolve(options.initFrom);
      state.configs = readInitConfigs(from);
      state.initFrom = from;
      const sf = state.configs.vae.scaling_factor;
      if (typeof sf !== 'number' || !(sf > 0)) throw new Error(`train-toy: ${from}/vae/config.json has no positive scaling_factor`);
      state.scalingFactor = sf;
      state.scalingFactorStep = 0;
    }
  }
  const seed = state.seed;
  const raw = state.configs;
  const vaeCfg = parseVaeConfig(raw.vae, 'vae config');
  const unetCfg = parseUNetConfig(raw.unet, 'unet config');
  const textCfg = parseCLIPTextConfig(raw.textEncoder, 'text_encoder config');
  const schedCfg = parseSchedulerConfig(raw.scheduler, 'scheduler config');
  const size = raw.vae.sample_size as number;
  if (o.unetSteps > 0 && state.unetStep === 0 && state.vaeStep > o.vaeSteps) {
    log(`note: the VAE already has ${state.vaeStep} steps (more than vaeSteps ${o.vaeSteps})`);
  }
  if (o.vaeLatentMaskWeight > 0 && vaeCfg.latentChannels < 4) {
    throw new Error(`train-toy: vaeLatentMaskWeight needs ≥ 4 latent channels, the VAE has ${vaeCfg.latentChannels}`);
  }
  if (state.unetStep > 0 && o.vaeSteps > state.vaeStep) {
    throw new Error(`train-toy: UNet training has started (step ${state.unetStep}); the VAE cannot be trained further (vaeSteps ${o.vaeSteps} > ${state.vaeStep})`);
  }

  // ---- modules
  const vae = new AutoencoderKL(vaeCfg);
  const unet = new UNet2DConditionModel(unetCfg);
  const text = new CLIPTextModel(textCfg);
  if (resuming) {
    await loadComponent(path.join(outdir, FILES.vae), vae);
    await loadComponent(path.join(outdir, FILES.unet), unet);
    await loadComponent(path.join(outdir, FILES.textEncoder), text);
  } else if (state.initFrom !== undefined) {
    const from = state.initFrom;
    for (const [k, m] of [['vae', vae], ['unet', unet], ['textEncoder', text]] as const) {
      const f32 = path.join(from, FILES[k]);
      await loadComponent(fs.existsSync(f32) ? f32 : path.join(from, fp16Name(FILES[k])), m);
    }
    writeTokenizer(outdir, '<|endoftext|>', path.join(from, 'tokenizer'));
    log(`initialised from ${from} (VAE scaling_factor ${state.scalingFactor})`);
  } else {
    vae.initialize(mix(seed, 1));
    if (o.vaeLogvarInit !== 0) {
      // encoder.conv_out outputs [mean (latent channels), logvar (latent channels)]: start with a small posterior std.
      const [name, bias] = vae.namedParameters().find(([n]) => n === 'encoder.conv_out.bias') ?? [];
      if (!name || !bias) throw new Error('train-toy: VAE has no encoder.conv_out.bias');
      const lc = bias.shape[0] / 2;
      const init = tf.tidy(() => tf.concat([tf.slice(bias.value, [0], [lc]), tf.fill([lc], o.vaeLogvarInit)]));
      bias.set(init);
      init.dispose();
    }
    unet.initialize(mix(seed, 2));
    text.initialize(mix(seed, 3));
    writeTokenizer(outdir, '<|endoftext|>');
  }
  text.setTrainable(false);
  fs.mkdirSync(trainDir, { recursive: true });
  const tokenizer = await CLIPTokenizer.fromPretrained(path.join(outdir, 'tokenizer'));

  // ---- text table: every training caption plus "" (the unconditional caption)
  const texts = [...captions('train'), ''];
  const table = new Map(texts.map((c, i) => [c, i] as [string, number]));
  const emptyIndex = texts.length - 1;
  const ctxTable = tf.tidy(() => text.forward(tokenizer.encode(texts)));

  const schedule = makeNoiseSchedule(schedCfg, vaeCfg.scalingFactor);
  const lossLog = fs.openSync(path.join(trainDir, 'loss.jsonl'), 'a');
  const deadline = options.timeBudgetSeconds !== undefined ? t0 + options.timeBudgetSeconds * 1000 : Infinity;
  const result: TrainToyResult = {
    outdir, vaeSteps: state.vaeStep, unetSteps: state.unetStep, done: false, seconds: 0,
    vaeSecondsPerStep: NaN, unetSecondsPerStep: NaN, vaeLosses: [], unetLosses: [], scalingFactor: state.scalingFactor ?? vaeCfg.scalingFactor,
  };

  const writeFolder = async (fp16: boolean) => {
    const cfgs = structuredClone(raw);
    if (state.scalingFactor !== null) cfgs.vae.scaling_factor = state.scalingFactor;
    writeConfigs(outdir, cfgs);
    for (const [k, m] of [['unet', unet], ['vae', vae], ['textEncoder', text]] as const) {
      await writeComponent(path.join(outdir, FILES[k]), m, false);
      if (fp16) await writeComponent(path.join(outdir, fp16Name(FILES[k])), m, true);
    }
  };
  const checkpoint = async (adam: NamedAdam | null, phase: 'vae' | 'unet') => {
    state.seconds += (Date.now() - lastSave) / 1000;
    lastSave = Date.now();
    await writeFolder(false);
    if (options.keepCheckpoints) {
      const dir = path.join(trainDir, 'checkpoints');
      fs.mkdirSync(dir, { recursive: true });
      const step = phase === 'vae' ? state.vaeStep : state.unetStep;
      fs.copyFileSync(path.join(outdir, FILES[phase]), path.join(dir, `${phase}-${step}.safetensors`));
    }
    if (adam) await adam.save(path.join(trainDir, `adam-${phase}.safetensors`));
    const tmp = stateFile + '.tmp';
    fs.writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n');
    fs.renameSync(tmp, stateFile);
    log(`checkpoint: VAE step ${state.vaeStep}, UNet step ${state.unetStep} → ${outdir}`);
  };
  let lastSave = Date.now();

  /** Runs one phase; returns false when stopped by the time budget or the signal. */
  const runPhase = async (
    phase: 'vae' | 'unet',
    module: Module,
    total: number,
    stepFn: (step: number) => { loss: tf.Scalar; grads: tf.NamedTensorMap },
    lrAt: (step: number) => number,
  ): Promise<boolean> => {
    const done = () => (phase === 'vae' ? state.vaeStep : state.unetStep);
    if (done() >= total) return true;
    const params = module.namedParameters().filter(([, p]) => p.isTrainable);
    const adam = new NamedAdam(params);
    const adamFile = path.join(trainDir, `adam-${phase}.safetensors`);
    if (done() > 0 && fs.existsSync(adamFile)) await adam.load(adamFile);
    const times: number[] = [];
    try {
      while (done() < total) {
        const s0 = Date.now();
        const step = done();
        const { loss, grads } = stepFn(step);
        const lossValue = (await loss.data())[0];
        if (!Number.isFinite(lossValue)) {
          tf.dispose([loss, ...Object.values(grads)]);
          throw new Error(`train-toy: ${phase} loss is ${lossValue} at step ${step} (try a lower learning rate)`);
        }
        const gradNorm = await adam.apply(grads, lrAt(step), o.gradClip);
        tf.dispose([loss, ...Object.values(grads)]);
        if (phase === 'vae') state.vaeStep++;
        else state.unetStep++;
        const dt = (Date.now() - s0) / 1000;
        times.push(dt);
        (phase === 'vae' ? result.vaeLosses : result.unetLosses).push(lossValue);
        fs.writeSync(lossLog, JSON.stringify({ phase, step: done(), loss: lossValue, gradNorm, lr: lrAt(step), seconds: dt }) + '\n');
        const steady = times.length > 1 ? times.slice(1) : times;
        const sps = steady.reduce((a, b) => a + b, 0) / steady.length;
        if (phase === 'vae') result.vaeSecondsPerStep = sps;
        else result.unetSecondsPerStep = sps;
        options.onProgress?.({ phase, step: done(), total, loss: lossValue, secondsPerStep: sps, etaSeconds: sps * (total - done()) });
        const stop = Date.now() >= deadline || options.signal?.aborted === true;
        if (done() % o.checkpointEvery === 0 || done() === total || stop) await checkpoint(adam, phase);
        if (stop && done() < total) return false;
        await new Promise((r) => setImmediate(r));
      }
      return true;
    } finally {
      adam.dispose();
    }
  };

  try {
    // ---- phase 1: VAE
    vae.setTrainable(true);
    if (o.vaeFreezeEncoder) {
      // Decoder-only fine-tuning keeps the latents (and so a UNet trained on them) valid.
      for (const [n, p] of vae.namedParameters()) if (n.startsWith('encoder.') || n.startsWith('quant_conv.')) p.setTrainable(false);
    }
    const vaeOk = await runPhase('vae', vae, o.vaeSteps, (step) => {
      const b = makeBatch(seed, 'vae', options.fixedBatch ? 0 : step, o.vaeBatch, size, table, 0, emptyIndex);
      const x = tf.tensor4d(b.pixels, [o.vaeBatch, size, size, 3]);
      const masks = tf.tensor4d(b.masks, [o.vaeBatch, size, size, 1]);
      const r = tf.variableGrads(() => {
        const { mean, std, logvar } = vae.encode(x);
        const z = tf.add(mean, tf.mul(std, tf.randomNormal(mean.shape, 0, 1, 'float32', tfSeed(b.noiseSeed)))) as tf.Tensor4D;
        const y = vae.decode(z);
        // Shape pixels weigh `shapeWeight` times the background's (the shape is ~10% of the picture, and its
        // colour is what edits change); normalised so the weights average 1 over the batch.
        const w = tf.add(1, tf.mul(masks, o.shapeWeight - 1));
        const rec = tf.div(tf.mean(tf.mul(tf.squaredDifference(y, x), w)), tf.mean(w));
        const kl = tf.mul(0.5, tf.mean(tf.sub(tf.add(tf.square(mean), tf.exp(logvar)), tf.add(logvar, 1))));
        let loss = tf.add(rec, tf.mul(kl, o.klWeight));
        if (o.vaeLatentColourWeight > 0) {
          // Latent colour term: the first three latent channels (the posterior mean) should hold each 8×8 cell's mean
          // RGB (×2). Without it the encoder collapsed colours to ~2 dims (red ≈ orange, blue ≈ green latents).
          const cells = blockMean(x, size / mean.shape[1]);
          const first3 = tf.slice(mean, [0, 0, 0, 0], [o.vaeBatch, mean.shape[1], mean.shape[2], 3]);
          loss = tf.add(loss, tf.mul(tf.mean(tf.squaredDifference(first3, tf.mul(cells, 2))), o.vaeLatentColourWeight));
        }
        if (o.vaeLatentMaskWeight > 0) {
          // Latent foreground term: channel 3 of the posterior mean holds the shape's coverage of each cell, ±level.
          const [, lh, lw] = mean.shape;
          const cov = blockMean(masks, size / lh);
          const ch3 = tf.slice(mean, [0, 0, 0, 3], [o.vaeBatch, lh, lw, 1]);
          const want = tf.mul(tf.sub(tf.mul(cov, 2), 1), o.vaeLatentMaskLevel);
          loss = tf.add(loss, tf.mul(tf.mean(tf.squaredDifference(ch3, want)), o.vaeLatentMaskWeight));
        }
        if (o.vaeLowFreqWeight > 0) {
          // Colour term: MSE of 4×4-pixel block means. Flat colours
          // are what this world is made of, and per-pixel MSE learned them slowly (every shape brownish at 600 steps).
          loss = tf.add(loss, tf.mul(tf.mean(tf.squaredDifference(blockMean(y, 4), blockMean(x, 4))), o.vaeLowFreqWeight));
        }
        return loss as tf.Scalar;
      }, vae.trainableVariables());
      tf.dispose([x, masks]);
      return { loss: r.value, grads: r.grads };
    }, () => o.vaeLr);
    result.vaeSteps = state.vaeStep;
    if (!vaeOk) return finish(false);
    vae.setTrainable(false);

    // ---- scaling factor: 1 / std of the latent means over 64 training pictures (as SD's 0.18215 was chosen)
    // A fine-tune of a folder's decoder keeps that folder's factor (its encoder, and so its latents, are unchanged).
    const keepInitFactor = state.initFrom !== undefined && o.vaeFreezeEncoder && state.scalingFactorStep === 0;
    if (state.scalingFactor === null || (state.scalingFactorStep !== state.vaeStep && !keepInitFactor)) {
      const n = 64;
      const b = makeBatch(seed, 'vae', 1_000_000, n, size, table, 0, emptyIndex);
      const stdT = tf.tidy(() => {
        const x = tf.tensor4d(b.pixels, [n, size, size, 3]);
        const { mean, std, logvar } = vae.encode(x);
        tf.dispose([std, logvar]);
        return tf.moments(mean).variance.sqrt();
      });
      const sd = (await stdT.data())[0];
      stdT.dispose();
      state.scalingFactor = Number((1 / Math.max(sd, 1e-6)).toPrecision(5));
      state.scalingFactorStep = state.vaeStep;
      log(`VAE latent std ${sd.toFixed(4)} → scaling_factor ${state.scalingFactor}`);
      await checkpoint(null, 'vae');
    }
    const sf = state.scalingFactor;
    result.scalingFactor = sf;

    // ---- phase 2: UNet, on a pool of pictures encoded once by the frozen VAE (rendering and encoding every
    // batch would cost ~20% of each step); each step draws its batch from the pool and samples z ~ N(mean, std).
    const poolSize = o.poolSize;
    let poolMean: tf.Tensor4D | null = null;
    let poolStd: tf.Tensor4D | null = null;
    const poolCaption: number[] = [];
    if (state.unetStep < o.unetSteps) {
      log(`encoding a pool of ${poolSize} pictures for UNet training`);
      const means: tf.Tensor4D[] = [];
      const stds: tf.Tensor4D[] = [];
      const chunk = 32;
      for (let i = 0; i < poolSize; i += chunk) {
        const n = Math.min(chunk, poolSize - i);
        const pixels = new Float32Array(n * size * size * 3);
        for (let j = 0; j < n; j++) {
          const r = renderScene(poolScene(new Rng(mix(seed, PHASE_SALT.unet, i + j)), size, bgWeights));
          for (let k = 0; k < r.image.length; k++) pixels[j * r.image.length + k] = r.image[k] / 127.5 - 1;
          poolCaption.push(table.get(r.caption) as number);
        }
        const x = tf.tensor4d(pixels, [n, size, size, 3]);
        const { mean, std, logvar } = vae.encode(x);
        tf.dispose([x, logvar]);
        means.push(mean);
        stds.push(std);
        await new Promise((r) => setImmediate(r));
      }
      poolMean = tf.concat(means, 0);
      poolStd = tf.concat(stds, 0);
      tf.dispose([...means, ...stds]);
    }
    unet.setTrainable(true);
    const warmup = 100;
    try {
      const unetOk = await runPhase('unet', unet, o.unetSteps, (step) => {
        const rng = new Rng(mix(seed, PHASE_SALT.unet, 0x7fff_ffff, options.fixedBatch ? 0 : step));
        const idx: number[] = [];
        const ctxIdx: number[] = [];
        const timesteps: number[] = [];
        for (let b = 0; b < o.unetBatch; b++) {
          const k = rng.int(poolSize);
          idx.push(k);
          ctxIdx.push(rng.next() < o.captionDropout ? emptyIndex : poolCaption[k]);
          timesteps.push(rng.int(schedule.numTrainTimesteps));
        }
        const noiseSeed = mix(seed, PHASE_SALT.unet, options.fixedBatch ? 0 : step, 7);
        const inputs = tf.tidy(() => {
          const ids = tf.tensor1d(idx, 'int32');
          const mean = tf.gather(poolMean as tf.Tensor4D, ids);
          const std = tf.gather(poolStd as tf.Tensor4D, ids);
          const z0 = tf.mul(tf.add(mean, tf.mul(std, tf.randomNormal(mean.shape, 0, 1, 'float32', tfSeed(noiseSeed + 1)))), sf);
          let eps = tf.randomNormal(z0.shape, 0, 1, 'float32', tfSeed(noiseSeed));
          if (o.noiseOffset > 0) {
            const [B, , , C] = z0.shape;
            eps = tf.add(eps, tf.mul(tf.randomNormal([B, 1, 1, C], 0, 1, 'float32', tfSeed(noiseSeed + 2)), o.noiseOffset));
          }
          const zt = addNoise(schedule, z0 as tf.Tensor4D, eps as tf.Tensor4D, timesteps);
          const ctx = tf.gather(ctxTable, tf.tensor1d(ctxIdx, 'int32')) as tf.Tensor3D;
          return { zt, eps, ctx };
        });
        const r = tf.variableGrads(() => {
          const pred = unet.forward(inputs.zt, timesteps, inputs.ctx);
          return tf.mean(tf.squaredDifference(pred, inputs.eps)) as tf.Scalar;
        }, unet.trainableVariables());
        tf.dispose([inputs.zt, inputs.eps, inputs.ctx]);
        return { loss: r.value, grads: r.grads };
      }, (step) => o.unetLr * Math.min(1, (step + 1) / warmup));
      if (!unetOk) return finish(false);
    } finally {
      tf.dispose([poolMean, poolStd].filter((t): t is tf.Tensor4D => t !== null));
    }
    result.unetSteps = state.unetStep;
    if (options.fp16 ?? true) await writeFolder(true);
    return finish(true);
  } finally {
    fs.closeSync(lossLog);
    tf.dispose(ctxTable);
    vae.dispose();
    unet.dispose();
    text.dispose();
  }

  function finish(done: boolean): TrainToyResult {
    result.vaeSteps = state.vaeStep;
    result.unetSteps = state.unetStep;
    result.done = done;
    result.seconds = (Date.now() - t0) / 1000;
    return result;
  }
}

/** One line of text for a {@link TrainToyProgress} (`vae  120/1500 [####------] loss 0.01234  0.45 s/step  eta 10m20s`). */
export function formatTrainProgress(p: TrainToyProgress, width = 20): string {
  const filled = Math.round((p.step / Math.max(1, p.total)) * width);
  const eta = Math.round(p.etaSeconds);
  const etaText = eta >= 3600 ? `${Math.floor(eta / 3600)}h${String(Math.floor((eta % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(eta / 60)}m${String(eta % 60).padStart(2, '0')}s`;
  return `${p.phase.padEnd(4)} ${String(p.step).padStart(String(p.total).length)}/${p.total} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] loss ${p.loss.toFixed(5)}  ${p.secondsPerStep.toFixed(2)} s/step  eta ${etaText}`;
}

/** Usage text of `dds-weights train-toy` (for the command table's help). */
export const TRAIN_TOY_HELP = `usage: dds-weights train-toy <outdir> [--preset toy|toy16|micro] [--seed N] [--vae-steps N] [--unet-steps N]
       [--vae-batch N] [--unet-batch N] [--vae-lr X] [--unet-lr X] [--pool-size N] [--pool-background-weights LIST] [--shape-weight X] [--noise-offset X] [--init DIR] [--checkpoint-every N] [--keep-checkpoints]
       [--time-budget SECONDS] [--backend wasm|cpu|tensorflow|webgpu|auto] [--force] [--no-fp16]

Trains the toy-shapes model of @ddsjs/toy-shapes (Stable Diffusion structure: CLIP tokenizer + frozen CLIP text
model, AutoencoderKL, UNet2DConditionModel) on the synthetic shapes world: the VAE, then the UNet (epsilon
prediction, 10% caption dropout). <outdir> is a diffusers folder at every checkpoint; <outdir>/train/ holds the
state, the Adam moments and loss.jsonl. Rerunning the same command resumes from the last checkpoint.
  --preset P           toy (64x64 pictures, 8x8x4 latents; default), toy16 (64x64 pictures, 16x16x4 latents)
                       or micro (16x16 pictures, for tests)
  --seed N             seed of initialisation, data and noise (default 0; must match when resuming)
  --vae-steps N        VAE steps (default 1200)      --unet-steps N   UNet steps (default 2000)
  --vae-batch N        VAE batch (default 4)         --unet-batch N   UNet batch (default 16)
  --vae-lr X           VAE Adam lr (default 1e-3)    --unet-lr X      UNet Adam lr (default 5e-4)
  --pool-size N        pictures pre-encoded for UNet training (default 8192)
  --shape-weight X     weight of shape pixels in the VAE loss (default 5)
  --vae-colour-weight X weight of the VAE's 4x4 block-mean colour term (default 4; 0 = off)
  --vae-latent-colour-weight X  weight of the term tying latent channels 0-2 to each cell's mean RGB (default 0)
  --vae-latent-mask-weight X  weight of the term tying latent channel 3 to the shape's coverage of each cell (default 0)
  --vae-latent-mask-level X   that channel's value on the shape (+X) and the background (-X) (default 2)
  --vae-freeze-encoder train only the VAE decoder (the latents, and a UNet trained on them, stay valid)
  --init DIR           start from the weights and configs of the diffusers folder DIR (fine-tuning; e.g. the
                       decoder of a finished model with --vae-freeze-encoder --unet-steps 0, keeping its scaling_factor)
  --vae-logvar-init X  initial bias of the VAE encoder's logvar channels (default -6: posterior std 0.05)
  --noise-offset X     offset noise in the UNet phase, as diffusers' --noise_offset (default 0; see TrainToyOptions)
  --pool-background-weights LIST  relative frequency of backgrounds in the UNet's pool, e.g. gray=3 (others 1)
  --checkpoint-every N checkpoint interval in steps (default 250)
  --keep-checkpoints   keep each checkpoint's weights in <outdir>/train/checkpoints/ (for dds-weights average)
  --time-budget S      stop cleanly (checkpoint) after S seconds; rerun to resume (Ctrl-C does the same; twice: quit now)
  --backend B          tfjs backend (default wasm)
  --force              start afresh in a non-empty <outdir>
  --no-fp16            skip writing the *.fp16.safetensors variant at the end`;

/** Parsed `dds-weights train-toy` arguments: the {@link trainToy} options plus the backend to use. */
export interface TrainToyArgs {
  /** Options for {@link trainToy}. */
  options: TrainToyOptions;
  /** The tfjs backend to initialise (`--backend`, default wasm). */
  backend: BackendName;
  /** `--help` was given (nothing else is parsed then). */
  help: boolean;
}

/** `gray=3,white=0.5` → `{ gray: 3, white: 0.5 }`; throws naming the flag on a malformed entry. */
function parseBackgroundWeights(text: string): Partial<Record<BackgroundName, number>> {
  const out: Partial<Record<BackgroundName, number>> = {};
  for (const part of text.split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*([^\s]+)\s*$/.exec(part);
    const w = m ? Number(m[2]) : NaN;
    if (!m || !(BACKGROUND_NAMES as readonly string[]).includes(m[1]) || !Number.isFinite(w) || w < 0) {
      throw new Error(`train-toy: --pool-background-weights must look like gray=3,white=1 (backgrounds ${BACKGROUND_NAMES.join(', ')}; weights ≥ 0), got '${text}'`);
    }
    out[m[1] as BackgroundName] = w;
  }
  return out;
}

/**
 * Parses the arguments of `dds-weights train-toy` (after the command name). Throws an Error naming the flag on
 * an unknown flag or a bad number.
 */
export function parseTrainToyArgs(args: string[]): TrainToyArgs {
  const flags = {
    preset: { type: 'string' }, seed: { type: 'string' }, 'vae-steps': { type: 'string' }, 'unet-steps': { type: 'string' },
    'vae-batch': { type: 'string' }, 'unet-batch': { type: 'string' }, 'vae-lr': { type: 'string' }, 'unet-lr': { type: 'string' },
    'pool-size': { type: 'string' }, 'shape-weight': { type: 'string' }, 'vae-logvar-init': { type: 'string' }, 'vae-colour-weight': { type: 'string' }, 'vae-freeze-encoder': { type: 'boolean' }, 'vae-latent-colour-weight': { type: 'string' }, 'vae-latent-mask-weight': { type: 'string' }, 'vae-latent-mask-level': { type: 'string' }, 'checkpoint-every': { type: 'string' }, 'keep-checkpoints': { type: 'boolean' }, 'time-budget': { type: 'string' }, 'noise-offset': { type: 'string' },
    init: { type: 'string' }, 'pool-background-weights': { type: 'string' }, backend: { type: 'string' }, force: { type: 'boolean' }, 'no-fp16': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
  } as const;
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args, options: flags, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (e) {
    throw new Error(`train-toy: ${(e as Error).message}`);
  }
  const v = parsed.values;
  if (v.help) return { options: { outdir: '' }, backend: 'wasm', help: true };
  if (parsed.positionals.length !== 1) {
    throw new Error(`train-toy: expected <outdir>, got ${parsed.positionals.length ? parsed.positionals.map((x) => JSON.stringify(x)).join(' ') : 'nothing'} (see dds-weights train-toy --help)`);
  }
  const num = (name: string, int: boolean): number | undefined => {
    const s = v[name];
    if (s === undefined) return undefined;
    const x = Number(s);
    if (s === '' || !Number.isFinite(x) || (int && !Number.isInteger(x))) throw new Error(`train-toy: --${name} must be ${int ? 'an integer' : 'a number'}, got ${String(s)}`);
    return x;
  };
  const preset = v.preset as string | undefined;
  if (preset !== undefined && !(TOY_PRESETS as readonly string[]).includes(preset)) throw new Error(`train-toy: --preset must be one of ${TOY_PRESETS.join(', ')}, got ${preset}`);
  const backend = (v.backend as string | undefined) ?? 'wasm';
  if (backend !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(backend)) {
    throw new Error(`train-toy: --backend must be auto or one of ${BACKEND_NAMES.join(', ')}, got ${backend}`);
  }
  return {
    help: false,
    backend: backend as BackendName,
    options: {
      outdir: parsed.positionals[0],
      preset: preset as ToyPreset | undefined,
      ...(v.init !== undefined ? { initFrom: v.init as string } : {}),
      seed: num('seed', true),
      vaeSteps: num('vae-steps', true),
      unetSteps: num('unet-steps', true),
      vaeBatch: num('vae-batch', true),
      unetBatch: num('unet-batch', true),
      vaeLr: num('vae-lr', false),
      unetLr: num('unet-lr', false),
      poolSize: num('pool-size', true),
      ...(v['pool-background-weights'] !== undefined ? { poolBackgroundWeights: parseBackgroundWeights(v['pool-background-weights'] as string) } : {}),
      shapeWeight: num('shape-weight', false),
      vaeLogvarInit: num('vae-logvar-init', false),
      vaeLowFreqWeight: num('vae-colour-weight', false),
      vaeFreezeEncoder: v['vae-freeze-encoder'] === true,
      vaeLatentColourWeight: num('vae-latent-colour-weight', false),
      vaeLatentMaskWeight: num('vae-latent-mask-weight', false),
      vaeLatentMaskLevel: num('vae-latent-mask-level', false),
      checkpointEvery: num('checkpoint-every', true),
      keepCheckpoints: v['keep-checkpoints'] === true,
      timeBudgetSeconds: num('time-budget', false),
      noiseOffset: num('noise-offset', false),
      force: !!v.force,
      fp16: !v['no-fp16'],
    },
  };
}

/**
 * Runs `dds-weights train-toy` with `args` (after the command name): initialises the backend, trains, prints a
 * progress line on stderr (redrawn in place on a terminal, every 10 steps otherwise), checkpoints and a summary on
 * `out`. Returns the exit code (0; the training state is kept when stopped by `--time-budget` or by a first Ctrl-C /
 * SIGTERM, which stops after the current step and writes a checkpoint; a second one kills at once). Throws an Error
 * with a one-line message on bad arguments.
 */
export async function runTrainToyCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const a = parseTrainToyArgs(args);
  if (a.help) {
    out(TRAIN_TOY_HELP);
    return 0;
  }
  const backend = await initBackend(a.backend, { quiet: true });
  out(`train-toy: backend ${backend}, outdir ${path.resolve(a.options.outdir)}`);
  const tty = !!process.stderr.isTTY;
  const ctrl = new AbortController();
  const signals = abortOnInterrupt(ctrl, '\ninterrupted: stopping after this step (a checkpoint will be written; rerun to resume)');
  let r: TrainToyResult;
  try {
    r = await trainToy({
      ...a.options,
      signal: ctrl.signal,
      log: (l) => {
        if (tty) process.stderr.write('\n');
        out(l);
      },
      onProgress: (p) => {
        if (tty) process.stderr.write(`\r${formatTrainProgress(p)}`);
        else if (p.step % 10 === 0 || p.step === p.total) process.stderr.write(formatTrainProgress(p) + '\n');
      },
    });
  } finally {
    signals.remove();
  }
  if (tty) process.stderr.write('\n');
  const sps = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)} s/step` : '-');
  out(`train-toy: ${r.done ? 'done' : signals.interrupted() ? 'interrupted (rerun to resume)' : 'stopped (rerun to resume)'}: VAE ${r.vaeSteps} steps (${sps(r.vaeSecondsPerStep)}), UNet ${r.unetSteps} steps (${sps(r.unetSecondsPerStep)}), ${(r.seconds / 60).toFixed(1)} min, scaling_factor ${r.scalingFactor}`);
  return 0;
}
