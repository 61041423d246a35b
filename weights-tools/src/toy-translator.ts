// The translation network (issue 6) on the toy-shapes world: training data from the world's generator (pictures of
// each task's source caption at random positions and sizes), `dds-weights train-toy-translator` and
// `dds-weights eval-toy-translator` (one forward pass against per-image DDS editing, on pictures not seen in training).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import type { StableDiffusion } from '@ddsjs/sd';
import {
  type Translator,
  type TranslatorLatentData,
  type TranslatorTask,
  TRANSLATOR_FILES,
  DEFAULT_GUIDANCE_SCALE,
  loadTranslator,
  trainTranslator,
} from '@ddsjs/dds';
import { Rng, type Scene, caption, defaultTranslatorDir, parseCaption, renderScene, sampleScene } from '@ddsjs/toy-shapes';
import { type EditReport, type EditTask, evaluateEdits, formatEditTable, loadToyModel, sceneInput } from './toy-quality';
import { abortOnInterrupt } from './interrupt';

/**
 * The three colour-change tasks of the shipped toy translator. Each source is a training caption of the toy model
 * (no held-out colour/shape pair), each on another background, so one network learns three different edits.
 */
export const TOY_TRANSLATOR_TASKS: readonly TranslatorTask[] = [
  { source: caption('red', 'circle', 'white'), target: caption('green', 'circle', 'white') },
  { source: caption('blue', 'triangle', 'black'), target: caption('yellow', 'triangle', 'black') },
  { source: caption('purple', 'square', 'gray'), target: caption('orange', 'square', 'gray') },
];

/**
 * `n` generator pictures of exactly the caption `text` (a {@link caption} of the world) at random positions and
 * sizes, drawn from `Rng(seed)` (positions and sizes as `sampleScene`). Deterministic. Throws on a caption the world
 * cannot draw.
 */
export function captionScenes(text: string, n: number, seed: number, size?: number): Scene[] {
  const c = parseCaption(text);
  if (!c) throw new Error(`captionScenes: not a toy-world caption: ${JSON.stringify(text)}`);
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`captionScenes: n must be a non-negative integer, got ${n}`);
  const rng = new Rng(seed);
  const out: Scene[] = [];
  for (let i = 0; i < n; i++) {
    const spec = { ...sampleScene(rng, { split: 'all', ...(size ? { size } : {}) }), ...c };
    out.push({ spec, ...renderScene(spec) });
  }
  return out;
}

/** The evaluation pictures of a translator: `perTask` fresh pictures of every task's source caption (seeded per task), with the task's target colour. */
export function translatorEditTasks(tasks: readonly TranslatorTask[], perTask: number, seed: number): EditTask[] {
  const out: EditTask[] = [];
  tasks.forEach((t, k) => {
    const want = parseCaption(t.target)?.colour;
    if (!want) throw new Error(`translatorEditTasks: task ${k}'s target is not a toy-world caption: ${JSON.stringify(t.target)}`);
    for (const scene of captionScenes(t.source, perTask, seed + 7919 * k)) out.push({ scene, want, source: t.source, target: t.target });
  });
  return out;
}

/**
 * Training data for {@link TOY_TRANSLATOR_TASKS}-like tasks: `perTask` generator pictures of each task's source
 * caption (seed `seed + task index`), encoded by the teacher's VAE (posterior mean × scaling factor) in batches of
 * 16. The caller owns the returned latents.
 */
export function toyTranslatorData(sd: StableDiffusion, tasks: readonly TranslatorTask[], perTask: number, seed: number): TranslatorLatentData[] {
  const sources = [...new Set(tasks.map((t) => t.source))];
  return sources.map((source, k) => {
    const pics = captionScenes(source, perTask, seed + k);
    const parts: tf.Tensor4D[] = [];
    for (let i = 0; i < pics.length; i += 16) {
      const batch = pics.slice(i, i + 16);
      parts.push(
        tf.tidy(() => {
          const xs = batch.map(sceneInput);
          return sd.encodeImage(tf.concat(xs, 0) as tf.Tensor4D);
        }),
      );
    }
    const latents = tf.concat(parts, 0) as tf.Tensor4D;
    tf.dispose(parts);
    return { latents, prompt: source };
  });
}

/** Help of `dds-weights train-toy-translator`. */
export const TRAIN_TOY_TRANSLATOR_HELP = `usage: dds-weights train-toy-translator [<model dir>] --out DIR [options]

Trains the translation network (@ddsjs/dds trainTranslator) on the toy-shapes world for three colour-change tasks
(red circle → green on white, blue triangle → yellow on black, purple square → orange on gray), from generator
pictures of each source caption (not from the model), with DDS as the only signal. Default model: the embedded one.
Rerunning the same command resumes from the checkpoint in --out.
  --out DIR             translator folder (checkpoints; resumed when present)          (required)
  --steps N             total steps (default 300)          --batch N      latents per step (default 4)
  --lr X                Adam lr (default 1e-3)              --pictures N   pictures per task (default 64)
  --seed N              seed of pictures, init, tasks, noise (default 0)
  --guidance X          classifier-free guidance of the DDS teacher (default 7.5, the paper's)
  --cycle W             cycle-consistency weight (default 0)   --identity W   identity weight (default 0)
  --checkpoint-every N  (default 50)                        --time-budget S  stop cleanly after S seconds (or Ctrl-C)
  --force               start over                           --backend B    tfjs backend (default wasm)`;

type FlagSpec = Record<string, { type: 'string' | 'boolean'; short?: string }>;

function parse(cmd: string, args: string[], options: FlagSpec) {
  try {
    return parseArgs({ args, allowPositionals: true, strict: true, options });
  } catch (e) {
    throw new Error(`${cmd}: ${(e as Error).message}`);
  }
}

function numberFlag(cmd: string, values: Record<string, unknown>, name: string, d: number, integer: boolean, min: number): number {
  const s = values[name] as string | undefined;
  if (s === undefined) return d;
  const n = Number(s);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new Error(`${cmd}: --${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, got '${s}'`);
  }
  return n;
}

/** Runs `dds-weights train-toy-translator` (arguments after the command name); returns the exit code. */
export async function runTrainToyTranslatorCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const cmd = 'train-toy-translator';
  const { values: v, positionals } = parse(cmd, args, {
    out: { type: 'string' }, steps: { type: 'string' }, batch: { type: 'string' }, lr: { type: 'string' }, pictures: { type: 'string' },
    seed: { type: 'string' }, guidance: { type: 'string' }, cycle: { type: 'string' }, identity: { type: 'string' }, 'checkpoint-every': { type: 'string' },
    'time-budget': { type: 'string' }, force: { type: 'boolean' }, backend: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return out(TRAIN_TOY_TRANSLATOR_HELP), 0;
  if (positionals.length > 1) throw new Error(`${cmd}: expected at most one model folder, got ${positionals.length}`);
  const dir = v.out as string | undefined;
  if (!dir) throw new Error(`${cmd}: --out DIR is required`);
  const steps = numberFlag(cmd, v, 'steps', 300, true, 1);
  const batchSize = numberFlag(cmd, v, 'batch', 4, true, 1);
  const lr = numberFlag(cmd, v, 'lr', 1e-3, false, 0);
  if (lr <= 0) throw new Error(`${cmd}: --lr must be > 0`);
  const perTask = numberFlag(cmd, v, 'pictures', 64, true, 1);
  const seed = numberFlag(cmd, v, 'seed', 0, true, 0);
  const guidanceScale = numberFlag(cmd, v, 'guidance', DEFAULT_GUIDANCE_SCALE, false, 0);
  const cycleWeight = numberFlag(cmd, v, 'cycle', 0, false, 0);
  const identityWeight = numberFlag(cmd, v, 'identity', 0, false, 0);
  const checkpointEvery = numberFlag(cmd, v, 'checkpoint-every', 50, true, 0);
  const budget = numberFlag(cmd, v, 'time-budget', 0, false, 0);
  const resume = !v.force && fs.existsSync(path.join(dir, TRANSLATOR_FILES.meta)) && fs.existsSync(path.join(dir, TRANSLATOR_FILES.optimizer));

  const sd = await loadToyModel(cmd, positionals[0], v.backend);
  const ctrl = new AbortController();
  const timer = budget > 0 ? setTimeout(() => ctrl.abort(), budget * 1000) : null;
  const signals = abortOnInterrupt(ctrl, `${cmd}: interrupted: stopping after this step (a checkpoint will be written; rerun to resume)`);
  let data: TranslatorLatentData[] = [];
  let translator: Translator | null = null;
  try {
    process.stderr.write(`${cmd}: encoding ${perTask} pictures for each of ${TOY_TRANSLATOR_TASKS.length} tasks\n`);
    data = toyTranslatorData(sd, TOY_TRANSLATOR_TASKS, perTask, seed);
    const t0 = Date.now();
    let lossSum = 0;
    let lossN = 0;
    let done = 0;
    translator = await trainTranslator(sd, {
      tasks: [...TOY_TRANSLATOR_TASKS],
      data,
      steps,
      batchSize,
      lr,
      seed,
      guidanceScale,
      cycleWeight,
      identityWeight,
      checkpointDir: dir,
      checkpointEvery,
      // The embedded model is recorded by package name, not by this checkout's path (dds translate loads a recorded
      // folder that exists as the teacher).
      ...(positionals[0] === undefined ? { teacherSource: '@ddsjs/toy-shapes/model' } : {}),
      ...(resume ? { resumeFrom: dir } : { overwrite: Boolean(v.force) }),
      signal: ctrl.signal,
      onStep: ({ step, loss, etaMs, checkpointed }) => {
        lossSum += loss;
        lossN++;
        done++;
        if ((step + 1) % 10 === 0 || step + 1 === steps) {
          const perStep = (Date.now() - t0) / 1000 / done;
          process.stderr.write(`translator ${step + 1}/${steps}  loss ${(lossSum / lossN).toExponential(3)} (mean of ${lossN})  ${perStep.toFixed(2)} s/step  eta ${Math.round(etaMs / 1000)} s${checkpointed ? '  checkpoint' : ''}\n`);
          lossSum = 0;
          lossN = 0;
        }
      },
    });
    const msg = `${cmd}: ${translator.stepsDone} steps in ${((Date.now() - t0) / 60000).toFixed(1)} min → ${dir}`;
    out(ctrl.signal.aborted ? `${msg} (${signals.interrupted() ? 'interrupted' : 'stopped by --time-budget'}; rerun to resume)` : msg);
  } finally {
    if (timer) clearTimeout(timer);
    signals.remove();
    translator?.dispose();
    for (const d of data) tf.dispose(d.latents);
    sd.dispose();
  }
  return 0;
}

/** Options of {@link evaluateToyTranslator}. */
export interface ToyTranslatorEvalOptions {
  /** Pictures per task (default 4). */
  perTask?: number;
  /** Seed of the pictures (default 4321; training used 0, 1, 2). */
  seed?: number;
  /** Also run per-image DDS editing (`editImage`) on the same pictures, with this many steps (default 200; 0 = skip). */
  ddsSteps?: number;
  /** Called after each picture. */
  onCase?: (what: string, done: number, total: number) => void;
}

/**
 * Measures a translator on fresh generator pictures of its tasks' source captions (one forward pass each) and,
 * unless `ddsSteps` is 0, per-image DDS editing on the same pictures: returns the two {@link EditReport}s.
 */
export async function evaluateToyTranslator(sd: StableDiffusion, translator: Translator, options: ToyTranslatorEvalOptions = {}): Promise<EditReport[]> {
  const tasks = translatorEditTasks(translator.tasks, options.perTask ?? 4, options.seed ?? 4321);
  const cb = (what: string) => (_c: unknown, done: number, total: number) => options.onCase?.(what, done, total);
  const reports = [
    await evaluateEdits(sd, {
      tasks,
      method: { label: 'translator (1 pass)', edit: (x, t) => translator.translate(x, t.target) },
      onCase: cb('translator'),
    }),
  ];
  const ddsSteps = options.ddsSteps ?? 200;
  if (ddsSteps > 0) reports.push(await evaluateEdits(sd, { tasks, method: 'dds', steps: ddsSteps, onCase: cb('dds edit') }));
  return reports;
}

/** Help of `dds-weights eval-toy-translator`. */
export const EVAL_TOY_TRANSLATOR_HELP = `usage: dds-weights eval-toy-translator [<translator dir>] [--model DIR] [--pictures N] [--seed N] [--dds-steps N]

Measures a toy translator (default: the one shipped with @ddsjs/toy-shapes) on fresh generator pictures of its tasks'
source captions, against per-image DDS editing (editImage, 200 steps) on the same pictures; prints the table.
  --model DIR      the teacher (default: the embedded toy model)
  --pictures N     pictures per task (default 4)      --seed N   seed of the pictures (default 4321)
  --dds-steps N    DDS steps (default 200; 0 = translator only)   --backend B   tfjs backend (default wasm)`;

/** Runs `dds-weights eval-toy-translator`; prints the table; returns the exit code. */
export async function runEvalToyTranslatorCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const cmd = 'eval-toy-translator';
  const { values: v, positionals } = parse(cmd, args, {
    model: { type: 'string' }, pictures: { type: 'string' }, seed: { type: 'string' }, 'dds-steps': { type: 'string' },
    backend: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return out(EVAL_TOY_TRANSLATOR_HELP), 0;
  if (positionals.length > 1) throw new Error(`${cmd}: expected at most one translator folder, got ${positionals.length}`);
  const dir = positionals[0] ?? defaultTranslatorDir();
  if (!dir) throw new Error(`${cmd}: no translator folder given and @ddsjs/toy-shapes ships none`);
  const perTask = numberFlag(cmd, v, 'pictures', 4, true, 1);
  const seed = numberFlag(cmd, v, 'seed', 4321, true, 0);
  const ddsSteps = numberFlag(cmd, v, 'dds-steps', 200, true, 0);
  const sd = await loadToyModel(cmd, v.model as string | undefined, v.backend);
  let translator: Translator | null = null;
  try {
    translator = await loadTranslator(dir, sd);
    const reports = await evaluateToyTranslator(sd, translator, {
      perTask,
      seed,
      ddsSteps,
      onCase: (what, done, total) => process.stderr.write(`  ${what} ${done}/${total}\n`),
    });
    out(formatEditTable(reports));
  } finally {
    translator?.dispose();
    sd.dispose();
  }
  return 0;
}
