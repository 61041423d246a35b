// `inspectModel` (used by `dds inspect`) and `inspect` (`dds-weights inspect`): human-readable summaries of a .safetensors file, a diffusers
// Stable Diffusion folder or a single-file LDM checkpoint. Reads headers and configs only (no tensor data).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgumentError, IoError, ModelFormatError, safetensorsCandidates, SafetensorsFile } from '@ddsjs/safetensors';
import { detectSingleFileModel } from './single-file';
import { LDM_CLIP_PREFIX, LDM_OPEN_CLIP_PREFIX, LDM_UNET_PREFIX, LDM_VAE_PREFIX } from './single-file-keys';
import { formatBytes, formatCount } from './format';

/** Options of {@link inspect}. */
export interface InspectOptions {
  /** List every tensor of a .safetensors file (default: the first 20 and a summary). */
  all?: boolean;
  /** Diffusers folders: describe only this weights variant (`'fp16'`), or `'fp32'` for the plain files (default: every variant found). */
  variant?: 'fp16' | 'fp32';
}

/** Tensor statistics of an opened safetensors file (or sharded checkpoint). */
interface FileStats {
  tensors: number;
  parameters: number;
  bytes: number;
  dtypes: Map<string, number>;
}

function stats(f: SafetensorsFile, keys: string[] = f.keys()): FileStats {
  const s: FileStats = { tensors: keys.length, parameters: 0, bytes: 0, dtypes: new Map() };
  for (const k of keys) {
    const i = f.info(k);
    s.parameters += i.shape.reduce((a, b) => a * b, 1);
    s.bytes += i.byteLength;
    s.dtypes.set(i.dtype, (s.dtypes.get(i.dtype) ?? 0) + 1);
  }
  return s;
}

function dtypeSummary(d: Map<string, number>): string {
  return [...d].map(([t, n]) => (d.size > 1 ? `${t}×${n}` : t)).join(', ');
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((v, c) => (c === r.length - 1 ? v : v.padEnd(widths[c]))).join('  ').trimEnd()).join('\n');
}

/** Which LDM component a single-file key belongs to. */
function ldmComponent(key: string): string {
  if (key.startsWith(LDM_UNET_PREFIX)) return 'unet';
  if (key.startsWith(LDM_VAE_PREFIX)) return 'vae';
  if (key.startsWith(LDM_CLIP_PREFIX) || key.startsWith(LDM_OPEN_CLIP_PREFIX) || key.startsWith('cond_stage_model.')) return 'text_encoder';
  return 'other';
}

async function inspectFile(file: string, options: InspectOptions): Promise<string> {
  const f = await SafetensorsFile.open(file);
  try {
    const keys = f.keys();
    const s = stats(f, keys);
    const lines: string[] = [
      `${file}: safetensors${file.endsWith('.json') ? ' (sharded)' : ''}`,
      `  tensors: ${s.tensors}, parameters: ${formatCount(s.parameters)} (${s.parameters}), data: ${formatBytes(s.bytes)}`,
      `  dtypes: ${[...s.dtypes].map(([t, n]) => `${t} ${n}`).join(', ')}`,
    ];
    if (Object.keys(f.metadata).length) lines.push(`  metadata: ${JSON.stringify(f.metadata)}`);
    if (keys.some((k) => k.startsWith(LDM_UNET_PREFIX))) {
      lines.push('  single-file (LDM/CompVis) checkpoint');
      try {
        const d = detectSingleFileModel(keys, (k) => f.info(k).shape);
        lines.push(`  detected: ${d.modelType} (text encoder layout: ${d.textEncoder}, default prediction type: ${d.predictionType})`);
      } catch (e) {
        lines.push(`  not loadable: ${(e as Error).message}`);
      }
      const groups = new Map<string, string[]>();
      for (const k of keys) {
        const c = ldmComponent(k);
        if (!groups.has(c)) groups.set(c, []);
        groups.get(c)!.push(k);
      }
      const rows = [['component', 'tensors', 'parameters', 'bytes', 'dtypes']];
      for (const c of ['unet', 'vae', 'text_encoder', 'other']) {
        const ks = groups.get(c);
        if (!ks) continue;
        const g = stats(f, ks);
        rows.push([c, String(g.tensors), formatCount(g.parameters), formatBytes(g.bytes), dtypeSummary(g.dtypes)]);
      }
      lines.push(...table(rows).split('\n').map((l) => `  ${l}`));
    }
    const shown = options.all ? keys : keys.slice(0, 20);
    const rows = [['name', 'dtype', 'shape']];
    for (const k of shown) {
      const i = f.info(k);
      rows.push([k, i.dtype, `[${i.shape.join(', ')}]`]);
    }
    lines.push('', ...table(rows).split('\n').map((l) => `  ${l}`));
    if (shown.length < keys.length) lines.push(`  … ${keys.length - shown.length} more tensors (--all lists every tensor)`);
    return lines.join('\n');
  } finally {
    await f.close();
  }
}

function readJson(file: string): Record<string, unknown> | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    const v = JSON.parse(fs.readFileSync(file, 'utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function fields(cfg: Record<string, unknown> | undefined, names: [string, unknown?][]): string {
  if (!cfg) return 'no config.json';
  return names
    .map(([n, dflt]) => {
      const v = cfg[n] ?? dflt;
      return v === undefined || v === null ? null : `${n}=${JSON.stringify(v)}`;
    })
    .filter(Boolean)
    .join(' ');
}

const FOLDER_COMPONENTS: { dir: string; base: string; keyFields: [string, unknown?][] }[] = [
  {
    dir: 'unet',
    base: 'diffusion_pytorch_model',
    keyFields: [
      ['block_out_channels'],
      ['layers_per_block'],
      ['attention_head_dim'],
      ['num_attention_heads'],
      ['cross_attention_dim'],
      ['use_linear_projection', false],
      ['sample_size'],
      ['in_channels'],
    ],
  },
  {
    dir: 'vae',
    base: 'diffusion_pytorch_model',
    keyFields: [['block_out_channels'], ['layers_per_block'], ['latent_channels'], ['scaling_factor', 0.18215], ['sample_size']],
  },
  {
    dir: 'text_encoder',
    base: 'model',
    keyFields: [['hidden_size'], ['num_hidden_layers'], ['num_attention_heads'], ['intermediate_size'], ['hidden_act'], ['vocab_size']],
  },
];

async function inspectFolder(dir: string, options: InspectOptions): Promise<string> {
  const lines: string[] = [];
  const index = readJson(path.join(dir, 'model_index.json'));
  lines.push(`${dir}: ${index ? `diffusers folder (${String(index._class_name ?? 'unknown pipeline')})` : 'folder (no model_index.json)'}`);
  let fp32Total = 0;
  let found = 0;
  for (const c of FOLDER_COMPONENTS) {
    const sub = path.join(dir, c.dir);
    if (!fs.existsSync(sub)) {
      lines.push(`  ${c.dir}/: missing`);
      continue;
    }
    const cfg = readJson(path.join(sub, 'config.json'));
    lines.push(`  ${c.dir}/: ${fields(cfg, c.keyFields)}`);
    const variants: ('fp32' | 'fp16')[] = options.variant ? [options.variant] : ['fp32', 'fp16'];
    let any = false;
    let componentParams: number | undefined;
    for (const v of variants) {
      for (const name of safetensorsCandidates(c.base, v === 'fp16' ? 'fp16' : undefined)) {
        const p = path.join(sub, name);
        if (!fs.existsSync(p)) continue;
        any = true;
        found++;
        const f = await SafetensorsFile.open(p);
        try {
          const s = stats(f);
          const kind = `${v}${name.endsWith('.json') ? ', sharded' : ''}`;
          lines.push(
            `    ${name} (${kind}): ${dtypeSummary(s.dtypes)}, ${s.tensors} tensors, ${formatCount(s.parameters)} parameters, ${formatBytes(s.bytes)}`,
          );
          if (componentParams === undefined) componentParams = s.parameters;
        } finally {
          await f.close();
        }
        break;
      }
    }
    if (componentParams !== undefined) {
      fp32Total += componentParams * 4;
      lines.push(`    float32 in memory: ${formatBytes(componentParams * 4)}`);
    }
    if (!any) {
      const others = fs.readdirSync(sub).filter((n) => /\.(bin|ckpt|pt|safetensors)$/.test(n));
      lines.push(
        `    no ${options.variant ?? ''} safetensors weights${others.length ? ` (found ${others.join(', ')}${others.some((n) => !n.endsWith('.safetensors')) ? '; pickled .bin/.ckpt files are not supported' : ''})` : ''}`.replace('no  ', 'no '),
      );
    }
  }
  const sched = readJson(path.join(dir, 'scheduler', 'scheduler_config.json'));
  lines.push(
    `  scheduler/: ${sched ? fields(sched, [['_class_name'], ['prediction_type', 'epsilon'], ['beta_schedule'], ['num_train_timesteps'], ['steps_offset']]) : 'missing'}`,
  );
  const tokDir = path.join(dir, 'tokenizer');
  if (fs.existsSync(path.join(tokDir, 'vocab.json'))) {
    const map = readJson(path.join(tokDir, 'special_tokens_map.json')) ?? readJson(path.join(tokDir, 'tokenizer_config.json'));
    const pad = map?.pad_token;
    const padText = typeof pad === 'string' ? pad : typeof pad === 'object' && pad !== null ? String((pad as { content?: unknown }).content) : '(default)';
    lines.push(`  tokenizer/: CLIP BPE, pad token ${JSON.stringify(padText)}`);
  } else lines.push('  tokenizer/: missing');
  if (found) lines.push(`  total float32 weights in memory: ${formatBytes(fp32Total)}`);
  return lines.join('\n');
}

/**
 * A human-readable description of `file`:
 * - a `.safetensors` file (or sharded `*.index.json`): tensor count, dtypes, parameter count, data size, and a
 *   table of tensors (name, dtype, shape) — the first 20 unless `all`; for a single-file LDM checkpoint also the
 *   detected model type and per-component (unet / vae / text_encoder) counts;
 * - a diffusers folder: per component the weights files found (fp32, fp16 variant, sharded) with dtype, tensor
 *   count, parameter count and size, key config fields (block_out_channels, cross_attention_dim, heads,
 *   scaling_factor…), the scheduler's prediction type and the tokenizer's pad token.
 * Reads headers and JSON only. Throws an Error naming the path when it does not exist or is not safetensors.
 */
export async function inspect(file: string, options: InspectOptions = {}): Promise<string> {
  if (typeof file !== 'string' || file === '') throw new InvalidArgumentError('inspect: expected a .safetensors file or a diffusers folder');
  if (options.variant !== undefined && options.variant !== 'fp16' && options.variant !== 'fp32') {
    throw new InvalidArgumentError(`inspect: variant must be fp16 or fp32, got ${JSON.stringify(options.variant)}`);
  }
  if (!fs.existsSync(file)) throw new IoError(`not found: ${file}`);
  if (fs.statSync(file).isDirectory()) return inspectFolder(file, options);
  if (!/\.(safetensors|json)$/i.test(file)) {
    throw new ModelFormatError(`${file}: not a .safetensors file (pickled .ckpt/.bin checkpoints are not supported)`);
  }
  return inspectFile(file, options);
}

/**
 * The summary `dds inspect --model` prints for a model path (diffusers folder or single-file checkpoint):
 * {@link inspect} with the default tensor listing; `variant: 'fp16'` describes only the fp16 weights of a folder.
 * Depends only on @ddsjs/safetensors and @ddsjs/sd's config/detection code (no tfjs backend is used).
 */
export async function inspectModel(file: string, options: { variant?: 'fp16' } = {}): Promise<string> {
  return inspect(file, { variant: options.variant });
}
