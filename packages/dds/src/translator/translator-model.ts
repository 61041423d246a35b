// The zero-shot image-to-image translation network of the DDS paper (Section 5): the network (`Translator`), its
// tasks and the fingerprint of the teacher it was built from. Its construction and folder format: translator.ts;
// training: translator-train.ts.
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { Module } from '@ddsjs/nn';
import { imageToLatents, latentsToImage, UNet2DConditionModel } from '@ddsjs/sd';
import { UNet2DConditionConfig } from '@ddsjs/sd/internals';
import type { StableDiffusion } from '@ddsjs/sd';
import { InvalidArgumentError } from '@ddsjs/safetensors';
import type { EditVae } from '../score/types';

/** One translation task: pictures described by `source` are turned into pictures described by `target`. */
export interface TranslatorTask {
  /** The prompt describing the input pictures (their domain), e.g. `'a photo of a cat'`. */
  source: string;
  /** The prompt describing the wanted output, e.g. `'a photo of a lion'`. */
  target: string;
}

/**
 * Which task a translation runs: an index into {@link Translator.tasks}, a `{ source, target }` pair equal to one
 * of them, or a prompt string. A prompt string selects the conditioning directly and must be one of
 * {@link Translator.prompts} (every task's target and source prompt; a source prompt asks for "the picture's own
 * domain", which is what the identity and cycle regularisers train).
 */
export type TranslatorTaskRef = number | string | TranslatorTask;

/** The timestep the student UNet is always called with (its time embedding is then a constant). */
export const DEFAULT_STUDENT_TIMESTEP = 0;

/** What is known about the teacher a translator was built from (recorded in translator.json). */
export interface TeacherRecord {
  /** Where the teacher was loaded from (`StableDiffusion.source`), for people; never used to load it. */
  source: string;
  /** {@link teacherFingerprint} of the teacher. */
  fingerprint: TeacherFingerprint;
}

/**
 * A backend-independent fingerprint of a Stable Diffusion pipeline: per component, the SHA-256 of its config and of
 * every parameter's name, shape and first 64 float32 values (exact copies of the checkpoint's numbers). `unet` is
 * null when the UNet's weights are offloaded to JavaScript memory (they cannot be read then).
 */
export interface TeacherFingerprint {
  unet: string | null;
  vae: string;
  textEncoder: string;
}

/** The image side of a teacher, for {@link Translator.translateImage}: its VAE and latent scaling factor. */
export interface TranslatorImageModel {
  readonly vae: EditVae;
  readonly schedule: { readonly scalingFactor: number };
}

/** Training state recorded in translator.json by the trainer (see `trainTranslator`). */
export interface TranslatorTrainingRecord {
  /** Optimisation steps done. */
  step: number;
  /** Options that determine the training trajectory (compared on resume). */
  options: Record<string, unknown>;
  /** Summary of the training data: latent shape, count per source prompt, SHA-256 of the latents. */
  data: { shape: number[]; counts: Record<string, number>; sha256: string };
  /** Wall-clock seconds spent training, over all runs. */
  seconds: number;
}


/** Throws `Err` (default InvalidArgumentError) with the message `fn: msg`. */
export function fail(fn: string, msg: string, Err: new (message: string) => Error = InvalidArgumentError): never {
  throw new Err(`${fn}: ${msg}`);
}

/** A short description of a value for error messages: a tensor's shape, else its type. */
export function describe(x: unknown): string {
  if (x instanceof tf.Tensor) return `a tensor of shape [${x.shape}]`;
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  return typeof x;
}

/** Validates a task list: a non-empty array of `{ source: string, target: string }` without duplicates. */
export function checkTasks(fn: string, tasks: unknown): TranslatorTask[] {
  if (!Array.isArray(tasks) || tasks.length === 0) {
    fail(fn, `tasks must be a non-empty array of { source, target } prompts, got ${Array.isArray(tasks) ? 'an empty array' : describe(tasks)}`);
  }
  const seen = new Set<string>();
  return tasks.map((t, i) => {
    if (!t || typeof t !== 'object' || typeof (t as TranslatorTask).source !== 'string' || typeof (t as TranslatorTask).target !== 'string') {
      fail(fn, `tasks[${i}] must be { source: string, target: string }, got ${JSON.stringify(t)}`);
    }
    const { source, target } = t as TranslatorTask;
    if (target.trim() === '') fail(fn, `tasks[${i}].target must not be empty`);
    const key = JSON.stringify([source, target]);
    if (seen.has(key)) fail(fn, `tasks[${i}] repeats the task ${JSON.stringify({ source, target })}`);
    seen.add(key);
    return { source, target };
  });
}

/** The prompts a translator keeps embeddings for: every task's target, then every task's source (unique, in order). */
export function taskPrompts(tasks: readonly TranslatorTask[]): string[] {
  const out: string[] = [];
  for (const p of [...tasks.map((t) => t.target), ...tasks.map((t) => t.source)]) if (!out.includes(p)) out.push(p);
  return out;
}

/**
 * A diffusers `config.json` object for a parsed UNet config (inverse of `@ddsjs/sd`'s `parseUNetConfig`:
 * `parseUNetConfig(unetConfigToJson(c))` equals `c` except for `file`). Head counts are written as
 * `attention_head_dim`, as SD 1.x/2.x configs do (diffusers reads them as head counts).
 */
export function unetConfigToJson(c: UNet2DConditionConfig): Record<string, unknown> {
  // Per-block values that are all equal are written as one number (as diffusers configs usually do), so that a
  // studentConfig changing the number of blocks needs not restate them.
  const perBlock = (v: readonly number[]): number | number[] => (v.every((x) => x === v[0]) ? v[0] : [...v]);
  const json: Record<string, unknown> = {
    _class_name: 'UNet2DConditionModel',
    act_fn: c.actFn,
    attention_head_dim: perBlock(c.numAttentionHeads),
    block_out_channels: [...c.blockOutChannels],
    center_input_sample: c.centerInputSample,
    conv_in_kernel: c.convInKernel,
    conv_out_kernel: c.convOutKernel,
    cross_attention_dim: perBlock(c.crossAttentionDim),
    down_block_types: [...c.downBlockTypes],
    downsample_padding: c.downsamplePadding,
    flip_sin_to_cos: c.flipSinToCos,
    freq_shift: c.freqShift,
    in_channels: c.inChannels,
    layers_per_block: perBlock(c.layersPerBlock),
    mid_block_scale_factor: c.midBlockScaleFactor,
    mid_block_type: c.midBlockType,
    norm_eps: c.normEps,
    norm_num_groups: c.normNumGroups,
    out_channels: c.outChannels,
    sample_size: c.sampleSize,
    time_embedding_dim: c.timeEmbedDim,
    transformer_layers_per_block: perBlock(c.transformerLayersPerBlock),
    up_block_types: [...c.upBlockTypes],
    upcast_attention: c.upcastAttention,
    use_linear_projection: c.useLinearProjection,
  };
  if (c.reverseTransformerLayersPerBlock) json.reverse_transformer_layers_per_block = [...c.reverseTransformerLayersPerBlock];
  return json;
}

/** SHA-256 of a module's config and of every parameter's name, shape and first 64 values; null when offloaded. */
export async function moduleFingerprint(m: Module, config: unknown): Promise<string | null> {
  const h = createHash('sha256');
  h.update(JSON.stringify(config, (k, v) => (k === 'file' ? undefined : v)));
  for (const [name, p] of m.namedParameters()) {
    if (!p.isSet) return null;
    h.update(`${name}:${p.shape.join('x')};`);
    const size = p.shape.reduce((a, b) => a * b, 1);
    const head = tf.tidy(() => tf.slice(tf.reshape(p.value, [-1]), [0], [Math.min(64, size)]));
    try {
      const d = (await head.data()) as Float32Array;
      h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    } finally {
      head.dispose();
    }
  }
  return h.digest('hex');
}

/**
 * The {@link TeacherFingerprint} of a loaded pipeline (reads 64 values of every parameter: cheap, asynchronous,
 * and the same on every backend).
 */
export async function teacherFingerprint(sd: Pick<StableDiffusion, 'unet' | 'vae' | 'textEncoder' | 'configs'>): Promise<TeacherFingerprint> {
  return {
    unet: await moduleFingerprint(sd.unet, sd.configs.unet),
    vae: (await moduleFingerprint(sd.vae, sd.configs.vae)) ?? fail('teacherFingerprint', 'the VAE has unloaded parameters'),
    textEncoder:
      (await moduleFingerprint(sd.textEncoder, sd.configs.textEncoder)) ?? fail('teacherFingerprint', 'the text encoder has unloaded parameters'),
  };
}

/** `z + unet(z, t, context)` with `context [1, L, D]` broadcast to the batch. Differentiable; caller owns the result. */
export function residualForward(unet: UNet2DConditionModel, z: tf.Tensor4D, timestep: number, context: tf.Tensor3D): tf.Tensor4D {
  return tf.tidy(() => {
    const b = z.shape[0];
    const ctx = context.shape[0] === b ? context : (tf.tile(context, [b, 1, 1]) as tf.Tensor3D);
    return tf.add(z, unet.forward(z, timestep, ctx)) as tf.Tensor4D;
  });
}

/**
 * The zero-shot image-to-image translation network of the DDS paper: a student `UNet2DConditionModel` that reads a
 * source latent ẑ and a task's prompt embedding (through cross-attention) and returns the edited latent as a
 * residual, `f(ẑ, y) = ẑ + unet(ẑ, studentTimestep, y)`, in one forward pass.
 *
 * The translator owns its student UNet and its prompt embeddings (`dispose()` frees them); it never owns the
 * teacher. Create one with {@link createTranslator} (untrained: the identity), `trainTranslator`, or
 * {@link loadTranslator}.
 */
export class Translator {
  /** The tasks the network was built for. */
  readonly tasks: readonly TranslatorTask[];
  /** The prompts with stored embeddings, in the order of {@link Translator.embeddings}. */
  readonly prompts: readonly string[];
  private disposed = false;

  /**
   * Low-level constructor (prefer {@link createTranslator} / {@link loadTranslator}). Takes ownership of `unet`
   * and `embeddings` (`[P, L, D]`, one row per prompt of `prompts`).
   */
  constructor(
    /** The student network (owned by the translator; trainable). */
    readonly unet: UNet2DConditionModel,
    tasks: readonly TranslatorTask[],
    prompts: readonly string[],
    /** The prompts' text embeddings `[P, L, D]` (owned by the translator; do not dispose). */
    readonly embeddings: tf.Tensor3D,
    /** The timestep the student is called with. */
    readonly studentTimestep: number,
    /** The teacher the translator was built from, when known. */
    public teacher: TeacherRecord | null = null,
    /** The VAE used by {@link Translator.translateImage} (a teacher pipeline), when known. Not owned. */
    public imageModel: TranslatorImageModel | null = null,
    /** Training state (steps done, options, data summary); null for an untrained translator. */
    public training: TranslatorTrainingRecord | null = null,
  ) {
    const fn = 'Translator';
    this.tasks = checkTasks(fn, tasks);
    if (!Array.isArray(prompts) || prompts.some((p) => typeof p !== 'string')) fail(fn, 'prompts must be an array of strings');
    this.prompts = [...prompts];
    for (const p of taskPrompts(this.tasks)) if (!this.prompts.includes(p)) fail(fn, `no embedding for the task prompt ${JSON.stringify(p)}`);
    if (!(embeddings instanceof tf.Tensor) || embeddings.rank !== 3 || embeddings.shape[0] !== this.prompts.length) {
      fail(fn, `embeddings must be [${this.prompts.length}, L, D] (one row per prompt), got ${describe(embeddings)}`);
    }
    const cross = unet.config.crossAttentionDim;
    if (cross.some((d) => d !== embeddings.shape[2])) {
      fail(fn, `embeddings are ${embeddings.shape[2]} wide but the student's cross_attention_dim is ${cross}`);
    }
    if (!Number.isFinite(studentTimestep)) fail(fn, `studentTimestep must be a finite number, got ${studentTimestep}`);
  }

  /** Latent channels the network reads and writes. */
  get latentChannels(): number {
    return this.unet.config.inChannels;
  }

  /** Optimisation steps the network has been trained for (0 when untrained). */
  get stepsDone(): number {
    return this.training?.step ?? 0;
  }

  private check(fn: string): void {
    if (this.disposed) fail(fn, 'the translator has been disposed');
  }

  /**
   * The conditioning prompt a task reference selects (see {@link TranslatorTaskRef}). Throws, listing the known
   * tasks and prompts, when it names none of them.
   */
  promptOf(task: TranslatorTaskRef, fn = 'Translator'): string {
    const known = () =>
      `known tasks: ${this.tasks.map((t, i) => `${i}: ${JSON.stringify(t.source)} → ${JSON.stringify(t.target)}`).join('; ')}`;
    if (typeof task === 'number') {
      if (!Number.isInteger(task) || task < 0 || task >= this.tasks.length) fail(fn, `unknown task index ${task} (${known()})`);
      return this.tasks[task].target;
    }
    if (typeof task === 'string') {
      if (!this.prompts.includes(task)) {
        fail(fn, `unknown task ${JSON.stringify(task)}: not a prompt this translator was trained with (prompts: ${this.prompts.map((p) => JSON.stringify(p)).join(', ')})`);
      }
      return task;
    }
    if (task && typeof task === 'object' && typeof task.source === 'string' && typeof task.target === 'string') {
      const t = this.tasks.find((k) => k.source === task.source && k.target === task.target);
      if (!t) fail(fn, `unknown task ${JSON.stringify({ source: task.source, target: task.target })} (${known()})`);
      return t.target;
    }
    return fail(fn, `task must be a task index, a prompt or { source, target }, got ${describe(task)}`);
  }

  /** The embedding `[1, L, D]` of the prompt a task reference selects. The caller owns it. */
  embedding(task: TranslatorTaskRef): tf.Tensor3D {
    this.check('Translator.embedding');
    const i = this.prompts.indexOf(this.promptOf(task, 'Translator.embedding'));
    return tf.slice(this.embeddings, [i, 0, 0], [1, -1, -1]) as tf.Tensor3D;
  }

  /**
   * Translates latents: `z` is `[B, h, w, C]` (scaled VAE latents, C = {@link Translator.latentChannels}; h and w
   * any size the UNet accepts), `task` one task for the whole batch. Returns `[B, h, w, C]`, which the caller owns;
   * `z` is not disposed. Differentiable with respect to the student's variables (used by training).
   */
  translateLatent(z: tf.Tensor4D, task: TranslatorTaskRef): tf.Tensor4D {
    const fn = 'Translator.translateLatent';
    this.check(fn);
    const c = this.latentChannels;
    if (!(z instanceof tf.Tensor) || z.rank !== 4 || z.shape[3] !== c || z.shape[0] < 1 || z.shape[1] < 1 || z.shape[2] < 1) {
      fail(fn, `the latent must be a tensor [B, h, w, ${c}], got ${describe(z)}`);
    }
    if (z.dtype !== 'float32') fail(fn, `the latent must be float32, got ${z.dtype}`);
    const prompt = this.promptOf(task, fn);
    const i = this.prompts.indexOf(prompt);
    return tf.tidy(() => {
      const emb = tf.slice(this.embeddings, [i, 0, 0], [1, -1, -1]) as tf.Tensor3D;
      return residualForward(this.unet, z, this.studentTimestep, emb);
    });
  }

  /**
   * Translates pictures: `image` is `[B, H, W, 3]` in [−1, 1] (e.g. from `@ddsjs/sd`'s `loadImageForEdit`), H and
   * W multiples of 8. Encodes with the teacher's VAE (`mean × scalingFactor`, as the DDS notebook), translates,
   * decodes. Returns `{ image: [B, H, W, 3] in [0, 1], latent: [B, H/8, W/8, C] }`; the caller owns both.
   * Needs {@link Translator.imageModel} (pass the teacher to `loadTranslator(dir, sd)`).
   */
  translateImage(image: tf.Tensor4D, task: TranslatorTaskRef): { image: tf.Tensor4D; latent: tf.Tensor4D } {
    const fn = 'Translator.translateImage';
    this.check(fn);
    const m = this.imageModel;
    if (!m) fail(fn, 'no VAE to encode and decode pictures: load the translator with its teacher, loadTranslator(dir, sd), or translate latents');
    if (!(image instanceof tf.Tensor) || image.rank !== 4 || image.shape[3] !== 3) {
      fail(fn, `the image must be a tensor [B, H, W, 3] in [-1, 1], got ${describe(image)}`);
    }
    const [, H, W] = image.shape;
    if (H % 8 !== 0 || W % 8 !== 0 || H === 0 || W === 0) fail(fn, `the image is ${W}×${H} pixels; both sides must be multiples of 8`);
    this.promptOf(task, fn);
    const latent = tf.tidy(() => this.translateLatent(imageToLatents(m, image), task));
    try {
      const out = latentsToImage(m, latent);
      return { image: out, latent };
    } catch (e) {
      latent.dispose();
      throw e;
    }
  }

  /**
   * Translates a latent or a picture, returning the same kind: a latent `[B, h, w, C]` (C =
   * {@link Translator.latentChannels}) gives the translated latent ({@link Translator.translateLatent}); a picture
   * `[B, H, W, 3]` in [−1, 1] gives the translated picture in [0, 1] ({@link Translator.translateImage}, latent
   * freed). The caller owns the result; the input is not disposed.
   */
  translate(input: tf.Tensor4D, task: TranslatorTaskRef): tf.Tensor4D {
    const fn = 'Translator.translate';
    if (!(input instanceof tf.Tensor) || input.rank !== 4) fail(fn, `input must be a latent [B, h, w, ${this.latentChannels}] or a picture [B, H, W, 3], got ${describe(input)}`);
    const ch = input.shape[3];
    if (ch === this.latentChannels) return this.translateLatent(input, task);
    if (ch === 3) {
      const r = this.translateImage(input, task);
      r.latent.dispose();
      return r.image;
    }
    return fail(fn, `input has ${ch} channels: expected a latent [B, h, w, ${this.latentChannels}] or a picture [B, H, W, 3]`);
  }

  /** Frees the student's weights and the embeddings (not the teacher). The translator cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.unet.dispose();
    this.embeddings.dispose();
  }

  /** Whether {@link Translator.dispose} was called. */
  get isDisposed(): boolean {
    return this.disposed;
  }
}
