// Loads the real tiny-sd15 components for the parity tests (not a test file).
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import type { StateDictSource } from '@ddsjs/nn';
import { SafetensorsFile } from '@ddsjs/safetensors';
import { Golden, TINY_SD15, goldenTensor } from '../../../test-utils';
import { loadUNetConfig, loadVaeConfig } from '../../sd/src/config';
import { UNet2DConditionModel } from '../../sd/src/unet';
import { AutoencoderKL } from '../../sd/src/vae';
import { safetensorsSource } from '../../sd/src/sources';
import type { TextEmbeddings } from '../src';
import type { ScoreSchedule } from '../src/internals';

async function loadWeights(module: { loadStateDict(s: StateDictSource): Promise<void> }, file: string): Promise<void> {
  const f = await SafetensorsFile.open(file);
  try {
    await module.loadStateDict(safetensorsSource(f, { name: file }));
  } finally {
    await f.close();
  }
}

/** The tiny UNet with its fp32 weights. The caller disposes it. */
export async function loadTinyUNet(): Promise<UNet2DConditionModel> {
  const dir = path.join(TINY_SD15, 'unet');
  const unet = new UNet2DConditionModel(await loadUNetConfig(dir));
  await loadWeights(unet, path.join(dir, 'diffusion_pytorch_model.safetensors'));
  return unet;
}

/** The tiny VAE with its fp32 weights. The caller disposes it. */
export async function loadTinyVae(): Promise<AutoencoderKL> {
  const dir = path.join(TINY_SD15, 'vae');
  const vae = new AutoencoderKL(await loadVaeConfig(dir));
  await loadWeights(vae, path.join(dir, 'diffusion_pytorch_model.safetensors'));
  return vae;
}

/** The SD 1.5 schedule with ᾱ_t taken from the scheduler golden (diffusers' own fp32 values). */
export function goldenSchedule(g: Record<string, Golden>): ScoreSchedule {
  return { alphasCumprod: Float32Array.from(g.alphas_cumprod.data), predictionType: 'epsilon', scalingFactor: 0.18215 };
}

/** Splits a golden embedding [1, 2, 77, D] (index 0 = unconditional) into { cond, uncond } [1, 77, D]. Caller owns them. */
export function goldenEmbeddings(g: Golden): TextEmbeddings {
  const [, , l, d] = g.shape;
  return tf.tidy(() => {
    const t = goldenTensor(g) as tf.Tensor4D;
    return {
      uncond: tf.reshape(tf.slice(t, [0, 0, 0, 0], [1, 1, l, d]), [1, l, d]) as tf.Tensor3D,
      cond: tf.reshape(tf.slice(t, [0, 1, 0, 0], [1, 1, l, d]), [1, l, d]) as tf.Tensor3D,
    };
  });
}

/**
 * A golden as a tensor, NCHW → NHWC for rank-4 and rank-5 (leading step axis) goldens. Caller owns it.
 * (test-utils' goldenTensor(g, true) leaks its NCHW intermediate; this one does not.)
 */
export function nhwc(g: Golden): tf.Tensor {
  return tf.tidy(() => {
    const t = tf.tensor(g.data, g.shape, 'float32');
    if (g.shape.length === 4) return tf.transpose(t, [0, 2, 3, 1]);
    if (g.shape.length === 5) return tf.transpose(t, [0, 1, 3, 4, 2]);
    return t;
  });
}

/** Step `i` of a golden with a leading step axis [S, 1, C, h, w] (NCHW) as an NHWC [1, h, w, C] tensor. Caller owns it. */
export function goldenStep(g: Golden, i: number): tf.Tensor4D {
  const [, n, c, h, w] = g.shape;
  const size = n * c * h * w;
  return tf.tidy(() => tf.transpose(tf.tensor4d(g.data.subarray(i * size, (i + 1) * size), [n, c, h, w]), [0, 2, 3, 1]));
}
