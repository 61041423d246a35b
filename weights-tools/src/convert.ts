// `dds-weights convert-single-file`: an LDM/CompVis single-file checkpoint → a diffusers folder.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { StateDictSource } from '@ddsjs/nn';
import { SafetensorsFile } from '@ddsjs/safetensors';
import {
  parseCLIPTextConfig,
  parseSchedulerConfig,
  parseUNetConfig,
  parseVaeConfig,
  safetensorsSource,
  resolveSingleFileConfigs,
  singleFileSources,
  SingleFileModelType,
} from '@ddsjs/sd/internals';
import {
  COMPONENTS,
  ComponentName,
  ParamSpec,
  componentParams,
  prepareOutdir,
  weightsFileName,
  writeConfigs,
  writeTokenizer,
} from './folder';
import { f32ArrayToF16 } from './numeric';
import { SafetensorsStreamWriter } from './writer';

/** Options of {@link convertSingleFile}. */
export interface ConvertSingleFileOptions {
  /** A diffusers folder whose configs (and tokenizer) describe the checkpoint's architecture. */
  configFrom?: string;
  /** Overrides the scheduler's prediction type (SD 2.x-base checkpoints are 'epsilon'). */
  predictionType?: 'epsilon' | 'v_prediction';
  /** Write float16 weights as the `*.fp16.safetensors` variant instead of float32 `*.safetensors`. */
  fp16?: boolean;
  /** Write into an existing non-empty `outdir` (files are overwritten). */
  force?: boolean;
  /** Called after each tensor is written. */
  onProgress?: (done: number, total: number, key: string) => void;
  /** Called with warnings (e.g. fp16 overflow); default: ignored. */
  warn?: (message: string) => void;
}

/** What {@link convertSingleFile} wrote. */
export interface ConvertSingleFileResult {
  /** Detected model family. */
  modelType: SingleFileModelType;
  /** Where the architecture configs came from (a folder, or `built-in sd15|sd21`). */
  configSource: string;
  /** Per component: the weights file written, its tensor and parameter counts. */
  components: Record<ComponentName, { file: string; tensors: number; parameters: number }>;
  /** Checkpoint keys outside the UNet / VAE / text-encoder prefixes (EMA copies, …), which are not written. */
  otherKeys: number;
}


/**
 * Checks that `source` presents exactly the parameters `expected` (names and PyTorch shapes); returns the
 * source keys not needed. `allowExtra` tolerates unused keys (the text encoder's position_ids buffer and the
 * extra OpenCLIP layer); otherwise unexpected keys are an error too.
 */
function checkKeys(component: string, source: StateDictSource, expected: ParamSpec[], allowExtra: boolean): number {
  const have = new Set(source.keys());
  const want = new Set(expected.map((p) => p.key));
  const missing = expected.filter((p) => !have.has(p.key)).map((p) => p.key);
  const extra = [...have].filter((k) => !want.has(k));
  const misShaped: string[] = [];
  for (const p of expected) {
    if (!have.has(p.key)) continue;
    const s = source.shape(p.key);
    if (s.length !== p.shape.length || s.some((d, i) => d !== p.shape[i])) misShaped.push(`${p.key} [${s}] (expected [${p.shape}])`);
  }
  const problems: string[] = [];
  if (missing.length) problems.push(`missing ${missing.length}: ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''}`);
  if (extra.length && !allowExtra) problems.push(`unexpected ${extra.length}: ${extra.slice(0, 10).join(', ')}${extra.length > 10 ? ', …' : ''}`);
  if (misShaped.length) problems.push(`mis-shaped ${misShaped.length}: ${misShaped.slice(0, 10).join(', ')}`);
  if (problems.length) throw new Error(`${component}: the checkpoint does not match the config: ${problems.join('; ')}`);
  return extra.length;
}

/**
 * Converts an LDM/CompVis single-file Stable Diffusion 1.x/2.x checkpoint (`.safetensors`) into a diffusers
 * folder `outdir`: `model_index.json`, `unet/`, `vae/`, `text_encoder/` (configs + weights under diffusers /
 * transformers key names), `tokenizer/` and `scheduler/`. The architecture comes from `configFrom`, else from the
 * checkpoint's own folder when it holds diffusers configs, else from the detected model's built-in configs
 * (with the bundled CLIP vocabulary and the model's pad token). Weights are streamed one tensor at a time,
 * one component after another, as float32 (default) or with `fp16` as the `*.fp16.safetensors` variant.
 *
 * Throws an Error naming the file / key when the checkpoint is not a supported model, does not match the
 * configs, or `outdir` exists and is not empty (unless `force`).
 */
export async function convertSingleFile(
  file: string,
  outdir: string,
  options: ConvertSingleFileOptions = {},
): Promise<ConvertSingleFileResult> {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new Error(`checkpoint not found: ${file}`);
  if (!/\.safetensors$/i.test(file)) throw new Error(`${file}: only .safetensors single-file checkpoints are supported`);
  if (options.predictionType !== undefined && !['epsilon', 'v_prediction'].includes(options.predictionType)) {
    throw new Error(`--prediction-type must be epsilon or v_prediction, got ${JSON.stringify(options.predictionType)}`);
  }
  if (options.configFrom !== undefined && !fs.existsSync(options.configFrom)) throw new Error(`--config-from ${options.configFrom}: not found`);
  const f = await SafetensorsFile.open(file);
  try {
    const keys = f.keys();
    const { detected, raw, configDir, configSource } = resolveSingleFileConfigs(
      file,
      keys,
      (k) => f.info(k).shape,
      options,
      'pass --config-from a diffusers folder with matching configs',
    );
    const parsed = {
      unet: parseUNetConfig(raw.unet, `${configSource}: unet/config.json`),
      vae: parseVaeConfig(raw.vae, `${configSource}: vae/config.json`),
      textEncoder: parseCLIPTextConfig(raw.textEncoder, `${configSource}: text_encoder/config.json`),
    };
    parseSchedulerConfig(raw.scheduler, `${configSource}: scheduler/scheduler_config.json`);
    const sources = singleFileSources(safetensorsSource(f, { name: file }), parsed, detected.textEncoder, file);
    const bySource: Record<ComponentName, StateDictSource> = { unet: sources.unet, vae: sources.vae, text_encoder: sources.textEncoder };
    const expected = componentParams(raw);
    let used = 0;
    for (const c of COMPONENTS) {
      checkKeys(c.name, bySource[c.name], expected[c.name], c.name === 'text_encoder');
      used += expected[c.name].length;
    }

    prepareOutdir(outdir, options.force);
    writeConfigs(outdir, raw);
    const tokDir = configDir && fs.existsSync(path.join(configDir, 'tokenizer', 'vocab.json')) ? path.join(configDir, 'tokenizer') : undefined;
    writeTokenizer(outdir, detected.configs.tokenizer.pad_token, tokDir);

    const total = used;
    let done = 0;
    const components = {} as ConvertSingleFileResult['components'];
    for (const c of COMPONENTS) {
      const params = expected[c.name];
      const dst = path.join(outdir, c.name, weightsFileName(c.base, !!options.fp16));
      const w = await SafetensorsStreamWriter.create(
        dst,
        params.map((p) => ({ key: p.key, dtype: options.fp16 ? 'F16' : 'F32', shape: p.shape })),
        { format: 'pt' },
      );
      try {
        let overflow = 0;
        for (const key of w.order) {
          const data = await bySource[c.name].read(key);
          if (options.fp16) {
            const r = f32ArrayToF16(data);
            if (r.overflow) overflow += r.overflow;
            if (r.overflow) options.warn?.(`${c.name}/${key}: ${r.overflow} value(s) beyond the float16 range became ±inf`);
            await w.write(key, r.bits);
          } else {
            await w.write(key, data);
          }
          options.onProgress?.(++done, total, `${c.name}/${key}`);
        }
        await w.finish();
      } catch (e) {
        await w.abort();
        throw e;
      }
      components[c.name] = { file: dst, tensors: params.length, parameters: params.reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0) };
    }
    return { modelType: detected.modelType, configSource, components, otherKeys: keys.filter((k) => !LDM_PREFIXES.some((p) => k.startsWith(p))).length };
  } finally {
    await f.close();
  }
}

const LDM_PREFIXES = ['model.diffusion_model.', 'first_stage_model.', 'cond_stage_model.'];
