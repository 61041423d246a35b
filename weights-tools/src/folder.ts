// Shared pieces of writing a diffusers Stable Diffusion folder: output-folder checks, component configs,
// tokenizer files, model_index.json, and the PyTorch-layout parameter list of each component.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { torchShape } from '@ddsjs/nn';
import {
  AutoencoderKL,
  checkOutputPath,
  OutputPathError,
  CLIPTextModel,
  UNet2DConditionModel,
} from '@ddsjs/sd';
import {
  BUNDLED_TOKENIZER_DIR,
  parseCLIPTextConfig,
  parseUNetConfig,
  parseVaeConfig,
  RawConfigs,
} from '@ddsjs/sd/internals';

/** The weight-bearing components of a diffusers Stable Diffusion folder. */
export type ComponentName = 'unet' | 'vae' | 'text_encoder';

/** Folder and weights base name of each component (diffusers / transformers naming). */
export const COMPONENTS: readonly { name: ComponentName; base: string; configFile: string }[] = [
  { name: 'unet', base: 'diffusion_pytorch_model', configFile: 'config.json' },
  { name: 'vae', base: 'diffusion_pytorch_model', configFile: 'config.json' },
  { name: 'text_encoder', base: 'model', configFile: 'config.json' },
];

/** Raw JSON configs of a folder's components (as in `unet/config.json` etc.): @ddsjs/sd's `RawConfigs`. */
export type RawComponentConfigs = RawConfigs;

/** A parameter of a component in PyTorch layout (the name and shape a diffusers checkpoint stores). */
export interface ParamSpec {
  /** Checkpoint key, e.g. `down_blocks.0.resnets.0.conv1.weight`. */
  key: string;
  /** PyTorch shape (`[out, in, kh, kw]` for convs, `[out, in]` for linears). */
  shape: number[];
}

/**
 * The parameters of each component of the architecture described by `raw`, in PyTorch layout, obtained by
 * building the @ddsjs/sd modules (parameters are shape descriptors only: no tensor is allocated).
 * Throws the config parser's error (naming the component) on an invalid config.
 */
export function componentParams(raw: RawComponentConfigs): Record<ComponentName, ParamSpec[]> {
  const list = (m: { namedParameters(): [string, { shape: readonly number[]; layout: Parameters<typeof torchShape>[1] }][] }) =>
    m.namedParameters().map(([key, p]) => ({ key, shape: torchShape(p.shape, p.layout) }));
  return {
    unet: list(new UNet2DConditionModel(parseUNetConfig(raw.unet, 'unet/config.json'))),
    vae: list(new AutoencoderKL(parseVaeConfig(raw.vae, 'vae/config.json'))),
    text_encoder: list(new CLIPTextModel(parseCLIPTextConfig(raw.textEncoder, 'text_encoder/config.json'))),
  };
}

/**
 * Makes sure `outdir` can be written: creates it when missing and checks that files can be created in it (an
 * `OutputPathError` otherwise); an existing non-empty folder (or a file) is an error unless `force` (then files are
 * overwritten, nothing is deleted).
 */
export function prepareOutdir(outdir: string, force = false): void {
  if (fs.existsSync(outdir)) {
    if (!fs.statSync(outdir).isDirectory()) throw new Error(`${outdir} exists and is not a folder`);
    if (fs.readdirSync(outdir).length > 0 && !force) {
      throw new Error(`${outdir} exists and is not empty (pass --force to write into it)`);
    }
  }
  try {
    fs.mkdirSync(outdir, { recursive: true });
  } catch (e) {
    throw new OutputPathError(`cannot create output folder ${outdir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  checkOutputPath(outdir, { kind: 'folder' }); // writable: found before any weight is computed
}

function writeJson(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(value, null, 2) + '\n');
}

function addedToken(content: string, withType: boolean): Record<string, unknown> {
  return {
    ...(withType ? { __type: 'AddedToken' } : {}),
    content,
    lstrip: false,
    normalized: true,
    rstrip: false,
    single_word: false,
  };
}

/**
 * Writes `tokenizer/` of a diffusers folder. With `fromDir` (a tokenizer folder holding vocab.json and
 * merges.txt) its files are copied unchanged; otherwise the CLIP BPE vocabulary bundled with @ddsjs/sd is
 * used with tokenizer_config.json / special_tokens_map.json declaring `padToken` (`<|endoftext|>` for SD 1.x,
 * `!` for SD 2.x).
 */
export function writeTokenizer(outdir: string, padToken: string, fromDir?: string): void {
  const dst = path.join(outdir, 'tokenizer');
  fs.mkdirSync(dst, { recursive: true });
  if (fromDir && fs.existsSync(path.join(fromDir, 'vocab.json')) && fs.existsSync(path.join(fromDir, 'merges.txt'))) {
    for (const f of fs.readdirSync(fromDir)) {
      const src = path.join(fromDir, f);
      if (fs.statSync(src).isFile()) fs.copyFileSync(src, path.join(dst, f));
    }
    return;
  }
  for (const f of ['vocab.json', 'merges.txt']) fs.copyFileSync(path.join(BUNDLED_TOKENIZER_DIR, f), path.join(dst, f));
  const special = (typed: boolean) => ({
    bos_token: addedToken('<|startoftext|>', typed),
    eos_token: addedToken('<|endoftext|>', typed),
    pad_token: addedToken(padToken, typed),
    unk_token: addedToken('<|endoftext|>', typed),
  });
  writeJson(path.join(dst, 'special_tokens_map.json'), special(false));
  writeJson(path.join(dst, 'tokenizer_config.json'), {
    add_prefix_space: false,
    ...special(true),
    do_lower_case: true,
    errors: 'replace',
    model_max_length: 77,
    tokenizer_class: 'CLIPTokenizer',
  });
}

/**
 * Writes the JSON files of a diffusers Stable Diffusion folder: `model_index.json`, `unet/config.json`,
 * `vae/config.json`, `text_encoder/config.json` and `scheduler/scheduler_config.json`.
 */
export function writeConfigs(outdir: string, raw: RawComponentConfigs): void {
  const schedulerClass = typeof raw.scheduler._class_name === 'string' ? raw.scheduler._class_name : 'DDIMScheduler';
  writeJson(path.join(outdir, 'model_index.json'), {
    _class_name: 'StableDiffusionPipeline',
    _diffusers_version: '0.35.2',
    feature_extractor: [null, null],
    requires_safety_checker: false,
    safety_checker: [null, null],
    scheduler: ['diffusers', schedulerClass],
    text_encoder: ['transformers', 'CLIPTextModel'],
    tokenizer: ['transformers', 'CLIPTokenizer'],
    unet: ['diffusers', 'UNet2DConditionModel'],
    vae: ['diffusers', 'AutoencoderKL'],
  });
  writeJson(path.join(outdir, 'unet', 'config.json'), raw.unet);
  writeJson(path.join(outdir, 'vae', 'config.json'), raw.vae);
  writeJson(path.join(outdir, 'text_encoder', 'config.json'), raw.textEncoder);
  writeJson(path.join(outdir, 'scheduler', 'scheduler_config.json'), raw.scheduler);
}

/** The weights file name of a component: `<base>.safetensors` or, for the fp16 variant, `<base>.fp16.safetensors`. */
export function weightsFileName(base: string, fp16: boolean): string {
  return fp16 ? `${base}.fp16.safetensors` : `${base}.safetensors`;
}

/** Reads a JSON object file, with an error naming the file. */
export function readJsonObject(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file} must hold a JSON object`);
  return v as Record<string, unknown>;
}

export { formatBytes, formatCount } from '@ddsjs/sd/internals';
