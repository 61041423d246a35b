import type * as tf from '@tensorflow/tfjs';

/**
 * The part of a noise schedule that score distillation needs. `loadStableDiffusion(...).schedule` satisfies it.
 */
export interface ScoreSchedule {
  /** ᾱ_t for t = 0 … T−1 (diffusers' `alphas_cumprod`, fp32). */
  readonly alphasCumprod: Float32Array;
  /** What the UNet predicts: the noise (`'epsilon'`) or the velocity (`'v_prediction'`, SD 2.x 768). */
  readonly predictionType: 'epsilon' | 'v_prediction';
  /** VAE latent scaling factor (0.18215 for SD 1.x/2.x); used by the editing loop only. */
  readonly scalingFactor: number;
}

/**
 * A noise-prediction network with the calling convention of `@ddsjs/sd`'s `UNet2DConditionModel`:
 * NHWC `sample [B,h,w,C]`, a timestep (one for the batch, or one per row) and text `context [B,L,D]`;
 * returns the raw model output `[B,h,w,C]`, which the caller owns.
 */
export interface ScoreUNet {
  forward(sample: tf.Tensor4D, timestep: number | tf.Tensor1D, context: tf.Tensor3D): tf.Tensor4D;
}

/** The editing loop's settings a model folder may give (all, or one method's). */
export interface EditSettingsValues {
  readonly lr?: number;
  readonly steps?: number;
  readonly guidanceScale?: number;
}

/**
 * What {@link sdsGrad} and {@link ddsGrad} need from a Stable Diffusion pipeline: the UNet and the schedule.
 * The object returned by `loadStableDiffusion` satisfies it structurally; tests can pass a fake.
 */
export interface ScoreModel {
  readonly unet: ScoreUNet;
  readonly schedule: ScoreSchedule;
  /**
   * The model's own defaults of the editing loop (`loadStableDiffusion` reads them from the folder's
   * `ddsjs_defaults.json`): {@link editLatent} / {@link editImage} use them for the options not given, in place of
   * the notebook's 200 steps, lr 0.1 and guidance 7.5; `edit.methods[method]` (JSON `edit.methods.<method>`) wins
   * over `edit` for that method. `sdsGrad` / `ddsGrad` ignore them.
   */
  readonly defaults?: {
    readonly edit?: EditSettingsValues & { readonly methods?: Readonly<Record<string, EditSettingsValues>> };
  };
}

/** The VAE calls the editing loop uses (NHWC; images in [−1, 1]; latents unscaled). Returned tensors are the caller's. */
export interface EditVae {
  encode(image: tf.Tensor4D): { mean: tf.Tensor4D; std: tf.Tensor4D };
  decode(latents: tf.Tensor4D): tf.Tensor4D;
}

/**
 * What {@link editImage} needs: a {@link ScoreModel} plus the VAE and a prompt encoder
 * (`encodePrompt(prompt) → [1, 77, D]`, caller owns the result). `loadStableDiffusion`'s object satisfies it.
 */
export interface EditModel extends ScoreModel {
  readonly vae: EditVae;
  encodePrompt(prompt: string): tf.Tensor3D;
}

/**
 * A prompt's text embeddings for classifier-free guidance: `cond` = the prompt, `uncond` = the empty (or negative)
 * prompt, each `[1, L, D]` (broadcast to every image of the batch) or `[B, L, D]` (one per image).
 */
export interface TextEmbeddings {
  cond: tf.Tensor3D;
  uncond: tf.Tensor3D;
}

/** How the score is weighted over timesteps: `'uniform'` w(t) = 1, `'sds'` w(t) = 1 − ᾱ_t, or any function of t. */
export type Weighting = 'uniform' | 'sds' | ((t: number) => number);

/** Options shared by {@link sdsGrad} and {@link ddsGrad}. */
export interface ScoreOptions {
  /** Classifier-free guidance scale s in ε̂ = ε_u + s·(ε_c − ε_u). Default 7.5. */
  guidanceScale?: number;
  /**
   * The diffusion timestep: one integer for every image, or one per image (length B). When omitted, each image
   * draws t uniformly from `tRange`.
   */
  timestep?: number | number[];
  /**
   * `[tMin, tMax]`: random timesteps are integers in `tMin … tMax − 2`, as the DDS notebook's
   * `torch.randint(t_min, min(t_max, 1000) − 1)` draws them. Default `[50, 950]`, i.e. t ∈ {50, …, 948}.
   */
  tRange?: [number, number];
  /** The noise ε (same shape as the latents). Default: drawn with `tf.randomNormal` (seeded when `seed` is set). */
  noise?: tf.Tensor4D;
  /**
   * A second shared noise ε′ (same shape as the latents), for scores that use one (PDS's x_{t_prev}). Default: drawn
   * (seeded when `seed` is set).
   */
  noisePrev?: tf.Tensor4D;
  /** Timestep weighting w(t) multiplied into the gradient. Default `'uniform'` (the notebook). */
  weighting?: Weighting;
  /**
   * Multiplies the gradient, to edit a region only: a tensor that broadcasts against `[B, h, w, C]` (e.g.
   * `[1, h, w, 1]`), or a mask at image resolution (`[H, W]`, `[H, W, 1]` or `[1|B, H, W, 1|C]` with H = k·h,
   * W = k·w), averaged over k×k cells down to the latent grid. 1 = edit, 0 = keep.
   */
  mask?: tf.Tensor;
  /**
   * Seed for the timestep draw and the noise: the same seed with the same inputs gives identical results.
   * Without it, timesteps come from `Math.random` and the noise from an unseeded `tf.randomNormal`.
   */
  seed?: number;
  /**
   * At most this many rows per UNet call (the UNet batch is 4·B rows for DDS, 2·B for SDS). Default: all rows in
   * one call. Splitting changes memory use only, not the result.
   */
  unetBatch?: number;
  /**
   * Also return the intermediate tensors (noised latents, raw UNet output, guided noise predictions) in
   * {@link ScoreResult.intermediates}, for debugging and parity tests. Default false.
   */
  intermediates?: boolean;
}

/** Intermediate tensors of a score evaluation (only with `intermediates: true`). The caller owns them. */
export interface ScoreIntermediates {
  /** Noised latents z_t per named latent, in the spec's order: `[target]` for SDS, `[source, target]` for DDS. */
  zt: tf.Tensor4D[];
  /**
   * The raw UNet output of the whole batch, in the order the UNet saw it: the unconditional rows of every term,
   * then the conditional rows, each distinct (latent, embedding) once; SDS `[uncond, cond]`, DDS `[(ẑ, ∅), (z, ∅),
   * (ẑ, ŷ), (z, y)]` (the notebook's order).
   */
  unetRaw: tf.Tensor4D;
  /** Each term's ε̂ (after v→ε conversion, and CFG for guided terms), in term order: DDS `[source, target]`. */
  epsPred: tf.Tensor4D[];
}

/**
 * The result of {@link sdsGrad} / {@link ddsGrad}. The caller owns every tensor in it: dispose them, or call
 * {@link ScoreResult.dispose}.
 */
export interface ScoreResult {
  /** The score (gradient direction) `[B, h, w, C]`: non-finite entries zeroed, weighted and masked. */
  grad: tf.Tensor4D;
  /** The timestep used for each image (length B). */
  timestep: number[];
  /** The noise ε used (a handle of `opts.noise` when one was passed). */
  noise: tf.Tensor4D;
  /** The second noise ε′, for scores that use one (PDS). */
  noisePrev?: tf.Tensor4D;
  /** The second timestep per image (PDS's t_prev), for scores that use one. */
  prevTimestep?: number[];
  /** Intermediates, when `opts.intermediates` was set. */
  intermediates?: ScoreIntermediates;
  /** ‖grad‖₂ over the whole batch, read asynchronously (a cheap diagnostic; does not dispose anything). */
  gradNorm(): Promise<number>;
  /** Disposes every tensor of this result (grad, noise, ε′, intermediates). */
  dispose(): void;
}
