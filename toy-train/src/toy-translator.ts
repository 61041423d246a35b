// The translation network (issue 6) on the toy-shapes world: its tasks, training data from the world's generator
// (pictures of each task's source caption at random positions and sizes) and its evaluation (one forward pass against
// per-image DDS editing, on pictures not seen in training). The commands are in commands/toy-translator.ts.
import * as tf from '@tensorflow/tfjs';
import type { StableDiffusion } from '@ddsjs/sd';
import {
  type Translator,
  editImage,
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
  sceneInput,
  summariseEdits,
} from './toy-quality';

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

/** Defaults of `dds-toy train-translator`: the shipped translator's recipe (with seed 0). */
export const TOY_TRANSLATOR_RECIPE = { steps: 400, batch: 4, lr: 1e-3, pictures: 32, guidance: 2, warmup: 0, warmupFrom: 1 } as const;

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
