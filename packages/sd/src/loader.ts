import type * as NodeFs from 'fs';
import type * as NodePath from 'path';
import { nodeModule } from './node-builtins';
import * as tf from '@tensorflow/tfjs';
import { assertFits, backendMemoryLimitBytes, Module, ModuleList, StateDictSource, tfSeed } from '@ddsjs/nn';
import { findSafetensors, InvalidArgumentError, IoError, ModelFormatError, SafetensorsFile } from '@ddsjs/safetensors';
import { defaultFetch, isUrl, joinUrl } from '@ddsjs/safetensors/internals';
import type { UrlSourceOptions } from '@ddsjs/safetensors';
import { CLIPTokenizer } from './tokenizer';
import { CLIP_TOKENIZER_FILES, CLIPTokenizerFiles } from './tokenizer-files';
import { CLIPTextModel } from './clip';
import { CLIPTextConfig, parseCLIPTextConfig } from './clip-config';
import { UNet2DConditionModel, TimestepInput } from './unet';
import { AutoencoderKL, legacyVaeSource } from './vae';
import { AutoencoderKLConfig, UNet2DConditionConfig, parseUNetConfig, parseVaeConfig } from './config';
import { NoiseSchedule, guide, makeNoiseSchedule } from './schedule';
import { SchedulerConfig, parseSchedulerConfig } from './scheduler-config';
import { DDIMScheduler } from './ddim';
import { safetensorsSource } from './sources';
import { StableDiffusion, StableDiffusionConfigs } from './pipeline';
import { imageToLatents, latentsToImage, nativeImageSize } from './codec';
import { DEFAULTS_FILE, PipelineDefaults, parsePipelineDefaults, readPipelineDefaults, resolveGenerateDefaults } from './defaults';
import {
  DetectedSingleFile,
  detectSingleFileModel,
  inferLdmDimensions,
  singleFileConfigMismatches,
  singleFileSources,
} from './single-file';

const fs = nodeModule<typeof NodeFs>('fs');
const path = nodeModule<typeof NodePath>('path');

/** Folder of the CLIP BPE vocabulary bundled with @ddsjs/sd (for single-file checkpoints, which have none). */
export const BUNDLED_TOKENIZER_DIR = typeof __dirname === 'string' ? path.resolve(__dirname, '..', 'assets', 'clip-tokenizer') : 'assets/clip-tokenizer';

/** Options of {@link loadStableDiffusion}. */
export interface LoadStableDiffusionOptions {
  /** Load the `*.fp16.safetensors` variant of a diffusers folder (converted to float32 one tensor at a time). */
  variant?: 'fp16';
  /** Single-file checkpoints: a diffusers folder whose config files (and tokenizer) describe the architecture. */
  configFrom?: string;
  /** Single-file checkpoints: override the prediction type (SD 2.x-base is 'epsilon', SD 2.x-768 'v_prediction'). */
  predictionType?: 'epsilon' | 'v_prediction';
  /** Called after each weight tensor is loaded: `done` of `total` tensors. */
  onProgress?: (done: number, total: number, key: string) => void;
  /**
   * Keep the UNet's weights in JavaScript memory and stream them into the backend one block at a time during each
   * forward (`UNet2DConditionModel.loadStateDictOffloaded`). `'auto'` (default) does so only when all float32 weights
   * would not fit the backend's memory limit — SD 1.x/2.x (UNet 3.4 GB) on wasm, whose heap stops at 4 GiB. An
   * offloaded UNet is inference-only (a frozen teacher): inputs still get gradients, its weights cannot be trained.
   */
  offloadUnet?: boolean | 'auto';
}


function readJsonFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new IoError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Where a diffusers Stable Diffusion folder keeps each component's config. */
export const COMPONENT_CONFIGS = {
  unet: 'unet/config.json',
  vae: 'vae/config.json',
  textEncoder: 'text_encoder/config.json',
  scheduler: 'scheduler/scheduler_config.json',
} as const;

/** Whether `dir` holds the four diffusers component configs ({@link COMPONENT_CONFIGS}). */
export function hasDiffusersConfigs(dir: string): boolean {
  return Object.values(COMPONENT_CONFIGS).every((f) => fs.existsSync(path.join(dir, f)));
}

/** The raw JSON of a Stable Diffusion folder's component configs. */
export interface RawConfigs {
  unet: Record<string, unknown>;
  vae: Record<string, unknown>;
  textEncoder: Record<string, unknown>;
  scheduler: Record<string, unknown>;
}

function parseConfigs(raw: RawConfigs, name: (f: keyof RawConfigs) => string): StableDiffusionConfigs {
  return {
    unet: parseUNetConfig(raw.unet, name('unet')),
    vae: parseVaeConfig(raw.vae, name('vae')),
    textEncoder: parseCLIPTextConfig(raw.textEncoder, name('textEncoder')),
    scheduler: parseSchedulerConfig(raw.scheduler, name('scheduler')),
  };
}

/**
 * Reads the raw JSON of the four component configs of a diffusers folder ({@link COMPONENT_CONFIGS}); throws
 * naming every missing file, or a file that is not a JSON object.
 */
export function readRawConfigs(dir: string): RawConfigs {
  const missing = Object.values(COMPONENT_CONFIGS).filter((f) => !fs.existsSync(path.join(dir, f)));
  if (missing.length) {
    throw new ModelFormatError(`${dir} is not a diffusers Stable Diffusion folder: missing ${missing.join(', ')}`);
  }
  const read = (k: keyof RawConfigs): Record<string, unknown> => {
    const file = path.join(dir, COMPONENT_CONFIGS[k]);
    const json = readJsonFile(file);
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelFormatError(`${file} must hold a JSON object`);
    return json as Record<string, unknown>;
  };
  return { unet: read('unet'), vae: read('vae'), textEncoder: read('textEncoder'), scheduler: read('scheduler') };
}

function readDiffusersConfigs(dir: string): StableDiffusionConfigs {
  return parseConfigs(readRawConfigs(dir), (k) => path.join(dir, COMPONENT_CONFIGS[k]));
}

interface Job {
  module: Module;
  source: StateDictSource;
  name: string;
  load?: (source: StateDictSource, onTensor: (key: string) => void) => Promise<void>;
}

/** Float32 bytes of a module's parameters. */
function weightBytes(m: Module): number {
  return m.parameterCount() * 4;
}

async function runJobs(jobs: Job[], onProgress: LoadStableDiffusionOptions['onProgress']): Promise<void> {
  const total = jobs.reduce((s, j) => s + j.module.namedParameters().length, 0);
  let done = 0;
  const onTensor = (key: string) => onProgress?.(++done, total, key);
  for (const job of jobs) {
    try {
      if (job.load) await job.load(job.source, onTensor);
      else await job.module.loadStateDict(job.source, { onTensor: (k) => onTensor(k) });
    } catch (e) {
      throw new ModelFormatError(`${job.name}: ${(e as Error).message}`);
    }
  }
}

/** Activation headroom kept free on a memory-limited backend (an attention score chunk alone is 64 MiB by default). */
const ACTIVATION_HEADROOM_BYTES = 256 * 1024 ** 2;

function buildModules(configs: StableDiffusionConfigs, what: string, offloadOption: boolean | 'auto' = 'auto') {
  const textEncoder = new CLIPTextModel(configs.textEncoder);
  const unet = new UNet2DConditionModel(configs.unet);
  const vae = new AutoencoderKL(configs.vae);
  const others = weightBytes(textEncoder) + weightBytes(vae);
  const unetBytes = weightBytes(unet);
  const gb = (b: number) => (b / 1e9).toFixed(2);
  const limit = backendMemoryLimitBytes();
  const offload =
    offloadOption === true || (offloadOption === 'auto' && others + unetBytes + ACTIVATION_HEADROOM_BYTES + tf.memory().numBytes > limit);
  if (!offload) {
    assertFits(others + unetBytes, `${what} (UNet ${gb(unetBytes)} GB + VAE + text encoder)`, undefined, ACTIVATION_HEADROOM_BYTES);
  } else {
    // Offloaded: only the text encoder, the VAE and one UNet block at a time live in the backend.
    const largestBlock = Math.max(
      ...unet.namedChildren().flatMap(([, c]) => (c instanceof ModuleList ? c.items : [c])).map((m) => weightBytes(m)),
    );
    assertFits(
      others + largestBlock,
      `${what} (VAE + text encoder ${gb(others)} GB, UNet offloaded: largest block ${gb(largestBlock)} GB)`,
      undefined,
      ACTIVATION_HEADROOM_BYTES,
    );
  }
  return { textEncoder, unet, vae, offload };
}

function unetJob(unet: UNet2DConditionModel, source: StateDictSource, offload: boolean, name: string): Job {
  return {
    module: unet,
    source,
    name,
    load: offload ? (s, on) => unet.loadStateDictOffloaded(s, { onTensor: (k) => on(k) }) : undefined,
  };
}

async function loadDiffusersFolder(dir: string, options: LoadStableDiffusionOptions): Promise<StableDiffusion> {
  const configs = readDiffusersConfigs(dir);
  const defaults = readPipelineDefaults(dir);
  const tokenizer = await CLIPTokenizer.fromPretrained(path.join(dir, 'tokenizer'));
  const { textEncoder, unet, vae, offload } = buildModules(configs, dir, options.offloadUnet);
  const files: SafetensorsFile[] = [];
  const open = async (sub: string, base: string) => {
    let file: string;
    try {
      file = await findSafetensors(path.join(dir, sub), base, options.variant);
    } catch (e) {
      // No float32 weights: a folder that holds only the fp16 variant (e.g. a copy of the embedded toy model) is
      // loaded from it, as if `variant: 'fp16'` had been given.
      if (options.variant !== undefined) throw e;
      file = await findSafetensors(path.join(dir, sub), base, 'fp16').catch(() => {
        throw e;
      });
    }
    const f = await SafetensorsFile.open(file);
    files.push(f);
    return safetensorsSource(f, { name: file });
  };
  await loadComponentWeights({ textEncoder, unet, vae, offload }, open, files, options.onProgress);
  return new StableDiffusion(tokenizer, textEncoder, unet, vae, configs, dir, defaults);
}

async function bundledTokenizer(padToken: string): Promise<CLIPTokenizer> {
  const tok = await CLIPTokenizer.fromPretrained(BUNDLED_TOKENIZER_DIR);
  if (padToken === '<|endoftext|>') return tok;
  const vocab = readJsonFile(path.join(BUNDLED_TOKENIZER_DIR, 'vocab.json')) as Record<string, number>;
  const merges = fs
    .readFileSync(path.join(BUNDLED_TOKENIZER_DIR, 'merges.txt'), 'utf8')
    .split('\n')
    .filter((l, i) => !(i === 0 && l.startsWith('#version')) && l.length > 0);
  return new CLIPTokenizer({ vocab, merges, padToken, source: `${BUNDLED_TOKENIZER_DIR} (pad ${padToken})` });
}

/** Where a single-file checkpoint's architecture comes from; see {@link resolveSingleFileConfigs}. */
export interface SingleFileConfigs {
  /** What the keys and shapes say the checkpoint is. */
  detected: DetectedSingleFile;
  /** The raw component configs to use (a copy: safe to modify). */
  raw: RawConfigs;
  /** The diffusers folder the configs came from, or undefined for the built-in configs. */
  configDir?: string;
  /** `configDir`, or `built-in sd15|sd21`, for messages. */
  configSource: string;
}

/**
 * Picks the configs of a single-file checkpoint as `loadStableDiffusion` and `dds-weights convert-single-file` do:
 * those of `configFrom` when given, else of the file's own folder when it holds diffusers configs (then only the
 * text-encoder layout is inferred from the keys), else the built-in configs of the detected model type; applies `predictionType`; and throws, listing every disagreement, when the
 * checkpoint's shapes do not fit those configs (`hint` ends that message, naming how to pass other configs).
 */
export function resolveSingleFileConfigs(
  file: string,
  keys: readonly string[],
  shape: (key: string) => readonly number[],
  options: { configFrom?: string; predictionType?: 'epsilon' | 'v_prediction' },
  hint = 'pass configFrom: a diffusers folder with matching configs',
): SingleFileConfigs {
  const ownDir = path.dirname(file);
  const configDir = options.configFrom ?? (hasDiffusersConfigs(ownDir) ? ownDir : undefined);
  // With configs, as diffusers: no model-type inference beyond the text-encoder layout.
  const detected = detectSingleFileModel(keys, shape, { predictionType: options.predictionType, configsGiven: configDir !== undefined });
  const { unet, vae, textEncoder, scheduler } = detected.configs;
  const raw: RawConfigs = configDir ? readRawConfigs(configDir) : structuredClone({ unet, vae, textEncoder, scheduler });
  if (options.predictionType) raw.scheduler = { ...raw.scheduler, prediction_type: options.predictionType };
  const configSource = configDir ?? `built-in ${detected.modelType}`;
  const mismatches = singleFileConfigMismatches(inferLdmDimensions(keys, shape), raw, detected.textEncoder);
  if (mismatches.length) {
    throw new ModelFormatError(
      `${file}: the checkpoint does not match the configs of ${configSource}: ${mismatches.join('; ')}${configDir ? '' : ` (${hint})`}`,
    );
  }
  return { detected, raw, configDir, configSource };
}

async function loadSingleFile(file: string, options: LoadStableDiffusionOptions): Promise<StableDiffusion> {
  const f = await SafetensorsFile.open(file);
  try {
    const { detected, raw, configDir } = resolveSingleFileConfigs(file, f.keys(), (k) => f.info(k).shape, options);
    const defaults = configDir ? readPipelineDefaults(configDir) : {};
    const configs = parseConfigs(raw, (k) =>
      configDir ? path.join(configDir, COMPONENT_CONFIGS[k]) : `built-in ${detected.modelType} ${k} config`,
    );
    const padToken = detected.configs.tokenizer.pad_token;
    const tokenizer =
      configDir && fs.existsSync(path.join(configDir, 'tokenizer', 'vocab.json'))
        ? await CLIPTokenizer.fromPretrained(path.join(configDir, 'tokenizer'))
        : await bundledTokenizer(padToken);
    const sources = singleFileSources(safetensorsSource(f, { name: file }), configs, detected.textEncoder, file);
    const { textEncoder, unet, vae, offload } = buildModules(configs, file, options.offloadUnet);
    try {
      await runJobs(
        [
          {
            module: textEncoder,
            source: sources.textEncoder,
            name: 'text encoder',
            load: (s, on) => textEncoder.loadWeights(s, { onTensor: (k) => on(k) }),
          },
          unetJob(unet, sources.unet, offload, 'UNet'),
          { module: vae, source: sources.vae, name: 'VAE' },
        ],
        options.onProgress,
      );
    } catch (e) {
      textEncoder.dispose();
      unet.dispose();
      vae.dispose();
      throw e;
    }
    return new StableDiffusion(tokenizer, textEncoder, unet, vae, configs, file, defaults);
  } finally {
    await f.close();
  }
}

/**
 * Loads a Stable Diffusion 1.x/2.x model:
 * - a **diffusers folder** (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`), from
 *   its fp32 safetensors or, with `variant: 'fp16'`, its `*.fp16.safetensors` (sharded `*.index.json` too),
 *   converted to float32 one tensor at a time; a component with only the fp16 variant is loaded from it without
 *   `variant` too;
 * - a **single-file LDM/CompVis checkpoint** (`.safetensors`): the architecture comes from `configFrom` when given,
 *   else from the file's own folder when it holds diffusers configs, else it is recognised from the keys and shapes
 *   as SD 1.x or 2.x (built-in configs; the bundled CLIP vocabulary).
 *
 * A folder's (or `configFrom`'s) optional `ddsjs_defaults.json` becomes `sd.defaults`: the model's own defaults for
 * the editing loop and for `generate` (see `DEFAULTS_FILE`).
 *
 * - an **`http(s):` URL** of a diffusers folder: see {@link loadStableDiffusionFromUrl} (the only kind in a browser).
 *
 * Fails with a clear error on a missing folder/file/config, an invalid `ddsjs_defaults.json`, missing/unexpected/mis-shaped keys, or a model whose
 * float32 weights cannot fit the active backend (wasm's heap stops at 4 GiB). The caller owns the result
 * (`sd.dispose()`).
 */
export async function loadStableDiffusion(
  dirOrSingleFile: string,
  options: LoadStableDiffusionOptions = {},
): Promise<StableDiffusion> {
  if (typeof dirOrSingleFile !== 'string' || dirOrSingleFile === '') {
    throw new InvalidArgumentError('loadStableDiffusion: expected a diffusers folder or a .safetensors checkpoint path');
  }
  if (options.variant !== undefined && options.variant !== 'fp16') {
    throw new InvalidArgumentError(`loadStableDiffusion: variant must be 'fp16' or absent, got ${JSON.stringify(options.variant)}`);
  }
  if (isUrl(dirOrSingleFile)) {
    if (options.configFrom) throw new InvalidArgumentError('loadStableDiffusion: configFrom does not apply to a URL (a diffusers folder)');
    return loadStableDiffusionFromUrl(dirOrSingleFile, options);
  }
  let stat: NodeFs.Stats;
  try {
    stat = fs.statSync(dirOrSingleFile);
  } catch {
    throw new IoError(`model not found: ${dirOrSingleFile}`);
  }
  if (stat.isDirectory()) {
    if (options.configFrom) throw new InvalidArgumentError('loadStableDiffusion: configFrom applies to single-file checkpoints only');
    return loadDiffusersFolder(dirOrSingleFile, options);
  }
  if (!/\.safetensors$/i.test(dirOrSingleFile)) {
    throw new ModelFormatError(
      `${dirOrSingleFile}: only .safetensors checkpoints are supported (pickled .ckpt/.bin files can run code when loaded; convert them to safetensors first)`,
    );
  }
  if (options.variant) throw new InvalidArgumentError('loadStableDiffusion: variant applies to diffusers folders only');
  return loadSingleFile(dirOrSingleFile, options);
}

/** Options of {@link loadStableDiffusionFromUrl}: those of a folder, plus the `fetch` and abort `signal` to use. */
export interface LoadStableDiffusionFromUrlOptions
  extends Pick<LoadStableDiffusionOptions, 'variant' | 'onProgress' | 'offloadUnet'>,
    UrlSourceOptions {}

/**
 * Loads a diffusers Stable Diffusion folder served over HTTP (browser-safe; also works in Node ≥ 18): `baseUrl` is
 * the folder's URL, holding `model_index.json`, the four component configs ({@link COMPONENT_CONFIGS}), the
 * `tokenizer/` files, the weights (`*.safetensors`, or with `variant: 'fp16'` the `*.fp16.safetensors` files,
 * sharded `*.index.json` too) and optionally `ddsjs_defaults.json`. Weights are read with ranged requests, one
 * tensor at a time, when the server allows `Range` (see `urlSource` of @ddsjs/safetensors). A server on another
 * origin must send CORS headers (`Access-Control-Allow-Origin`, and allow the `Range` request header).
 *
 * Fails with a clear error naming the URL when a file cannot be fetched (HTTP status; a network or CORS failure),
 * a config is invalid, or keys are missing, unexpected or mis-shaped. The caller owns the result (`sd.dispose()`).
 */
export async function loadStableDiffusionFromUrl(
  baseUrl: string,
  options: LoadStableDiffusionFromUrlOptions = {},
): Promise<StableDiffusion> {
  if (typeof baseUrl !== 'string' || !isUrl(baseUrl)) {
    throw new InvalidArgumentError(`loadStableDiffusionFromUrl: expected an http(s) URL of a diffusers folder, got ${JSON.stringify(baseUrl)}`);
  }
  if (options.variant !== undefined && options.variant !== 'fp16') {
    throw new InvalidArgumentError(`loadStableDiffusionFromUrl: variant must be 'fp16' or absent, got ${JSON.stringify(options.variant)}`);
  }
  const base = baseUrl.replace(/\/+$/, '');
  const fetchFn = options.fetch ?? defaultFetch();
  const urlOptions: UrlSourceOptions = { fetch: fetchFn, signal: options.signal };
  const getText = async (rel: string, optional = false): Promise<string | undefined> => {
    const url = joinUrl(base, rel);
    let res;
    try {
      res = await fetchFn(url, { signal: options.signal });
    } catch (e) {
      if (options.signal?.aborted) throw e;
      throw new IoError(`cannot fetch ${url}: ${(e as Error).message} (a network error, or a server that does not allow this origin by CORS)`);
    }
    if (res.status === 404 && optional) return undefined;
    if (!res.ok) throw new IoError(`cannot fetch ${url}: HTTP ${res.status}${res.status === 404 ? ` (is ${base} a diffusers folder?)` : ''}`);
    return res.text();
  };
  const getJson = async (rel: string, optional = false): Promise<Record<string, unknown> | undefined> => {
    const text = await getText(rel, optional);
    if (text === undefined) return undefined;
    const url = joinUrl(base, rel);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new ModelFormatError(`${url} is not valid JSON: ${(e as Error).message}`);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelFormatError(`${url} must hold a JSON object`);
    return json as Record<string, unknown>;
  };
  await getJson('model_index.json'); // first, so that a URL that is not a diffusers folder fails on this file
  const [unetRaw, vaeRaw, textRaw, schedRaw, defaultsRaw] = await Promise.all([
    getJson(COMPONENT_CONFIGS.unet),
    getJson(COMPONENT_CONFIGS.vae),
    getJson(COMPONENT_CONFIGS.textEncoder),
    getJson(COMPONENT_CONFIGS.scheduler),
    getJson(DEFAULTS_FILE, true),
  ]);
  const raw: RawConfigs = { unet: unetRaw!, vae: vaeRaw!, textEncoder: textRaw!, scheduler: schedRaw! };
  const configs = parseConfigs(raw, (k) => joinUrl(base, COMPONENT_CONFIGS[k]));
  const defaults: PipelineDefaults = defaultsRaw ? { ...parsePipelineDefaults(defaultsRaw, joinUrl(base, DEFAULTS_FILE)), file: joinUrl(base, DEFAULTS_FILE) } : {};
  const tokTexts = await Promise.all(CLIP_TOKENIZER_FILES.map((name, i) => getText(`tokenizer/${name}`, i >= 2)));
  const tokFiles = Object.fromEntries(CLIP_TOKENIZER_FILES.flatMap((name, i) => (tokTexts[i] === undefined ? [] : [[name, tokTexts[i]]])));
  const tokenizer = CLIPTokenizer.fromFileContents(tokFiles as unknown as CLIPTokenizerFiles, joinUrl(base, 'tokenizer'));
  const { textEncoder, unet, vae, offload } = buildModules(configs, base, options.offloadUnet);
  const files: SafetensorsFile[] = [];
  const open = async (sub: string, baseName: string) => {
    const url = await findSafetensors(joinUrl(base, sub), baseName, options.variant, urlOptions);
    const f = await SafetensorsFile.open(url, urlOptions);
    files.push(f);
    return safetensorsSource(f, { name: url });
  };
  await loadComponentWeights({ textEncoder, unet, vae, offload }, open, files, options.onProgress);
  return new StableDiffusion(tokenizer, textEncoder, unet, vae, configs, base, defaults);
}

/**
 * Loads the three components' weights of a diffusers folder (on disk or at a URL: `open(subfolder, baseName)` gives
 * each component's state-dict source and records the file in `files`), disposing the modules on failure and closing
 * every opened file either way.
 */
async function loadComponentWeights(
  m: { textEncoder: CLIPTextModel; unet: UNet2DConditionModel; vae: AutoencoderKL; offload: boolean },
  open: (sub: string, baseName: string) => Promise<StateDictSource>,
  files: SafetensorsFile[],
  onProgress: LoadStableDiffusionOptions['onProgress'],
): Promise<void> {
  const { textEncoder, unet, vae, offload } = m;
  try {
    const jobs: Job[] = [
      {
        module: textEncoder,
        source: await open('text_encoder', 'model'),
        name: 'text_encoder',
        load: (s, on) => textEncoder.loadWeights(s, { onTensor: (k) => on(k) }),
      },
      unetJob(unet, await open('unet', 'diffusion_pytorch_model'), offload, 'unet'),
      { module: vae, source: legacyVaeSource(await open('vae', 'diffusion_pytorch_model')), name: 'vae' },
    ];
    await runJobs(jobs, onProgress);
  } catch (e) {
    textEncoder.dispose();
    unet.dispose();
    vae.dispose();
    throw e;
  } finally {
    await Promise.all(files.map((f) => f.close()));
  }
}
