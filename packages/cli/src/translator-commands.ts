// The translator commands: `dds train-translator` and `dds translate`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeImage } from '@ddsjs/sd';
import { listTranslatorImages, loadTranslator, readTranslatorMeta, trainTranslator, Translator, TRANSLATOR_FILES } from '@ddsjs/dds';
import { defaultModel, defaultTranslatorDir } from '@ddsjs/toy-shapes';
import { CliError, commandHelp, parseCommand, num, str, MAX_SEED } from './args';
import { Progress } from './progress';
import { TRAIN_TRANSLATOR, TRANSLATE } from './commands';
import { checkOutput, CliIO, imageSizeArgs, loadModel, loadModelDisposing, prepareImage, preparePictureEarly, resolveModel, startBackend, warnTruncated } from './shared';

/** `dds train-translator`: trains (or resumes) a translation network and writes its folder. */
export async function runTrainTranslator(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(TRAIN_TRANSLATOR, argv);
  if (help) return io.out(commandHelp(TRAIN_TRANSLATOR));
  const source = str(values, 'source', true)!;
  const targets = values.target as string[] | undefined;
  if (!targets || targets.length === 0) throw new CliError('missing --target (give one per task)');
  if (targets.some((t) => t.trim() === '')) throw new CliError('--target must not be empty');
  const images = str(values, 'images');
  const generate = num(values, 'generate', { min: 1, integer: true });
  if ((images === undefined) === (generate === undefined)) throw new CliError('give exactly one of --images DIR or --generate N');
  if (images !== undefined && (!fs.existsSync(images) || !fs.statSync(images).isDirectory())) throw new CliError(`image folder not found: ${images}`);
  const steps = num(values, 'steps', { min: 0, integer: true })!;
  const batchSize = num(values, 'batch', { min: 1, integer: true })!;
  const lr = num(values, 'lr', { above: 0 })!;
  const guidanceScale = num(values, 'guidance', { min: 0 })!;
  const seed = num(values, 'seed', { integer: true, min: 0, max: MAX_SEED })!;
  const size = num(values, 'size', { min: 8, integer: true });
  if (size !== undefined && size % 8 !== 0) throw new CliError(`--size must be a multiple of 8, got ${size}`);
  const cycleWeight = num(values, 'cycle', { min: 0 })!;
  const identityWeight = num(values, 'identity', { min: 0 })!;
  const genSteps = num(values, 'gen-steps', { min: 1, max: 1000, integer: true })!;
  const checkpointEvery = num(values, 'checkpoint-every', { min: 0, integer: true })!;
  const out = str(values, 'out')!;
  const force = Boolean(values.force);
  const cacheDir = str(values, 'cache') ?? path.join(out, 'data-cache');
  checkOutput(out, force, images !== undefined ? [images] : [], 'folder');
  if (str(values, 'cache') !== undefined) checkOutput(cacheDir, force, images !== undefined ? [images] : [], 'folder');
  let resumeFrom: string | undefined;
  if (fs.existsSync(path.join(out, TRANSLATOR_FILES.meta)) && !force) {
    if (!fs.existsSync(path.join(out, TRANSLATOR_FILES.optimizer))) {
      throw new CliError(`${out} holds a translator without training state; pass --force to replace it`);
    }
    resumeFrom = out;
  }

  const model = resolveModel(values);
  await startBackend(values, io);
  // Every training picture is decoded (and checked for size) before the model loads.
  if (images !== undefined) {
    for (const f of listTranslatorImages(images)) (await prepareImage(path.join(images, f), { size: size ?? 64 }, null)).dispose();
  }
  const sd = await loadModel(model, io);
  let translator: Translator | null = null;
  const ctrl = new AbortController();
  const onSigint = () => {
    io.err('interrupted: stopping after this step (a checkpoint will be written)');
    ctrl.abort();
  };
  process.once('SIGINT', onSigint);
  try {
    warnTruncated(sd, [['--source', source], ...targets.map((t): [string, string] => ['--target', t])], io);
    if (resumeFrom) io.err(`resuming ${out} from step ${readTranslatorMeta(out).training?.step ?? 0}`);
    let dataBar: Progress | null = null;
    let trainBar: Progress | null = null;
    const t0 = Date.now();
    try {
      translator = await trainTranslator(sd, {
        tasks: targets.map((target) => ({ source, target })),
        data: images !== undefined ? { images, prompt: source, size } : { generate: generate!, prompt: source, size, steps: genSteps, cacheDir },
        steps,
        batchSize,
        lr,
        guidanceScale,
        seed,
        cycleWeight,
        identityWeight,
        checkpointDir: out,
        checkpointEvery,
        resumeFrom,
        overwrite: force,
        signal: ctrl.signal,
        onData: ({ kind, done, total }) => {
          dataBar ??= new Progress(kind === 'images' ? 'encoding' : kind === 'generate' ? 'generating' : 'cached', total);
          dataBar.update(done);
          if (done === total) {
            dataBar.stop();
            dataBar = null;
          }
        },
        onStep: ({ step, loss, task, checkpointed }) => {
          trainBar ??= new Progress('train', steps, (f) => `loss ${f.loss} | task ${f.task}${f.ckpt ? ' | checkpoint' : ''}`);
          trainBar.update(step + 1, { loss: loss.toExponential(3), task, ckpt: checkpointed ? 1 : 0 });
        },
      });
    } finally {
      (dataBar as Progress | null)?.stop();
      (trainBar as Progress | null)?.stop();
    }
    const done = translator.stepsDone;
    io.err(`trained ${done} steps in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    if (ctrl.signal.aborted) io.err(`stopped at step ${done} of ${steps}; run the same command again to resume`);
    io.out(`wrote ${out} (${done} steps)`);
  } finally {
    process.removeListener('SIGINT', onSigint);
    translator?.dispose();
    sd.dispose();
  }
}

function defaultTranslateOut(image: string): string {
  const ext = path.extname(image);
  return `${path.basename(image, ext)}-translated.png`;
}

/** `dds translate`: edits a picture in one forward pass of a trained translator. */
export async function runTranslate(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(TRANSLATE, argv);
  if (help) return io.out(commandHelp(TRANSLATE));
  const dir = str(values, 'translator') ?? defaultTranslatorDir();
  if (!dir) throw new CliError('missing --translator (and @ddsjs/toy-shapes ships no default translator)');
  const image = str(values, 'image', true)!;
  const task = str(values, 'task', true)!;
  if (!fs.existsSync(path.join(dir, TRANSLATOR_FILES.meta))) throw new CliError(`not a translator folder (no ${TRANSLATOR_FILES.meta}): ${dir}`);
  if (!fs.existsSync(image)) throw new CliError(`image not found: ${image}`);
  const sizes = imageSizeArgs(values);
  const force = Boolean(values.force);
  const out = str(values, 'out') ?? defaultTranslateOut(image);
  checkOutput(out, force, [image]);
  let meta;
  try {
    meta = readTranslatorMeta(dir);
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  if (!meta.prompts.includes(task)) {
    throw new CliError(`unknown task ${JSON.stringify(task)}; ${dir} was trained for ${meta.tasks.map((t) => JSON.stringify(t.target)).join(', ')}`);
  }
  if (!sizes.given) {
    // The training size (latent shape × 8), else 512.
    const shape = meta.training?.data.shape;
    sizes.size = shape && shape[0] === shape[1] ? shape[0] * 8 : 512;
    sizes.given = true;
  }
  // The teacher's VAE encodes and decodes: --model, else the model the translator was trained with, else the default.
  const modelValues = { ...values };
  const recorded = meta.teacher?.source;
  if (str(values, 'model') === undefined && recorded && fs.existsSync(recorded) && path.resolve(recorded) !== path.resolve(defaultModel()?.dir ?? '')) {
    modelValues.model = recorded;
  }
  const model = resolveModel(modelValues);
  await startBackend(values, io);
  let input = await preparePictureEarly(image, sizes, io);
  const sd = await loadModelDisposing(model, io, input);
  let translator: Translator | null = null;
  try {
    translator = await loadTranslator(dir, sd);
    input ??= await prepareImage(image, { model: sd, fit: sizes.fit }, io);
    const t0 = Date.now();
    let result;
    try {
      result = translator.translateImage(input, task);
    } finally {
      input.dispose();
      input = null;
    }
    try {
      await writeImage(result.image, out, { overwrite: force });
    } finally {
      result.image.dispose();
      result.latent.dispose();
    }
    // The task applied, as the network saw it (issue 26: a task with no effect went unnoticed).
    const applied = meta.tasks.filter((t) => t.target === task);
    io.err(`task: ${applied.length ? applied.map((t) => `${JSON.stringify(t.source)} → ${JSON.stringify(t.target)}`).join(', ') : `${JSON.stringify(task)} (a source prompt: the picture's own domain)`}`);
    io.err(`translated in ${((Date.now() - t0) / 1000).toFixed(2)}s`);
    io.out(`wrote ${out}`);
  } finally {
    input?.dispose();
    translator?.dispose();
    sd.dispose();
  }
}
