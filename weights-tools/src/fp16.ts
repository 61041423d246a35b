// `dds-weights to-fp16`: writes the `*.fp16.safetensors` variant beside a folder's float32 weights.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SafetensorsFile, SupportedDtype, TensorArray, isSupportedDtype } from '@ddsjs/safetensors';
import { f32ArrayToF16 } from './numeric';
import { SafetensorsStreamWriter } from './writer';
import { readJsonObject } from './folder';

/** Options of {@link toFp16}. */
export interface ToFp16Options {
  /** Overwrite existing `*.fp16.safetensors` files. */
  force?: boolean;
  /** Called with warnings (values beyond the float16 range, which become ±inf as with torch's `.half()`). */
  warn?: (message: string) => void;
  /** Called after each file is written. */
  onFile?: (src: string, dst: string) => void;
}

/** One file {@link toFp16} wrote. */
export interface ToFp16File {
  /** The float32 source (a .safetensors file or a sharded index). */
  source: string;
  /** The fp16 variant written. */
  output: string;
  /** Tensors converted to F16 / copied with their own dtype (integer buffers). */
  converted: number;
  copied: number;
  /** Values that overflowed to ±inf. */
  overflow: number;
}

const SHARD_RE = /^(.+)-(\d+-of-\d+)\.safetensors$/;

/** The fp16 variant name of a weights file: `x.safetensors` → `x.fp16.safetensors`, shard `x-00001-of-00002.safetensors` → `x.fp16-00001-of-00002.safetensors` (diffusers' naming). */
export function fp16VariantName(file: string): string {
  const m = SHARD_RE.exec(file);
  if (m) return `${m[1]}.fp16-${m[2]}.safetensors`;
  return file.replace(/\.safetensors$/, '.fp16.safetensors');
}

async function convertFile(src: string, dst: string, warn: (m: string) => void): Promise<Omit<ToFp16File, 'source' | 'output'>> {
  const f = await SafetensorsFile.open(src);
  try {
    const specs = f.keys().map((key) => {
      const { dtype, shape } = f.info(key);
      if (!isSupportedDtype(dtype)) throw new Error(`${src}: tensor '${key}' has dtype ${dtype}, which cannot be converted`);
      const float = dtype === 'F32' || dtype === 'F64' || dtype === 'BF16' || dtype === 'F16';
      return { key, dtype: (float ? 'F16' : dtype) as SupportedDtype, shape, float };
    });
    const byKey = new Map(specs.map((s) => [s.key, s]));
    const w = await SafetensorsStreamWriter.create(dst, specs, Object.keys(f.metadata).length ? f.metadata : { format: 'pt' });
    let converted = 0;
    let copied = 0;
    let overflow = 0;
    try {
      for (const key of w.order) {
        const s = byKey.get(key)!;
        if (!s.float) {
          await w.write(key, (await f.read(key)) as TensorArray);
          copied++;
          continue;
        }
        if (f.info(key).dtype === 'F16') {
          await w.write(key, (await f.read(key)) as TensorArray);
        } else {
          const r = f32ArrayToF16(await f.readFloat32(key));
          if (r.overflow) {
            overflow += r.overflow;
            warn(`${src}: '${key}': ${r.overflow} value(s) beyond the float16 range (|x| ≥ 65520) became ±inf, as torch's .half() does`);
          }
          await w.write(key, r.bits);
        }
        converted++;
      }
      await w.finish();
    } catch (e) {
      await w.abort();
      throw e;
    }
    return { converted, copied, overflow };
  } finally {
    await f.close();
  }
}

/**
 * Writes the fp16 variant of every float32 weights file in the component folders of the diffusers folder
 * `dir` (every direct subfolder, e.g. `unet/`, `vae/`, `text_encoder/`): `x.safetensors` → `x.fp16.safetensors`,
 * sharded checkpoints shard by shard plus `x.safetensors.index.fp16.json`. Floating tensors (F32, F64, BF16)
 * are rounded to F16 with round-to-nearest-even, exactly as torch's `.half()` (values beyond the float16 range
 * become ±inf, reported through `warn`); integer tensors (e.g. `position_ids`) keep their dtype; metadata is
 * kept. Tensors are streamed one at a time. Existing fp16 files are an error unless `force`.
 * @returns the files written
 */
export async function toFp16(dir: string, options: ToFp16Options = {}): Promise<ToFp16File[]> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`not a folder: ${dir}`);
  const warn = options.warn ?? (() => undefined);
  const jobs: { src: string; dst: string; index?: { file: string; out: string; json: Record<string, unknown> } }[] = [];
  const subdirs = fs
    .readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => path.join(dir, e.name));
  for (const sub of subdirs) {
    const files = fs.readdirSync(sub);
    const inShards = new Set<string>();
    for (const idx of files.filter((n) => /\.safetensors\.index\.json$/.test(n))) {
      const json = readJsonObject(path.join(sub, idx));
      const map = json.weight_map;
      if (typeof map !== 'object' || map === null) throw new Error(`${path.join(sub, idx)}: no weight_map`);
      const out = path.join(sub, idx.replace(/\.json$/, '.fp16.json'));
      const shards = [...new Set(Object.values(map as Record<string, string>))];
      shards.forEach((s) => inShards.add(s));
      const first = jobs.length;
      for (const s of shards) jobs.push({ src: path.join(sub, s), dst: path.join(sub, fp16VariantName(s)) });
      jobs[first].index = { file: path.join(sub, idx), out, json };
    }
    for (const n of files) {
      if (!/\.safetensors$/.test(n) || /\.fp16[.-]/.test(n) || inShards.has(n)) continue;
      jobs.push({ src: path.join(sub, n), dst: path.join(sub, fp16VariantName(n)) });
    }
  }
  if (jobs.length === 0) throw new Error(`${dir}: no float32 .safetensors weights in its component folders`);
  const exists = jobs.filter((j) => fs.existsSync(j.dst)).map((j) => j.dst);
  if (exists.length && !options.force) throw new Error(`fp16 variant already exists: ${exists.join(', ')} (pass --force to overwrite)`);
  const out: ToFp16File[] = [];
  for (const j of jobs) {
    const r = await convertFile(j.src, j.dst, warn);
    out.push({ source: j.src, output: j.dst, ...r });
    options.onFile?.(j.src, j.dst);
    if (j.index) {
      const map = j.index.json.weight_map as Record<string, string>;
      const newMap = Object.fromEntries(Object.entries(map).map(([k, v]) => [k, fp16VariantName(v)]));
      const json = { ...j.index.json, weight_map: newMap };
      fs.writeFileSync(j.index.out, JSON.stringify(json, null, 2) + '\n');
    }
  }
  return out;
}

/** The files of a translator folder (`@ddsjs/dds` saveTranslator) that {@link shipTranslatorFp16} copies or converts. */
const TRANSLATOR_COPY = ['config.json', 'translator.json'];
const TRANSLATOR_WEIGHTS = ['diffusion_pytorch_model.safetensors', 'task_embeddings.safetensors'];

/**
 * Writes the translator folder `src` (a saved translator or a training checkpoint) to `dst` for shipping: its
 * weights and task embeddings rounded to float16 (as torch's `.half()`, in the same file names; `loadTranslator`
 * reads F16), config.json and translator.json copied, the optimiser state left out (so `dst` cannot be resumed).
 * The files keep their checkpoint stamps, so `dst` loads as one save. `dst` is created or, with `force`, replaced.
 * @returns the number of tensors rounded and of values that overflowed to ±inf
 */
export async function shipTranslatorFp16(src: string, dst: string, options: { force?: boolean; warn?: (m: string) => void } = {}): Promise<{ converted: number; overflow: number }> {
  for (const n of [...TRANSLATOR_COPY, ...TRANSLATOR_WEIGHTS]) if (!fs.existsSync(path.join(src, n))) throw new Error(`${src} is not a translator folder: no ${n}`);
  if (path.resolve(src) === path.resolve(dst)) throw new Error(`shipTranslatorFp16: the destination must differ from the source (${src})`);
  if (fs.existsSync(dst)) {
    if (!options.force) throw new Error(`${dst} exists (pass force to replace it)`);
    for (const n of fs.readdirSync(dst)) fs.rmSync(path.join(dst, n), { recursive: true, force: true });
  }
  fs.mkdirSync(dst, { recursive: true });
  let converted = 0;
  let overflow = 0;
  for (const n of TRANSLATOR_WEIGHTS) {
    const r = await convertFile(path.join(src, n), path.join(dst, n), options.warn ?? (() => undefined));
    converted += r.converted;
    overflow += r.overflow;
  }
  // translator.json last, as saveTranslator does: a folder without it is not a translator.
  for (const n of TRANSLATOR_COPY) fs.copyFileSync(path.join(src, n), path.join(dst, n));
  return { converted, overflow };
}
