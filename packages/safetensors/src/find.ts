import { promises as fsp } from 'fs';
import * as nodePath from 'path';
import { SafetensorsError } from './errors';

/**
 * The candidate file names, in order of preference, for a weights file `baseName` in a diffusers /
 * transformers folder: with a variant (e.g. 'fp16') `name.fp16.safetensors` then the sharded index
 * `name.safetensors.index.fp16.json`; without one `name.safetensors` then `name.safetensors.index.json`.
 */
export function safetensorsCandidates(baseName: string, variant?: string): string[] {
  return variant
    ? [`${baseName}.${variant}.safetensors`, `${baseName}.safetensors.index.${variant}.json`]
    : [`${baseName}.safetensors`, `${baseName}.safetensors.index.json`];
}

/**
 * Finds the weights of a model folder, following the diffusers/transformers naming conventions
 * (see {@link safetensorsCandidates}); the result can be passed to {@link SafetensorsFile.open}.
 * There is no silent fallback: asking for variant 'fp16' never returns the fp32 file.
 *
 * @param dir folder, e.g. `…/unet`
 * @param baseName e.g. 'diffusion_pytorch_model' or 'model'
 * @param variant e.g. 'fp16' (optional)
 * @returns path of the first candidate that exists
 * @throws SafetensorsError listing the candidates tried when none exists
 */
export async function findSafetensors(dir: string, baseName: string, variant?: string): Promise<string> {
  const candidates = safetensorsCandidates(baseName, variant);
  for (const name of candidates) {
    const p = nodePath.join(dir, name);
    try {
      if ((await fsp.stat(p)).isFile()) return p;
    } catch {
      // try the next candidate
    }
  }
  throw new SafetensorsError(
    `no safetensors weights ${variant ? `(variant ${variant}) ` : ''}for ${baseName} in ${dir}: tried ${candidates.join(', ')}`,
    { file: nodePath.join(dir, candidates[0]) },
  );
}
