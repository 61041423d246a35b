import type * as NodeFs from 'fs';
import type * as NodePath from 'path';
import { nodeModule } from './node-builtins';
import { ModelFormatError } from '@ddsjs/safetensors';

const fs = nodeModule<typeof NodeFs>('fs');
const path = nodeModule<typeof NodePath>('path');

/**
 * The file of a model folder that holds the model's own defaults for ddsjs's loops, beside diffusers'
 * `model_index.json` (diffusers ignores it). The idea is transformers' `generation_config.json`: settings that
 * belong to the weights — a small model whose scores are larger than Stable Diffusion's wants a smaller editing
 * step — travel with them instead of being remembered by every caller. Example:
 *
 * ```json
 * { "edit": { "lr": 0.01 }, "generate": { "guidance_scale": 3 }, "_why": "free text" }
 * ```
 *
 * Keys: `edit.lr`, `edit.steps`, `edit.guidance_scale` (the editing loop, `editImage`/`editLatent` of @ddsjs/dds,
 * for every method), `edit.methods.<method>.{lr, steps, guidance_scale}` (one editing method's own values, which
 * win over `edit`'s for that method; the method names are checked by @ddsjs/dds's `resolveEditDefaults`),
 * `generate.guidance_scale`, `generate.steps` ({@link StableDiffusion.generate}). Keys starting with
 * `_` are comments. Anything else is an error naming the key, so a typo cannot silently leave a default unchanged.
 * A folder without the file gets the papers' defaults (editing: 200 steps, lr 0.1, guidance 7.5; generation: 50
 * steps, guidance 7.5).
 */
export const DEFAULTS_FILE = 'ddsjs_defaults.json';

/** One editing method's settings in a {@link DEFAULTS_FILE} (see {@link EditDefaults}). */
export interface EditMethodDefaults {
  /** SGD learning rate (the notebook's 0.1 when absent). */
  readonly lr?: number;
  /** Optimisation steps (200 when absent). */
  readonly steps?: number;
  /** Classifier-free guidance scale of the editing score (7.5 when absent). */
  readonly guidanceScale?: number;
}

/**
 * Defaults of the editing loop that a model folder may set (see {@link DEFAULTS_FILE}): values for every method,
 * and under `methods` (JSON `edit.methods`) one method's own values, keyed by its name (`'nfsd'`, `'flowedit'`, …),
 * which win over the shared ones for that method.
 */
export interface EditDefaults extends EditMethodDefaults {
  /** Per-method values, keyed by editing method name. */
  readonly methods?: Readonly<Record<string, EditMethodDefaults>>;
}

/** Defaults of text-to-image generation that a model folder may set (see {@link DEFAULTS_FILE}). */
export interface GenerateDefaults {
  /** Classifier-free guidance scale (7.5 when absent). */
  readonly guidanceScale?: number;
  /** DDIM steps (50 when absent). */
  readonly steps?: number;
}

/** A model's own defaults, read from its {@link DEFAULTS_FILE}; empty for a folder without one. */
export interface PipelineDefaults {
  /** The editing loop's. */
  readonly edit?: EditDefaults;
  /** Generation's. */
  readonly generate?: GenerateDefaults;
  /** The file they were read from (absent when there was none). */
  readonly file?: string;
}

type Field = { key: string; name: 'lr' | 'steps' | 'guidanceScale'; integer?: boolean };

const SECTIONS: Record<'edit' | 'generate', Field[]> = {
  edit: [
    { key: 'lr', name: 'lr' },
    { key: 'steps', name: 'steps', integer: true },
    { key: 'guidance_scale', name: 'guidanceScale' },
  ],
  generate: [
    { key: 'guidance_scale', name: 'guidanceScale' },
    { key: 'steps', name: 'steps', integer: true },
  ],
};

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Validates the JSON of a {@link DEFAULTS_FILE} (`where` names it in errors): every value a positive finite number,
 * steps positive integers, no unknown keys (except `_comments`). Returns the camel-cased defaults.
 */
export function parsePipelineDefaults(json: unknown, where: string): PipelineDefaults {
  if (!isObject(json)) throw new ModelFormatError(`${where} must hold a JSON object`);
  const out: { edit?: EditDefaults; generate?: GenerateDefaults; file?: string } = {};
  for (const [section, value] of Object.entries(json)) {
    if (section.startsWith('_')) continue;
    if (section !== 'edit' && section !== 'generate') {
      throw new ModelFormatError(`${where}: unknown key "${section}" (expected "edit", "generate" or "_comment" keys)`);
    }
    if (!isObject(value)) throw new ModelFormatError(`${where}: "${section}" must be an object`);
    const parsed: Record<string, unknown> = parseFields(value, SECTIONS[section], section, where, section === 'edit');
    if (section === 'edit' && value.methods !== undefined) {
      if (!isObject(value.methods)) throw new ModelFormatError(`${where}: "edit.methods" must be an object`);
      const methods: Record<string, EditMethodDefaults> = {};
      for (const [name, m] of Object.entries(value.methods)) {
        if (name.startsWith('_')) continue;
        if (!/^[a-z][a-z0-9_-]*$/.test(name)) throw new ModelFormatError(`${where}: "edit.methods.${name}" is not a method name`);
        if (!isObject(m)) throw new ModelFormatError(`${where}: "edit.methods.${name}" must be an object`);
        methods[name] = parseFields(m, SECTIONS.edit, `edit.methods.${name}`, where, false);
      }
      parsed.methods = methods;
    }
    out[section] = parsed;
  }
  return out;
}

/** The numeric `fields` of one object of a {@link DEFAULTS_FILE} (`path` names it in errors; `methods` skipped when `nested`). */
function parseFields(value: Record<string, unknown>, fields: Field[], at: string, where: string, nested: boolean): Record<string, number> {
  const parsed: Record<string, number> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key.startsWith('_') || (nested && key === 'methods')) continue;
    const field = fields.find((f) => f.key === key);
    if (!field) {
      const expected = [...fields.map((f) => `"${f.key}"`), ...(nested ? ['"methods"'] : [])].join(', ');
      throw new ModelFormatError(`${where}: unknown key "${at}.${key}" (expected ${expected})`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || (field.integer && !Number.isInteger(v))) {
      throw new ModelFormatError(`${where}: "${at}.${key}" must be a positive ${field.integer ? 'integer' : 'number'}, got ${JSON.stringify(v)}`);
    }
    parsed[field.name] = v;
  }
  return parsed;
}

/**
 * Reads `<dir>/ddsjs_defaults.json` ({@link DEFAULTS_FILE}) if it exists: `{}` when it does not, the validated
 * defaults (with `file` set) when it does; throws naming the file on invalid JSON or an invalid value.
 */
export function readPipelineDefaults(dir: string): PipelineDefaults {
  const file = path.join(dir, DEFAULTS_FILE);
  if (!fs.existsSync(file)) return {};
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelFormatError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  return { ...parsePipelineDefaults(json, file), file };
}

/** Where a resolved setting came from: the caller's option, the model folder's {@link DEFAULTS_FILE}, or the library. */
export type SettingSource = 'option' | 'model' | 'library';

/** A setting with its origin (see {@link resolveDefaults}). */
export interface ResolvedSetting {
  readonly value: number;
  readonly source: SettingSource;
}

/**
 * THE resolution rule of the loops' defaults: for each key of `library`, the caller's option when given, else the
 * model folder's value (`model`, one section of {@link PipelineDefaults}), else the library's — each returned with
 * its {@link SettingSource}. Used by the editing loop, {@link StableDiffusion.generate} and the CLI's printed line,
 * so that no caller re-derives a default or where it came from.
 */
export function resolveDefaults<K extends string>(
  options: { readonly [k in K]?: number },
  model: { readonly [k in K]?: number } | undefined,
  library: { readonly [k in K]: number },
): { [k in K]: ResolvedSetting } {
  const out = {} as { [k in K]: ResolvedSetting };
  for (const key of Object.keys(library) as K[]) {
    const o = options?.[key];
    const m = model?.[key];
    out[key] = o !== undefined ? { value: o, source: 'option' } : m !== undefined ? { value: m, source: 'model' } : { value: library[key], source: 'library' };
  }
  return out;
}

/** The library's generation defaults (diffusers' StableDiffusionPipeline: 50 DDIM steps, guidance 7.5). */
export const LIBRARY_GENERATE_DEFAULTS: Readonly<Required<GenerateDefaults>> = { steps: 50, guidanceScale: 7.5 };

/**
 * Generation's steps and guidance scale ({@link resolveDefaults} with {@link LIBRARY_GENERATE_DEFAULTS}): the
 * option, else the model folder's `generate` section, else 50 / 7.5.
 */
export function resolveGenerateDefaults(
  defaults: PipelineDefaults | undefined,
  options: { readonly steps?: number; readonly guidanceScale?: number },
): { steps: ResolvedSetting; guidanceScale: ResolvedSetting } {
  return resolveDefaults(options, defaults?.generate, LIBRARY_GENERATE_DEFAULTS);
}
