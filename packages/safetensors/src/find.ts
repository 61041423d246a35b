import type * as NodeFs from 'fs';
import type * as NodePath from 'path';
import { SafetensorsError } from './errors';
import { nodeBuiltin } from './node-source';
import { FetchLike, UrlSourceOptions, defaultFetch, isUrl, joinUrl } from './source';

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
 * `dir` may be an `http(s):` URL (in a browser, the only kind): each candidate is then probed with a HEAD request
 * (a one-byte ranged GET where the server answers HEAD with 405/501), and the first that exists wins.
 *
 * @param dir folder, e.g. `…/unet`, or its URL
 * @param baseName e.g. 'diffusion_pytorch_model' or 'model'
 * @param variant e.g. 'fp16' (optional)
 * @param options `fetch` and `signal` for URLs
 * @returns path (or URL) of the first candidate that exists
 * @throws SafetensorsError listing the candidates tried when none exists
 */
export async function findSafetensors(dir: string, baseName: string, variant?: string, options: UrlSourceOptions = {}): Promise<string> {
  const candidates = safetensorsCandidates(baseName, variant);
  if (isUrl(dir)) {
    const fetchFn: FetchLike = options.fetch ?? defaultFetch();
    for (const name of candidates) {
      const url = joinUrl(dir, name);
      try {
        const head = await fetchFn(url, { method: 'HEAD', signal: options.signal });
        if (head.ok) return url;
        if (head.status !== 405 && head.status !== 501) continue;
        // A server without HEAD: a one-byte ranged GET (a server that also ignores Range sends the whole file).
        const res = await fetchFn(url, { headers: { Range: 'bytes=0-0' }, signal: options.signal });
        if (res.ok) {
          await res.arrayBuffer().catch(() => undefined);
          return url;
        }
      } catch {
        // try the next candidate
      }
    }
    throw new SafetensorsError(
      `no safetensors weights ${variant ? `(variant ${variant}) ` : ''}for ${baseName} at ${dir}: tried ${candidates.join(', ')}`,
      { file: joinUrl(dir, candidates[0]) },
    );
  }
  const fsp = nodeBuiltin<typeof NodeFs>('fs', `findSafetensors(${dir})`).promises;
  const nodePath = nodeBuiltin<typeof NodePath>('path', `findSafetensors(${dir})`);
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
