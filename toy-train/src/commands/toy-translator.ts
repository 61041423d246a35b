// `dds-toy train-translator` and `dds-toy eval-translator`: flags, help text and printing around the
// toy translator's library functions.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type CommandSpec, commandHelp, parseCommand } from '@ddsjs/cli/args';
import * as tf from '@tensorflow/tfjs';
import { writeImage } from '@ddsjs/sd';
import { type Translator, TRANSLATOR_FILES, loadTranslator, trainTranslator } from '@ddsjs/dds';
import type { TranslatorLatentData } from '@ddsjs/dds/internals';
import { defaultTranslatorDir } from '@ddsjs/toy-shapes';
import { abortOnInterrupt } from '@ddsjs/train';
import { shipTranslatorFp16 } from '@ddsjs/weights-tools';
import { loadToyModel } from '../toy-quality';
import {
  TOY_TRANSLATOR_RECIPE,
  TOY_TRANSLATOR_SOURCE_CAPTIONS,
  TOY_TRANSLATOR_TARGET_COLOURS,
  TOY_TRANSLATOR_TASKS,
  evaluateToyTranslator,
  formatToyTranslatorEvaluation,
  sourceDomainScenes,
  toyTranslatorData,
  toyTranslatorStrip,
} from '../toy-translator';

/** `dds-toy train-translator`: its options and help (see @ddsjs/cli/args). */
export const TRAIN_TOY_TRANSLATOR_COMMAND: CommandSpec = {
  name: 'train-translator',
  program: 'dds-toy',
  positionals: true,
  usage: 'dds-toy train-translator [<model dir>] --out DIR [options]',
  summary: `Trains the multi-task translation network (@ddsjs/dds trainTranslator) on the toy-shapes world: one source domain
(a red circle, square or triangle on a white, black, gray or pink background, positions and sizes varied) and four
tasks on the same pictures (→ ${TOY_TRANSLATOR_TARGET_COLOURS.join(', ')}), from generator pictures (not from the model),
with DDS as the only signal. Default model: the embedded one. The defaults are the shipped translator's recipe.
Rerunning the same command resumes from the checkpoint in --out.`,
  options: {
    out: { type: 'string', arg: 'DIR', help: 'translator folder (checkpoints; resumed when present) (required)' },
    steps: { type: 'string', arg: 'N', help: `total steps (default ${TOY_TRANSLATOR_RECIPE.steps})` },
    batch: { type: 'string', arg: 'N', help: `latents per step (default ${TOY_TRANSLATOR_RECIPE.batch})` },
    lr: { type: 'string', arg: 'X', help: `Adam lr (default ${TOY_TRANSLATOR_RECIPE.lr})` },
    pictures: { type: 'string', arg: 'N', help: `pictures per source caption (default ${TOY_TRANSLATOR_RECIPE.pictures})` },
    seed: { type: 'string', arg: 'N', help: 'seed of pictures, init, tasks, noise (default 0)' },
    guidance: { type: 'string', arg: 'X', help: `classifier-free guidance of the DDS teacher (default ${TOY_TRANSLATOR_RECIPE.guidance}; the paper's is 7.5)` },
    warmup: { type: 'string', arg: 'N', help: `guidance warm-up: rise linearly from --warmup-from to --guidance over N steps (default ${TOY_TRANSLATOR_RECIPE.warmup}: off)` },
    'warmup-from': { type: 'string', arg: 'X', help: `(default ${TOY_TRANSLATOR_RECIPE.warmupFrom})` },
    cycle: { type: 'string', arg: 'W', help: 'cycle-consistency weight (default 0)' },
    identity: { type: 'string', arg: 'W', help: 'identity weight (default 0)' },
    'checkpoint-every': { type: 'string', arg: 'N', help: '(default 50)' },
    'time-budget': { type: 'string', arg: 'S', help: 'stop cleanly after S seconds (or Ctrl-C)' },
    ship: { type: 'string', arg: 'DIR', help: 'after training, also write the translator to DIR (replaced) for shipping: float16 weights, no optimiser state (the shipped one: --ship packages/toy-shapes/translator)' },
    force: { type: 'boolean', help: 'start over' },
    backend: { type: 'string', arg: 'B', help: 'tfjs backend (default wasm)' },
  },
};

function numberFlag(cmd: string, values: Record<string, unknown>, name: string, d: number, integer: boolean, min: number): number {
  const s = values[name] as string | undefined;
  if (s === undefined) return d;
  const n = Number(s);
  if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
    throw new Error(`${cmd}: --${name} must be ${integer ? 'an integer' : 'a number'} ≥ ${min}, got '${s}'`);
  }
  return n;
}

/** Runs `dds-toy train-translator` (arguments after the command name); returns the exit code. */
export async function runTrainToyTranslatorCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const cmd = 'train-translator';
  const { values: v, positionals, help } = parseCommand(TRAIN_TOY_TRANSLATOR_COMMAND, args);
  if (help) return out(commandHelp(TRAIN_TOY_TRANSLATOR_COMMAND)), 0;
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

/** `dds-toy eval-translator`: its options and help (see @ddsjs/cli/args). */
export const EVAL_TOY_TRANSLATOR_COMMAND: CommandSpec = {
  name: 'eval-translator',
  program: 'dds-toy',
  positionals: true,
  usage: 'dds-toy eval-translator [<translator dir>] [options]',
  summary: `Measures a multi-task toy translator (default: the one shipped with @ddsjs/toy-shapes) on held-out pictures of its
source domain (red shapes), every picture under every task (→ ${TOY_TRANSLATOR_TARGET_COLOURS.join(', ')}): colour reached, shape kept,
background kept, per task, the task × colour-reached confusion and task sensitivity; against per-image DDS
editing (editImage, the model's defaults) on the same pairs; prints the tables.`,
  options: {
    model: { type: 'string', arg: 'DIR', help: 'the teacher (default: the embedded toy model)' },
    pictures: { type: 'string', arg: 'N', help: 'held-out source pictures (default 12)' },
    seed: { type: 'string', arg: 'N', help: 'their seed (default 4321; 999 = validation)' },
    'dds-steps': { type: 'string', arg: 'N', help: 'DDS steps (default 200; 0 = translator only)' },
    'dds-only': { type: 'boolean', help: 'DDS only (no translator needed)' },
    outside: { type: 'string', arg: 'N', help: 'also translate N pictures of other colours under every task (default 0)' },
    strip: { type: 'string', arg: 'FILE', help: 'write a PNG of picture --strip-picture under every task (with DDS when --dds-steps > 0)' },
    'strip-picture': { type: 'string', arg: 'N', help: 'the picture of --strip (default 0)' },
    json: { type: 'string', arg: 'FILE', help: 'write every measured case as JSON' },
    backend: { type: 'string', arg: 'B', help: 'tfjs backend (default wasm)' },
  },
};

/** Runs `dds-toy eval-translator`; prints the tables; returns the exit code. */
export async function runEvalToyTranslatorCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const cmd = 'eval-translator';
  const { values: v, positionals, help } = parseCommand(EVAL_TOY_TRANSLATOR_COMMAND, args);
  if (help) return out(commandHelp(EVAL_TOY_TRANSLATOR_COMMAND)), 0;
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
