// The translation network (issue 6) on the toy-shapes world: training data from the world's generator (pictures of
// each task's source caption at random positions and sizes), `dds-weights train-toy-translator` and
// `dds-weights eval-toy-translator` (one forward pass against per-image DDS editing, on pictures not seen in training).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { type StableDiffusion, writeImage } from '@ddsjs/sd';
import {
  type Translator,
  TRANSLATOR_FILES,
  editImage,
  loadTranslator,
  trainTranslator,
} from '@ddsjs/dds';
import { type TranslatorLatentData, type TranslatorTask } from '@ddsjs/dds/internals';
import {
  BACKGROUND_NAMES,
  COLOURS,
  type ColourName,
  Rng,
  SHAPES,
  type Scene,
  caption,
  defaultTranslatorDir,
  parseCaption,
  renderScene,
  sampleScene,
  toBytes,
} from '@ddsjs/toy-shapes';
import {
  type CustomEditor,
  type EditCase,
  type EditReport,
  type EditTask,
  evaluateEdits,
  formatEditTable,
  loadToyModel,
  sceneInput,
  summariseEdits,
} from './toy-quality';
import { abortOnInterrupt } from './interrupt';
import { shipTranslatorFp16 } from './fp16';

/** The colour of every picture of the toy translator's source domain. */
export const TOY_TRANSLATOR_SOURCE_COLOUR: ColourName = 'red';

/** The toy translator's target tasks: recolour the shape to each of these, keeping shape and background. */
export const TOY_TRANSLATOR_TARGET_COLOURS: readonly ColourName[] = ['green', 'blue', 'yellow', 'purple'];

/**
 * The source domain's captions: `"a red {circle|square|triangle} on a {white|black|gray|pink} background"`, 12 in
 * all, in a fixed order (shape-major).
 */
export const TOY_TRANSLATOR_SOURCE_CAPTIONS: readonly string[] = SHAPES.flatMap((shape) => BACKGROUND_NAMES.map((bg) => caption(TOY_TRANSLATOR_SOURCE_COLOUR, shape, bg)));

/**
 * The prompt a task gives the network for one picture: the picture's caption `source` with the shape colour
 * replaced by `colour` (e.g. "a red circle on a white background", green → "a green circle on a white background").
 * The same prompt is DDS's target prompt when training. Throws when `source` is not a toy-world caption.
 */
export function toyTaskPrompt(source: string, colour: ColourName): string {
  const c = parseCaption(source);
  if (!c) throw new Error(`toyTaskPrompt: not a toy-world caption: ${JSON.stringify(source)}`);
  if (!(colour in COLOURS)) throw new Error(`toyTaskPrompt: unknown colour ${JSON.stringify(colour)}`);
  return caption(colour, c.shape, c.background);
}

/**
 * The paper-style multi-task toy translator's tasks (issue 26): one source domain (a red shape, three shapes, four
 * backgrounds) and four target tasks on the same pictures (→ green, blue, yellow, purple). DDS compares a picture's
 * own caption with the same caption in the target colour, so each (source caption, target colour) pair is one
 * `{ source, target }` of `trainTranslator` — 12 × 4 = 48, in source-caption-major order — and the network is
 * conditioned on the target caption, whose colour word is the task.
 */
export const TOY_TRANSLATOR_TASKS: readonly TranslatorTask[] = TOY_TRANSLATOR_SOURCE_CAPTIONS.flatMap((source) =>
  TOY_TRANSLATOR_TARGET_COLOURS.map((colour) => ({ source, target: toyTaskPrompt(source, colour) })),
);

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

/**
 * `n` pictures of the toy translator's source domain: red shapes, picture i a {@link SHAPES}[i mod 3] on a
 * {@link BACKGROUND_NAMES}[i mod 4] background (so the first 4 pictures cover every background and every 12 each of the
 * 12 {@link TOY_TRANSLATOR_SOURCE_CAPTIONS} once), at a position and size drawn from
 * `Rng(seed)` (as `sampleScene`). Deterministic. Training pictures come from {@link captionScenes} with seeds 0–11
 * per caption, so a seed here gives other pictures.
 */
export function sourceDomainScenes(n: number, seed: number): Scene[] {
  return colourScenes(n, seed, [TOY_TRANSLATOR_SOURCE_COLOUR]);
}

/**
 * `n` pictures whose shape colour cycles through `colours` (fastest), then shape and background as in
 * {@link sourceDomainScenes} (per colour), positions and sizes from `Rng(seed)`. Used for the source domain (`['red']`) and for
 * pictures outside it.
 */
export function colourScenes(n: number, seed: number, colours: readonly ColourName[]): Scene[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`colourScenes: n must be a non-negative integer, got ${n}`);
  if (colours.length === 0 || colours.some((c) => !(c in COLOURS))) throw new Error(`colourScenes: colours must be toy-world colours, got ${JSON.stringify(colours)}`);
  const rng = new Rng(seed);
  const out: Scene[] = [];
  for (let i = 0; i < n; i++) {
    const colour = colours[i % colours.length];
    const j = Math.floor(i / colours.length);
    // Shape and background both cycle (3 and 4 are coprime): any 4 consecutive pictures cover every background, any
    // 3 every shape, and 12 every (shape, background) pair once.
    const shape = SHAPES[j % SHAPES.length];
    const background = BACKGROUND_NAMES[j % BACKGROUND_NAMES.length];
    const spec = { ...sampleScene(rng, { split: 'all' }), colour, shape, background };
    out.push({ spec, ...renderScene(spec) });
  }
  return out;
}

/**
 * Every (picture, task) pair: for each scene, for each colour of `colours` (default
 * {@link TOY_TRANSLATOR_TARGET_COLOURS}), the edit "this picture with the shape in that colour" — source prompt the
 * picture's caption, target prompt {@link toyTaskPrompt}. Picture-major order.
 */
export function toyTranslatorEditTasks(pictures: readonly Scene[], colours: readonly ColourName[] = TOY_TRANSLATOR_TARGET_COLOURS): EditTask[] {
  return pictures.flatMap((scene) => colours.map((want) => ({ scene, want, source: scene.caption, target: toyTaskPrompt(scene.caption, want) })));
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

/** Defaults of `dds-weights train-toy-translator`: the shipped translator's recipe (with seed 0). */
export const TOY_TRANSLATOR_RECIPE = { steps: 400, batch: 4, lr: 1e-3, pictures: 32, guidance: 2, warmup: 0, warmupFrom: 1 } as const;

/** Help of `dds-weights train-toy-translator`. */
export const TRAIN_TOY_TRANSLATOR_HELP = `usage: dds-weights train-toy-translator [<model dir>] --out DIR [options]

Trains the multi-task translation network (@ddsjs/dds trainTranslator) on the toy-shapes world: one source domain
(a red circle, square or triangle on a white, black, gray or pink background, positions and sizes varied) and four
tasks on the same pictures (→ ${TOY_TRANSLATOR_TARGET_COLOURS.join(', ')}), from generator pictures (not from the model),
with DDS as the only signal. Default model: the embedded one. The defaults are the shipped translator's recipe.
Rerunning the same command resumes from the checkpoint in --out.
  --out DIR             translator folder (checkpoints; resumed when present)          (required)
  --steps N             total steps (default ${TOY_TRANSLATOR_RECIPE.steps})          --batch N      latents per step (default ${TOY_TRANSLATOR_RECIPE.batch})
  --lr X                Adam lr (default ${TOY_TRANSLATOR_RECIPE.lr})              --pictures N   pictures per source caption (default ${TOY_TRANSLATOR_RECIPE.pictures})
  --seed N              seed of pictures, init, tasks, noise (default 0)
  --guidance X          classifier-free guidance of the DDS teacher (default ${TOY_TRANSLATOR_RECIPE.guidance}; the paper's is 7.5)
  --warmup N            guidance warm-up: rise linearly from --warmup-from to --guidance over N steps (default ${TOY_TRANSLATOR_RECIPE.warmup}: off)
  --warmup-from X       (default ${TOY_TRANSLATOR_RECIPE.warmupFrom})
  --cycle W             cycle-consistency weight (default 0)   --identity W   identity weight (default 0)
  --checkpoint-every N  (default 50)                        --time-budget S  stop cleanly after S seconds (or Ctrl-C)
  --ship DIR            after training, also write the translator to DIR (replaced) for shipping: float16 weights,
                        no optimiser state (the shipped one: --ship packages/toy-shapes/translator)
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
    seed: { type: 'string' }, guidance: { type: 'string' }, warmup: { type: 'string' }, 'warmup-from': { type: 'string' }, cycle: { type: 'string' }, identity: { type: 'string' }, 'checkpoint-every': { type: 'string' },
    'time-budget': { type: 'string' }, ship: { type: 'string' }, force: { type: 'boolean' }, backend: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return out(TRAIN_TOY_TRANSLATOR_HELP), 0;
  if (positionals.length > 1) throw new Error(`${cmd}: expected at most one model folder, got ${positionals.length}`);
  const dir = v.out as string | undefined;
  if (!dir) throw new Error(`${cmd}: --out DIR is required`);
  const R = TOY_TRANSLATOR_RECIPE;
  const steps = numberFlag(cmd, v, 'steps', R.steps, true, 1);
  const batchSize = numberFlag(cmd, v, 'batch', R.batch, true, 1);
  const lr = numberFlag(cmd, v, 'lr', R.lr, false, 0);
  if (lr <= 0) throw new Error(`${cmd}: --lr must be > 0`);
  const perTask = numberFlag(cmd, v, 'pictures', R.pictures, true, 1);
  const seed = numberFlag(cmd, v, 'seed', 0, true, 0);
  const guidanceScale = numberFlag(cmd, v, 'guidance', R.guidance, false, 0);
  const warmup = numberFlag(cmd, v, 'warmup', R.warmup, true, 0);
  const warmupFrom = numberFlag(cmd, v, 'warmup-from', R.warmupFrom, false, 0);
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
    process.stderr.write(`${cmd}: encoding ${perTask} pictures for each of ${TOY_TRANSLATOR_SOURCE_CAPTIONS.length} source captions (${TOY_TRANSLATOR_TASKS.length} tasks)\n`);
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
      ...(warmup > 0 ? { guidanceWarmup: { steps: warmup, from: warmupFrom } } : {}),
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
    if (v.ship && !ctrl.signal.aborted) {
      const r = await shipTranslatorFp16(dir, v.ship as string, { force: true, warn: (m) => process.stderr.write(`${cmd}: ${m}\n`) });
      out(`${cmd}: shipped to ${v.ship as string} (float16: ${r.converted} tensors${r.overflow ? `, ${r.overflow} values overflowed` : ''})`);
    }
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
  /** Held-out pictures of the source domain (default 12: each source caption once). */
  pictures?: number;
  /** Seed of the pictures (default 4321, the reported set; 999 is the validation set). */
  seed?: number;
  /** The target colours measured (default {@link TOY_TRANSLATOR_TARGET_COLOURS}). */
  colours?: readonly ColourName[];
  /** Measure the translator (default true). */
  translator?: boolean;
  /** Also run per-image DDS editing (`editImage`, the model's defaults) on the same (picture, task) pairs, with this many steps (default 200; 0 = skip). */
  ddsSteps?: number;
  /**
   * Also translate this many pictures outside the source domain (shape colours other than red, seed + 1) under every
   * task (default 0). Documented behaviour, not a claim.
   */
  outOfDomain?: number;
  /** Called after each edit. */
  onCase?: (what: string, done: number, total: number) => void;
}

/** The task × colour-reached counts of one method: `counts[task colour][got]`, `got` a colour, `'erased'` or `'none'`. */
export interface TaskConfusion {
  /** Row label, e.g. `'translator (1 pass)'`. */
  method: string;
  /** The tasks (rows), by target colour. */
  tasks: ColourName[];
  /** Counts per task and outcome. */
  counts: Record<string, Record<string, number>>;
}

/** How much one picture's outputs differ across tasks (only methods whose outputs were kept). */
export interface TaskSensitivity {
  /** Row label. */
  method: string;
  /** Mean over pictures and task pairs of the mean |Δ| / 255 between the two outputs, over the whole picture. */
  meanPairwiseChange: number;
  /** The smallest such picture mean (the picture whose outputs differ least across tasks). */
  minPicturePairwiseChange: number;
  /** Fraction of pictures whose tasks all reached different colours (none erased). */
  allDistinctRate: number;
  /** Mean number of different colours reached per picture (erased or none not counted). */
  meanDistinctColours: number;
}

/** What {@link evaluateToyTranslator} measured. Plain numbers, no tensors. */
export interface ToyTranslatorEvaluation {
  /** Every (picture, task) pair, per method measured: the translator first, then DDS. */
  reports: EditReport[];
  /** `reports` split by task (target colour), method-major. */
  perTask: EditReport[];
  /** One confusion matrix per method. */
  confusion: TaskConfusion[];
  /** Task sensitivity per method (pixel differences only for the translator; DDS from the colours reached). */
  sensitivity: TaskSensitivity[];
  /** The translator on pictures outside its source domain (when asked): every (picture, task) pair. */
  outOfDomain: EditReport | null;
  /** Its sensitivity. */
  outOfDomainSensitivity: TaskSensitivity | null;
  /** Pictures and tasks measured. */
  pictures: number;
  /** The task colours. */
  colours: ColourName[];
}

/** Splits a report of (picture, task) pairs by target colour: rows `"<method> → <colour> (<n>)"`. */
export function reportsByTask(report: EditReport, colours: readonly ColourName[]): EditReport[] {
  return colours.flatMap((c) => {
    const cases = report.cases.filter((k) => k.want === c);
    return cases.length ? [summariseEdits(`${report.method} → ${c} (${cases.length})`, cases)] : [];
  });
}

/** The task × colour-reached counts of a report's cases. */
export function taskConfusion(report: EditReport, colours: readonly ColourName[]): TaskConfusion {
  const counts: Record<string, Record<string, number>> = {};
  for (const c of colours) counts[c] = {};
  for (const k of report.cases) {
    const row = (counts[k.want] ??= {});
    const got = k.erased ? 'erased' : (k.got ?? 'none');
    row[got] = (row[got] ?? 0) + 1;
  }
  return { method: report.method, tasks: [...colours], counts };
}

/**
 * Task sensitivity of `cases` (picture-major: `colours.length` consecutive cases per picture) and, when given, the
 * outputs' bytes in the same order (RGB, HWC): see {@link TaskSensitivity}.
 */
export function taskSensitivity(method: string, cases: readonly EditCase[], perPicture: number, outputs?: readonly Uint8Array[]): TaskSensitivity {
  if (perPicture < 1 || cases.length % perPicture !== 0) throw new Error(`taskSensitivity: ${cases.length} cases are not whole pictures of ${perPicture} tasks`);
  const pics = cases.length / perPicture;
  let distinct = 0;
  let all = 0;
  let sum = 0;
  let min = Infinity;
  for (let p = 0; p < pics; p++) {
    const cs = cases.slice(p * perPicture, (p + 1) * perPicture);
    const got = new Set(cs.filter((c) => c.got !== null && !c.erased).map((c) => c.got));
    distinct += got.size;
    if (got.size === perPicture) all++;
    if (outputs) {
      let ps = 0;
      let pairs = 0;
      for (let i = 0; i < perPicture; i++) {
        for (let j = i + 1; j < perPicture; j++) {
          const a = outputs[p * perPicture + i];
          const b = outputs[p * perPicture + j];
          let d = 0;
          for (let k = 0; k < a.length; k++) d += Math.abs(a[k] - b[k]);
          ps += d / a.length / 255;
          pairs++;
        }
      }
      const m = pairs ? ps / pairs : 0;
      sum += m;
      min = Math.min(min, m);
    }
  }
  return {
    method,
    meanPairwiseChange: outputs ? sum / pics : NaN,
    minPicturePairwiseChange: outputs ? min : NaN,
    allDistinctRate: all / pics,
    meanDistinctColours: distinct / pics,
  };
}

/** A translator as a {@link CustomEditor} that also keeps every output's bytes (in `outputs`, in call order). */
function recordingTranslator(translator: Translator, label: string): { editor: CustomEditor; outputs: Uint8Array[] } {
  const outputs: Uint8Array[] = [];
  return {
    outputs,
    editor: {
      label,
      edit: async (x, t) => {
        const y = translator.translate(x, t.target);
        outputs.push(toBytes((await y.data()) as Float32Array));
        return y;
      },
    },
  };
}

/**
 * Measures a multi-task toy translator (issue 26) on held-out pictures of its source domain, every picture under
 * every task ({@link toyTranslatorEditTasks}): per (picture, task) the colour reached, the shape kept (IoU) and the
 * background kept (`evaluateEdits`); per task; the task × colour-reached confusion; and task sensitivity (how far
 * one picture's outputs under different tasks differ, and whether they land on different colours). Optionally the
 * same pairs by per-image DDS, and the translator on pictures outside the source domain. Frees every tensor it
 * makes.
 */
export async function evaluateToyTranslator(sd: StableDiffusion, translator: Translator | null, options: ToyTranslatorEvalOptions = {}): Promise<ToyTranslatorEvaluation> {
  const colours = [...(options.colours ?? TOY_TRANSLATOR_TARGET_COLOURS)];
  const n = options.pictures ?? 12;
  const seed = options.seed ?? 4321;
  const pictures = sourceDomainScenes(n, seed);
  const tasks = toyTranslatorEditTasks(pictures, colours);
  const cb = (what: string) => (_c: unknown, done: number, total: number) => options.onCase?.(what, done, total);
  const reports: EditReport[] = [];
  const sensitivity: TaskSensitivity[] = [];
  let outOfDomain: EditReport | null = null;
  let outOfDomainSensitivity: TaskSensitivity | null = null;
  if (options.translator !== false) {
    if (!translator) throw new Error('evaluateToyTranslator: no translator given (pass translator: false to measure DDS only)');
    const rec = recordingTranslator(translator, 'translator (1 pass)');
    const r = await evaluateEdits(sd, { tasks, method: rec.editor, onCase: cb('translator') });
    reports.push(r);
    sensitivity.push(taskSensitivity(r.method, r.cases, colours.length, rec.outputs));
    const m = options.outOfDomain ?? 0;
    if (m > 0) {
      const others = (Object.keys(COLOURS) as ColourName[]).filter((c) => c !== TOY_TRANSLATOR_SOURCE_COLOUR);
      const ood = toyTranslatorEditTasks(colourScenes(m, seed + 1, others), colours);
      const recO = recordingTranslator(translator, 'translator, pictures outside the source domain');
      outOfDomain = await evaluateEdits(sd, { tasks: ood, method: recO.editor, onCase: cb('outside the domain') });
      outOfDomainSensitivity = taskSensitivity(outOfDomain.method, outOfDomain.cases, colours.length, recO.outputs);
    }
  }
  const ddsSteps = options.ddsSteps ?? 200;
  if (ddsSteps > 0) {
    const r = await evaluateEdits(sd, { tasks, method: 'dds', steps: ddsSteps, onCase: cb('dds edit') });
    r.method = `DDS (editImage, ${ddsSteps} steps)`;
    reports.push(r);
    sensitivity.push(taskSensitivity(r.method, r.cases, colours.length));
  }
  return {
    reports,
    perTask: reports.flatMap((r) => reportsByTask(r, colours)),
    confusion: reports.map((r) => taskConfusion(r, colours)),
    sensitivity,
    outOfDomain,
    outOfDomainSensitivity,
    pictures: n,
    colours,
  };
}

/** A {@link TaskConfusion} as a Markdown table (rows: tasks; columns: the colour reached, erased, none). */
export function formatConfusion(c: TaskConfusion): string {
  const cols = [...(Object.keys(COLOURS) as string[]), 'erased', 'none'];
  const used = cols.filter((k) => c.tasks.some((t) => (c.counts[t]?.[k] ?? 0) > 0) || c.tasks.includes(k as ColourName));
  const lines = [`| ${c.method}: task ↓ / colour reached → | ${used.join(' | ')} |`, `|---|${used.map(() => '---').join('|')}|`];
  for (const t of c.tasks) lines.push(`| → ${t} | ${used.map((k) => { const v = c.counts[t]?.[k] ?? 0; return k === t ? `**${v}**` : String(v); }).join(' | ')} |`);
  return lines.join('\n');
}

/** {@link TaskSensitivity} rows as a Markdown table. */
export function formatSensitivity(rows: readonly TaskSensitivity[], perPicture: number): string {
  const f = (x: number) => (Number.isNaN(x) ? '–' : x.toFixed(3));
  const lines = [
    `| method | outputs differ across tasks: mean abs. difference (/255, whole picture, mean over task pairs) | least-different picture | pictures whose ${perPicture} tasks reach ${perPicture} different colours | different colours per picture |`,
    '|---|---|---|---|---|',
  ];
  for (const r of rows) lines.push(`| ${r.method} | ${f(r.meanPairwiseChange)} | ${f(r.minPicturePairwiseChange)} | ${Math.round(r.allDistinctRate * 100)}% | ${r.meanDistinctColours.toFixed(2)} |`);
  return lines.join('\n');
}

/** All of an evaluation's tables as Markdown. */
export function formatToyTranslatorEvaluation(e: ToyTranslatorEvaluation): string {
  const parts = [
    `${e.pictures} held-out pictures of the source domain × ${e.colours.length} tasks (→ ${e.colours.join(', ')}):`,
    '',
    formatEditTable(e.reports),
    '',
    'Per task:',
    '',
    formatEditTable(e.perTask),
    '',
    'Task sensitivity:',
    '',
    formatSensitivity(e.sensitivity, e.colours.length),
    ...e.confusion.flatMap((c) => ['', formatConfusion(c)]),
  ];
  if (e.outOfDomain) {
    parts.push('', 'Outside the source domain (shapes of the other colours; documented behaviour):', '', formatEditTable([e.outOfDomain, ...reportsByTask(e.outOfDomain, e.colours)]));
    if (e.outOfDomainSensitivity) parts.push('', formatSensitivity([e.outOfDomainSensitivity], e.colours.length));
    parts.push('', formatConfusion(taskConfusion(e.outOfDomain, e.colours)));
  }
  return parts.join('\n');
}

/**
 * A strip of one picture under every task, as a `[1, H·rows, W·(1 + tasks), 3]` picture in [0, 1] the caller owns:
 * row 1 the picture then the translator's outputs; with `ddsSteps > 0` row 2 its VAE round trip then per-image DDS's
 * (`editImage`, the model's defaults, seed 1234 as `evaluateEdits`).
 */
export async function toyTranslatorStrip(sd: StableDiffusion, translator: Translator, scene: Scene, colours: readonly ColourName[] = TOY_TRANSLATOR_TARGET_COLOURS, ddsSteps = 0): Promise<tf.Tensor4D> {
  const x = sceneInput(scene);
  const tiles: tf.Tensor4D[] = [];
  try {
    tiles.push(tf.tidy(() => tf.div(tf.add(x, 1), 2) as tf.Tensor4D));
    for (const c of colours) tiles.push(translator.translate(x, toyTaskPrompt(scene.caption, c)));
    if (ddsSteps > 0) {
      tiles.push(tf.tidy(() => sd.decodeLatents(sd.encodeImage(x)) as tf.Tensor4D));
      for (const c of colours) {
        const r = await editImage(sd, x, { source: scene.caption, target: toyTaskPrompt(scene.caption, c), method: 'dds', steps: ddsSteps, seed: 1234 });
        r.latent.dispose();
        tiles.push(r.image);
      }
    }
    const per = colours.length + 1;
    return tf.tidy(() => {
      const rows = [];
      for (let i = 0; i < tiles.length; i += per) rows.push(tf.concat(tiles.slice(i, i + per), 2));
      return tf.concat(rows, 1) as tf.Tensor4D;
    });
  } finally {
    x.dispose();
    tf.dispose(tiles);
  }
}

/** Help of `dds-weights eval-toy-translator`. */
export const EVAL_TOY_TRANSLATOR_HELP = `usage: dds-weights eval-toy-translator [<translator dir>] [options]

Measures a multi-task toy translator (default: the one shipped with @ddsjs/toy-shapes) on held-out pictures of its
source domain (red shapes), every picture under every task (→ ${TOY_TRANSLATOR_TARGET_COLOURS.join(', ')}): colour reached, shape kept,
background kept, per task, the task × colour-reached confusion and task sensitivity; against per-image DDS
editing (editImage, the model's defaults) on the same pairs; prints the tables.
  --model DIR      the teacher (default: the embedded toy model)
  --pictures N     held-out source pictures (default 12)    --seed N   their seed (default 4321; 999 = validation)
  --dds-steps N    DDS steps (default 200; 0 = translator only)   --dds-only   DDS only (no translator needed)
  --outside N      also translate N pictures of other colours under every task (default 0)
  --strip FILE     write a PNG of picture --strip-picture (default 0) under every task (with DDS when --dds-steps > 0)
  --json FILE      write every measured case as JSON                --backend B   tfjs backend (default wasm)`;

/** Runs `dds-weights eval-toy-translator`; prints the tables; returns the exit code. */
export async function runEvalToyTranslatorCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const cmd = 'eval-toy-translator';
  const { values: v, positionals } = parse(cmd, args, {
    model: { type: 'string' }, pictures: { type: 'string' }, seed: { type: 'string' }, 'dds-steps': { type: 'string' }, 'dds-only': { type: 'boolean' },
    outside: { type: 'string' }, strip: { type: 'string' }, 'strip-picture': { type: 'string' }, json: { type: 'string' },
    backend: { type: 'string' }, help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return out(EVAL_TOY_TRANSLATOR_HELP), 0;
  if (positionals.length > 1) throw new Error(`${cmd}: expected at most one translator folder, got ${positionals.length}`);
  const ddsOnly = Boolean(v['dds-only']);
  const dir = positionals[0] ?? defaultTranslatorDir();
  if (!dir && !ddsOnly) throw new Error(`${cmd}: no translator folder given and @ddsjs/toy-shapes ships none`);
  const pictures = numberFlag(cmd, v, 'pictures', 12, true, 1);
  const seed = numberFlag(cmd, v, 'seed', 4321, true, 0);
  const ddsSteps = numberFlag(cmd, v, 'dds-steps', 200, true, 0);
  const outside = numberFlag(cmd, v, 'outside', 0, true, 0);
  const stripPicture = numberFlag(cmd, v, 'strip-picture', 0, true, 0);
  if (stripPicture >= pictures) throw new Error(`${cmd}: --strip-picture must be below --pictures (${pictures}), got ${stripPicture}`);
  if (ddsOnly && ddsSteps === 0) throw new Error(`${cmd}: --dds-only needs --dds-steps > 0`);
  if (ddsOnly && v.strip) throw new Error(`${cmd}: --strip needs the translator (not --dds-only)`);
  const sd = await loadToyModel(cmd, v.model as string | undefined, v.backend);
  let translator: Translator | null = null;
  try {
    if (!ddsOnly) translator = await loadTranslator(dir!, sd);
    const e = await evaluateToyTranslator(sd, translator, {
      pictures,
      seed,
      ddsSteps,
      translator: !ddsOnly,
      outOfDomain: outside,
      onCase: (what, done, total) => process.stderr.write(`  ${what} ${done}/${total}\n`),
    });
    out(formatToyTranslatorEvaluation(e));
    if (v.json) fs.writeFileSync(v.json as string, JSON.stringify(e, null, 1) + '\n');
    if (v.strip && translator) {
      const strip = await toyTranslatorStrip(sd, translator, sourceDomainScenes(pictures, seed)[stripPicture], e.colours, ddsSteps);
      try {
        await writeImage(strip, v.strip as string, { overwrite: true });
      } finally {
        strip.dispose();
      }
      out(`wrote ${v.strip}`);
    }
  } finally {
    translator?.dispose();
    sd.dispose();
  }
  return 0;
}
