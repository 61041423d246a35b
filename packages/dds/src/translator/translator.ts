// The zero-shot image-to-image translation network of the DDS paper (Section 5): a student UNet that edits a latent
// in one forward pass. This file holds its construction from a teacher and its diffusers-style folder format, and
// re-exports the network itself (translator-model.ts) for the modules that import it from here; training lives in
// translator-train.ts.
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { Module, toTorchLayout } from '@ddsjs/nn';
import { UNet2DConditionModel } from '@ddsjs/sd';
import { safetensorsSource, parseUNetConfig, UNet2DConditionConfig } from '@ddsjs/sd/internals';
import type { StableDiffusion } from '@ddsjs/sd';
import { f32ToF16, InvalidArgumentError, IoError, ModelFormatError, SafetensorsFile, TensorData, writeSafetensors } from '@ddsjs/safetensors';
import {
  checkTasks,
  DEFAULT_STUDENT_TIMESTEP,
  describe,
  fail,
  moduleFingerprint,
  taskPrompts,
  TeacherFingerprint,
  TeacherRecord,
  teacherFingerprint,
  Translator,
  TranslatorTask,
  TranslatorTrainingRecord,
  unetConfigToJson,
} from './translator-model';

export * from './translator-model';

/** Format tag of `translator.json`. */
export const TRANSLATOR_FORMAT = 'ddsjs-translator';
/** Version of the `translator.json` layout this code writes and reads. */
export const TRANSLATOR_FORMAT_VERSION = 1;

/** File names of a translator folder. */
export const TRANSLATOR_FILES = {
  /** diffusers `UNet2DConditionModel` config of the student. */
  config: 'config.json',
  /** The student's weights, PyTorch layout (loadable by diffusers' `UNet2DConditionModel.from_pretrained`). */
  weights: 'diffusion_pytorch_model.safetensors',
  /** The task prompts' text embeddings `embeddings [P, L, D]` (prompt order in translator.json). */
  embeddings: 'task_embeddings.safetensors',
  /** Tasks, prompts, teacher, student timestep, training state. */
  meta: 'translator.json',
  /** Adam moments (checkpoints only). */
  optimizer: 'optimizer.safetensors',
} as const;

/** The contents of translator.json. */
export interface TranslatorMeta {
  format: typeof TRANSLATOR_FORMAT;
  version: number;
  tasks: TranslatorTask[];
  /** The prompts whose embeddings task_embeddings.safetensors holds, in its order. */
  prompts: string[];
  /** The timestep the student is called with. */
  studentTimestep: number;
  /** Always true: output = input + student UNet output. */
  residual: true;
  teacher: TeacherRecord | null;
  /** Present once the translator has been trained. */
  training: TranslatorTrainingRecord | null;
  /** Random id shared by the files of one save (detects a folder whose files come from different saves). */
  checkpointId: string;
}

/** Options of {@link createTranslator}. */
export interface CreateTranslatorOptions {
  /** The tasks the network will learn (at least one; no duplicates). */
  tasks: TranslatorTask[];
  /**
   * The student's architecture as diffusers `config.json` fields (snake_case) that override the teacher UNet's
   * config: `{}` or absent = the teacher's architecture; e.g. `{ block_out_channels: [32, 64], down_block_types:
   * [...], up_block_types: [...] }` for a smaller student. `in_channels`/`out_channels` must stay the latent
   * channels and `cross_attention_dim` the text encoder's width.
   */
  studentConfig?: Record<string, unknown>;
  /**
   * `'teacher'` (default): every student parameter whose name and shape match a teacher UNet parameter starts as
   * a copy of it, the others are initialised randomly (seeded); `'random'`: all random.
   * In both cases `conv_out` starts at zero, so the network starts as the identity.
   */
  init?: 'teacher' | 'random';
  /** The timestep the student is called with. Default {@link DEFAULT_STUDENT_TIMESTEP} (0). */
  studentTimestep?: number;
  /** Seed of the random initialisation. Default 0. */
  seed?: number;
  /** The teacher's {@link teacherFingerprint} when already computed (skips reading it again). */
  teacherFingerprint?: TeacherFingerprint;
}

/** How a {@link createTranslator} student was initialised. */
export interface TranslatorInitReport {
  /** Parameters copied from the teacher UNet. */
  fromTeacher: string[];
  /** Parameters initialised randomly (no teacher parameter of that name and shape, or `init: 'random'`). */
  random: string[];
  /** Parameters set to zero (`conv_out.weight`, `conv_out.bias`). */
  zero: string[];
}

/** Options of {@link saveTranslator}. */
export interface SaveTranslatorOptions {
  /** Replace the files of an existing translator folder. Default false (an error). */
  overwrite?: boolean;
  /**
   * Store the student's weights as float16 (half the bytes; loaded back as float32, like a diffusers fp16 variant).
   * Default false (float32). A weight beyond the float16 range is an error.
   */
  fp16?: boolean;
}

/** Options of {@link loadTranslator}. */
export interface LoadTranslatorOptions {
  /**
   * When a teacher is given: check that its VAE is the one the translator was trained with (the latent spaces
   * must agree), by {@link teacherFingerprint}. Default true.
   */
  checkTeacher?: boolean;
}

/**
 * Builds the student config: the teacher UNet's config overridden by `studentConfig` (diffusers field names), with
 * the checks a translator needs (latent channels in = out = the teacher's, cross-attention width = `textWidth`).
 */
export function studentUNetConfig(teacher: UNet2DConditionConfig, studentConfig: Record<string, unknown> | undefined, textWidth: number): UNet2DConditionConfig {
  const fn = 'createTranslator';
  if (studentConfig !== undefined && (typeof studentConfig !== 'object' || studentConfig === null || Array.isArray(studentConfig))) {
    fail(fn, `studentConfig must be an object of diffusers config.json fields, got ${describe(studentConfig)}`);
  }
  const raw = { ...unetConfigToJson(teacher), ...(studentConfig ?? {}) };
  const cfg = parseUNetConfig(raw, 'studentConfig');
  if (cfg.inChannels !== teacher.inChannels || cfg.outChannels !== teacher.inChannels) {
    fail(fn, `studentConfig: in_channels and out_channels must both be the teacher's latent channels (${teacher.inChannels}), got ${cfg.inChannels} and ${cfg.outChannels}`);
  }
  if (cfg.crossAttentionDim.some((d) => d !== textWidth)) {
    fail(fn, `studentConfig: cross_attention_dim must be the text encoder's width ${textWidth}, got ${cfg.crossAttentionDim}`);
  }
  return cfg;
}

/**
 * Creates an untrained translator for `tasks` from a teacher pipeline: encodes every task prompt with the
 * teacher's text encoder, builds the student UNet (the teacher's architecture, or `studentConfig`), initialises it
 * from the teacher's weights where names and shapes agree (`init: 'teacher'`, default) and sets its output
 * convolution to zero, so that the translator starts as the identity: `translateLatent(z, task)` returns `z`
 * exactly. The teacher is only read. The caller owns the returned translator (`dispose()`); `report` says which
 * parameters came from where.
 */
export async function createTranslator(
  sd: StableDiffusion,
  options: CreateTranslatorOptions,
): Promise<{ translator: Translator; report: TranslatorInitReport }> {
  const fn = 'createTranslator';
  if (!sd || typeof sd.encodePrompt !== 'function' || !sd.unet || !sd.configs) fail(fn, 'sd must be a loaded Stable Diffusion pipeline (loadStableDiffusion)');
  if (!options || typeof options !== 'object') fail(fn, 'options must be an object { tasks, ... }');
  const tasks = checkTasks(fn, options.tasks);
  const init = options.init ?? 'teacher';
  if (init !== 'teacher' && init !== 'random') fail(fn, `init must be 'teacher' or 'random', got ${JSON.stringify(init)}`);
  const studentTimestep = options.studentTimestep ?? DEFAULT_STUDENT_TIMESTEP;
  if (!Number.isFinite(studentTimestep) || studentTimestep < 0) fail(fn, `studentTimestep must be a non-negative number, got ${studentTimestep}`);
  const seed = options.seed ?? 0;
  if (!Number.isFinite(seed)) fail(fn, `seed must be a finite number, got ${seed}`);
  const prompts = taskPrompts(tasks);
  const embeddings = tf.tidy(() => tf.concat(prompts.map((p) => sd.encodePrompt(p)), 0) as tf.Tensor3D);
  const cfg = (() => {
    try {
      return studentUNetConfig(sd.configs.unet, options.studentConfig, embeddings.shape[2]);
    } catch (e) {
      embeddings.dispose();
      throw e;
    }
  })();
  const unet = new UNet2DConditionModel(cfg);
  const report: TranslatorInitReport = { fromTeacher: [], random: [], zero: [] };
  try {
    if (init === 'teacher') {
      const teacherParams = new Map(sd.unet.namedParameters());
      for (const [name, p] of unet.namedParameters()) {
        const t = teacherParams.get(name);
        if (!t || t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) continue;
        if (!t.isSet) {
          fail(fn, `the teacher UNet's weights are offloaded (loadStableDiffusion's offloadUnet) and cannot be copied: load the teacher with offloadUnet: false, or pass init: 'random'`);
        }
        const copy = tf.clone(t.value);
        p.set(copy);
        copy.dispose();
        report.fromTeacher.push(name);
      }
    }
    for (const [name, p] of unet.namedParameters()) if (!p.isSet && !name.startsWith('conv_out.')) report.random.push(name);
    for (const [name, p] of unet.namedParameters()) {
      if (!name.startsWith('conv_out.')) continue;
      const z = tf.zeros([...p.shape]);
      p.set(z);
      z.dispose();
      report.fromTeacher = report.fromTeacher.filter((n) => n !== name);
      report.zero.push(name);
    }
    unet.initialize(seed);
    unet.setTrainable(true);
    const teacher: TeacherRecord = { source: sd.source ?? '', fingerprint: options.teacherFingerprint ?? (await teacherFingerprint(sd)) };
    return { translator: new Translator(unet, tasks, prompts, embeddings, studentTimestep, teacher, sd), report };
  } catch (e) {
    unet.dispose();
    embeddings.dispose();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Folder format

/** Float32 copy of a module's parameters in PyTorch layout, for writeSafetensors. */
export async function moduleTensors(m: Module): Promise<Record<string, TensorData>> {
  const out: Record<string, TensorData> = {};
  for (const [key, p] of m.namedParameters()) {
    const t = toTorchLayout(p.value, p.layout);
    try {
      out[key] = { dtype: 'F32', shape: [...t.shape], data: (await t.data()) as Float32Array };
    } finally {
      t.dispose();
    }
  }
  return out;
}

/** The translator.json object of `translator` (with a fresh checkpoint id). */
export function translatorMeta(translator: Translator, checkpointId = randomBytes(8).toString('hex')): TranslatorMeta {
  return {
    format: TRANSLATOR_FORMAT,
    version: TRANSLATOR_FORMAT_VERSION,
    tasks: translator.tasks.map((t) => ({ ...t })),
    prompts: [...translator.prompts],
    studentTimestep: translator.studentTimestep,
    residual: true,
    teacher: translator.teacher,
    training: translator.training,
    checkpointId,
  };
}

/**
 * Writes the translator folder files; `extra` adds files (name → tensors, metadata) such as the optimiser state.
 * translator.json is written last, so a folder with a translator.json is complete (its checkpoint id is checked
 * against the weights' on load).
 */
export async function writeTranslatorFolder(
  translator: Translator,
  dir: string,
  extra: { name: string; tensors: Record<string, TensorData>; metadata?: Record<string, string> }[] = [],
  options: { fp16?: boolean } = {},
): Promise<TranslatorMeta> {
  fs.mkdirSync(dir, { recursive: true });
  const meta = translatorMeta(translator);
  const stamp = { checkpoint_id: meta.checkpointId, step: String(translator.stepsDone) };
  // Every file is first written under a temporary name and the renames happen together at the end (translator.json
  // last): a crash while writing leaves the previous save intact.
  const pending: [string, string][] = [];
  const target = (name: string): string => {
    const tmp = path.join(dir, `.${name}.${meta.checkpointId}.pending`);
    pending.push([tmp, path.join(dir, name)]);
    return tmp;
  };
  try {
    const weights = await moduleTensors(translator.unet);
    if (options.fp16) {
      for (const [key, t] of Object.entries(weights)) {
        const data = t.data as Float32Array;
        const at = data.findIndex((v) => Number.isFinite(v) && Math.abs(v) > 65504);
        if (at >= 0) throw new InvalidArgumentError(`saveTranslator: weight ${key}[${at}] = ${data[at]} is beyond the float16 range; save in float32`);
        weights[key] = { dtype: 'F16', shape: t.shape, data: f32ToF16(data) };
      }
    }
    await writeSafetensors(target(TRANSLATOR_FILES.weights), weights, { format: 'pt', ...stamp });
    const emb = translator.embeddings;
    await writeSafetensors(
      target(TRANSLATOR_FILES.embeddings),
      { embeddings: { dtype: 'F32', shape: [...emb.shape], data: (await emb.data()) as Float32Array } },
      { prompts: JSON.stringify(translator.prompts), ...stamp },
    );
    for (const x of extra) await writeSafetensors(target(x.name), x.tensors, { ...(x.metadata ?? {}), ...stamp });
    fs.writeFileSync(target(TRANSLATOR_FILES.config), JSON.stringify(unetConfigToJson(translator.unet.config), null, 2) + '\n');
    fs.writeFileSync(target(TRANSLATOR_FILES.meta), JSON.stringify(meta, null, 2) + '\n');
  } catch (e) {
    for (const [tmp] of pending) fs.rmSync(tmp, { force: true });
    throw e;
  }
  for (const [tmp, file] of pending) fs.renameSync(tmp, file);
  return meta;
}

/**
 * Saves a translator as a diffusers-style folder: `config.json` (the student's diffusers UNet config),
 * `diffusion_pytorch_model.safetensors` (its weights, float32 — float16 with `fp16: true` — PyTorch layout — diffusers' `UNet2DConditionModel.
 * from_pretrained(dir)` loads the pair), `task_embeddings.safetensors` (the prompts' text embeddings, so translating
 * needs no text encoder) and `translator.json` (tasks, prompts, teacher, student timestep, training steps; see
 * {@link TranslatorMeta}). Creates `dir` when missing; an existing translator folder is replaced only with
 * `overwrite: true`.
 */
export async function saveTranslator(translator: Translator, dir: string, options: SaveTranslatorOptions = {}): Promise<void> {
  const fn = 'saveTranslator';
  if (!(translator instanceof Translator)) fail(fn, `expected a Translator, got ${describe(translator)}`);
  if (translator.isDisposed) fail(fn, 'the translator has been disposed');
  if (typeof dir !== 'string' || dir === '') fail(fn, 'dir must be a folder path');
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) fail(fn, `${dir} exists and is not a folder`);
  const existing = Object.values(TRANSLATOR_FILES).filter((f) => fs.existsSync(path.join(dir, f)));
  if (existing.length && !options.overwrite) fail(fn, `${dir} already holds a translator (${existing.join(', ')}); pass overwrite: true to replace it`);
  await writeTranslatorFolder(translator, dir, [], { fp16: options.fp16 });
  // A plain save holds no optimiser state: remove a stale one so the folder is not mistaken for a checkpoint.
  const opt = path.join(dir, TRANSLATOR_FILES.optimizer);
  if (fs.existsSync(opt)) fs.rmSync(opt);
}

function readJson(fn: string, file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    fail(fn, `cannot read ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, IoError);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    return fail(fn, `${file} is not valid JSON: ${(e as Error).message}`, ModelFormatError);
  }
}

/** Reads and validates a folder's translator.json. */
export function readTranslatorMeta(dir: string, fn = 'loadTranslator'): TranslatorMeta {
  if (typeof dir !== 'string' || dir === '') fail(fn, 'dir must be a translator folder path');
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) fail(fn, `no such folder: ${dir}`, IoError);
  const file = path.join(dir, TRANSLATOR_FILES.meta);
  if (!fs.existsSync(file)) fail(fn, `${dir} is not a translator folder: ${TRANSLATOR_FILES.meta} is missing`, ModelFormatError);
  const m = readJson(fn, file) as Partial<TranslatorMeta>;
  if (!m || typeof m !== 'object' || m.format !== TRANSLATOR_FORMAT) fail(fn, `${file}: not a translator description (format must be '${TRANSLATOR_FORMAT}')`, ModelFormatError);
  if (m.version !== TRANSLATOR_FORMAT_VERSION) fail(fn, `${file}: version ${String(m.version)} is not supported (this is version ${TRANSLATOR_FORMAT_VERSION})`, ModelFormatError);
  const tasks = checkTasks(`${fn}: ${file}`, m.tasks);
  if (!Array.isArray(m.prompts) || !m.prompts.every((p) => typeof p === 'string')) fail(fn, `${file}: 'prompts' must be an array of strings`, ModelFormatError);
  if (typeof m.studentTimestep !== 'number' || !Number.isFinite(m.studentTimestep)) fail(fn, `${file}: 'studentTimestep' must be a number`, ModelFormatError);
  if (m.residual !== true) fail(fn, `${file}: 'residual' must be true`, ModelFormatError);
  if (typeof m.checkpointId !== 'string') fail(fn, `${file}: 'checkpointId' is missing`, ModelFormatError);
  return { ...(m as TranslatorMeta), tasks };
}

async function checkStamp(fn: string, f: SafetensorsFile, file: string, meta: TranslatorMeta): Promise<void> {
  const id = f.metadata.checkpoint_id;
  if (id !== meta.checkpointId) {
    fail(fn, `${file} does not belong to ${TRANSLATOR_FILES.meta} (checkpoint id ${String(id)} ≠ ${meta.checkpointId}): the folder mixes files of different saves (an interrupted write?)`, ModelFormatError);
  }
}

/** Reads `embeddings [P, L, D]` of a translator folder. Caller owns the tensor. */
async function readEmbeddings(fn: string, dir: string, meta: TranslatorMeta): Promise<tf.Tensor3D> {
  const file = path.join(dir, TRANSLATOR_FILES.embeddings);
  if (!fs.existsSync(file)) fail(fn, `${file} is missing`, ModelFormatError);
  const f = await SafetensorsFile.open(file);
  try {
    await checkStamp(fn, f, file, meta);
    if (!f.keys().includes('embeddings')) fail(fn, `${file}: no tensor 'embeddings'`, ModelFormatError);
    const shape = f.info('embeddings').shape;
    if (shape.length !== 3 || shape[0] !== meta.prompts.length) {
      fail(fn, `${file}: 'embeddings' is [${shape}], expected [${meta.prompts.length}, L, D] (one row per prompt of translator.json)`, ModelFormatError);
    }
    const stored = f.metadata.prompts;
    if (stored !== undefined && stored !== JSON.stringify(meta.prompts)) fail(fn, `${file}: its prompts differ from translator.json's`, ModelFormatError);
    return tf.tensor3d(await f.readFloat32('embeddings'), shape as [number, number, number]);
  } finally {
    await f.close();
  }
}

/** Loads a student UNet (config.json + weights) of a translator folder, checking the checkpoint id. Caller owns it. */
async function readStudent(fn: string, dir: string, meta: TranslatorMeta): Promise<UNet2DConditionModel> {
  const cfgFile = path.join(dir, TRANSLATOR_FILES.config);
  const cfg = parseUNetConfig(readJson(fn, cfgFile), cfgFile);
  const file = path.join(dir, TRANSLATOR_FILES.weights);
  if (!fs.existsSync(file)) fail(fn, `${file} is missing`, ModelFormatError);
  const unet = new UNet2DConditionModel(cfg);
  const f = await SafetensorsFile.open(file);
  try {
    await checkStamp(fn, f, file, meta);
    await unet.loadStateDict(safetensorsSource(f, { name: file }));
  } catch (e) {
    unet.dispose();
    throw e;
  } finally {
    await f.close();
  }
  return unet;
}

/**
 * Loads a translator folder written by {@link saveTranslator} or by training checkpoints. With `sd` (the teacher
 * pipeline), {@link Translator.translateImage} can encode and decode pictures; its VAE must be the one the
 * translator was trained with (checked by fingerprint unless `checkTeacher: false`). Without it, the translator
 * translates latents. Every missing file, malformed JSON, missing/mis-shaped weight or mixed-up checkpoint is an
 * error naming the file. The caller owns the result (`dispose()`).
 */
export async function loadTranslator(dir: string, sd?: StableDiffusion, options: LoadTranslatorOptions = {}): Promise<Translator> {
  const fn = 'loadTranslator';
  const meta = readTranslatorMeta(dir, fn);
  if (sd && options.checkTeacher !== false && meta.teacher?.fingerprint?.vae) {
    const fp = (await moduleFingerprint(sd.vae, sd.configs.vae)) ?? '';
    if (fp !== meta.teacher.fingerprint.vae) {
      fail(fn, `the given model's VAE (${sd.source}) is not the one ${dir} was trained with (${meta.teacher.source}): its latents would not match; pass that model, or checkTeacher: false`);
    }
  }
  const unet = await readStudent(fn, dir, meta);
  let embeddings: tf.Tensor3D;
  try {
    embeddings = await readEmbeddings(fn, dir, meta);
  } catch (e) {
    unet.dispose();
    throw e;
  }
  try {
    unet.setTrainable(true);
    return new Translator(unet, meta.tasks, meta.prompts, embeddings, meta.studentTimestep, meta.teacher ?? null, sd ?? null, meta.training ?? null);
  } catch (e) {
    unet.dispose();
    embeddings.dispose();
    throw new ModelFormatError(`${fn}: ${dir}: ${(e as Error).message}`);
  }
}
