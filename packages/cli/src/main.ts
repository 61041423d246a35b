import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { inspect, resolveGenerateDefaults, writeImage } from '@ddsjs/sd';
import { imageStrip } from '@ddsjs/sd/internals';
import { editImage, EDIT_METHODS, EditMethod, resolveEditDefaults } from '@ddsjs/dds';
import { CliError, commandHelp, parseCommand, num, str, MAX_SEED } from './args';
import { Progress } from './progress';
import { exitCodeFor, userMessage } from './errors';
import { COMMANDS, EDIT, GENERATE, INSPECT, mainHelp } from './commands';
import { CliIO, checkOutput, defaultEditOut, defaultIO, imageSizeArgs, loadModelDisposing, prepareImage, preparePictureEarly, loadModel, resolveModel, startBackend, warnTruncated, withSuffix } from './shared';
import { runTrainTranslator, runTranslate } from './translator-commands';

/** The version of @ddsjs/cli (its package.json, one folder above dist/ and src/). */
const VERSION: string = (JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;

async function runEdit(argv: string[], io: CliIO): Promise<number> {
  const { values, help } = parseCommand(EDIT, argv);
  if (help) return io.out(commandHelp(EDIT)), 0;
  const image = str(values, 'image', true)!;
  if (!fs.existsSync(image)) throw new CliError(`image not found: ${image}`);
  const source = str(values, 'source') ?? '';
  const target = str(values, 'target', true)!;
  const method = str(values, 'method') ?? 'dds';
  if (!EDIT_METHODS.includes(method as EditMethod)) throw new CliError(`--method must be one of ${EDIT_METHODS.join(', ')}, got '${method}'`);
  const maskFile = str(values, 'mask');
  if (maskFile !== undefined && !fs.existsSync(maskFile)) throw new CliError(`mask not found: ${maskFile}`);
  const stepsArg = num(values, 'steps', { min: 1, integer: true });
  const lrArg = num(values, 'lr', { above: 0 });
  const guidanceArg = num(values, 'guidance', { min: 0 });
  const seed = num(values, 'seed', { integer: true, min: 0, max: MAX_SEED })!;
  const sizes = imageSizeArgs(values);
  const saveEvery = num(values, 'save-every', { min: 1, integer: true });
  const saveOnInterrupt = Boolean(values['save-on-interrupt']);
  const force = Boolean(values.force);
  const out = str(values, 'out') ?? defaultEditOut(image);
  const inputs = maskFile ? [image, maskFile] : [image];
  checkOutput(out, force, inputs);
  const stripOut = withSuffix(out, '-steps');
  if (saveEvery) checkOutput(stripOut, force, inputs);
  const model = resolveModel(values);

  await startBackend(values, io);
  let input = await preparePictureEarly(image, sizes, io);
  if (maskFile) {
    try {
      // decoded before the model loads, like the picture; prepared at the model's size below
      (await prepareImage(maskFile, { size: 8, minSize: 1 }, null)).dispose();
    } catch (e) {
      input?.dispose();
      throw e;
    }
  }
  const sd = await loadModelDisposing(model, io, input);
  let mask: tf.Tensor4D | undefined;
  const ctrl = new AbortController();
  let stoppedAt = 0;
  const onSigint = () => ctrl.abort();
  process.once('SIGINT', onSigint);
  const frames: tf.Tensor4D[] = [];
  let stripWritten = false;
  try {
    // Options not given: the model's own defaults (its ddsjs_defaults.json), else the library's.
    const settings = resolveEditDefaults(sd, { method: method as EditMethod, steps: stepsArg, lr: lrArg, guidanceScale: guidanceArg });
    const [steps, lr, guidance] = [settings.steps.value, settings.lr.value, settings.guidanceScale.value];
    const fromModel = ([['steps', settings.steps], ['lr', settings.lr], ['guidance', settings.guidanceScale]] as const)
      .filter(([, r]) => r.source === 'model')
      .map(([n]) => n);
    io.err(`${method}: ${steps} steps, lr ${lr}, guidance ${guidance}${fromModel.length ? ` (${fromModel.join(', ')} from ${sd.defaults.file})` : ''}`);
    warnTruncated(sd, [['--source', source], ['--target', target]], io);
    input ??= await prepareImage(image, { model: sd, fit: sizes.fit }, io);
    // White = edit: the mask picture in [0, 1], channel mean, cropped and resized as the picture (the scores
    // average it to the latents).
    if (maskFile) {
      const [h, w] = [input.shape[1], input.shape[2]];
      const m = await prepareImage(maskFile, { width: w, height: h, fit: sizes.fit, minSize: 1 }, null);
      mask = tf.tidy(() => tf.mean(tf.add(tf.mul(m, 0.5), 0.5), 3, true) as tf.Tensor4D);
      m.dispose();
    }
    // The strip starts with the input (before), then every saveEvery-th step, the last being the result (after);
    // it is rewritten at every frame, so that an interrupted run keeps the frames so far.
    if (saveEvery) frames.push(tf.tidy(() => tf.add(tf.mul(input!, 0.5), 0.5) as tf.Tensor4D));
    const writeStrip = async () => {
      const strip = imageStrip(frames);
      try {
        await writeImage(strip, stripOut, { overwrite: force || stripWritten });
        stripWritten = true;
      } finally {
        strip.dispose();
      }
    };
    const bar = new Progress(method, steps, (f) => `t ${f.t} | loss ${f.loss}`);
    const t0 = Date.now();
    let result;
    try {
      result = await editImage(sd, input, {
        source,
        target,
        method: method as EditMethod,
        mask,
        steps,
        lr,
        guidanceScale: guidance,
        seed,
        signal: ctrl.signal,
        onStep: async ({ step, steps: total, timestep, loss, latent }) => {
          stoppedAt = step + 1;
          bar.update(step + 1, { t: timestep, loss: Number.isFinite(loss) ? loss.toExponential(3) : String(loss) });
          if (saveEvery && ((step + 1) % saveEvery === 0 || step + 1 === total)) {
            frames.push(sd.decodeLatents(latent));
            await writeStrip();
          }
        },
      });
    } finally {
      bar.stop();
      input.dispose();
      input = null;
    }
    try {
      if (ctrl.signal.aborted) {
        const kept = saveEvery && stripWritten ? `; kept ${stripOut} (${frames.length} frames)` : '';
        if (saveOnInterrupt) await writeImage(result.image, out, { overwrite: force });
        const res = saveOnInterrupt ? `; wrote the edit so far to ${out}` : `; ${out} not written (--save-on-interrupt writes the edit so far)`;
        io.err(`dds: interrupted: ${method} edit stopped after step ${stoppedAt} of ${steps}${kept}${res}`);
        return 130;
      }
      await writeImage(result.image, out, { overwrite: force });
      io.err(`${method} edit: ${steps} steps in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      io.out(`wrote ${out}`);
      if (saveEvery) io.out(`wrote ${stripOut} (${frames.length} frames, every ${saveEvery} steps)`);
      return 0;
    } finally {
      result.image.dispose();
      result.latent.dispose();
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    input?.dispose();
    mask?.dispose();
    frames.forEach((f) => f.dispose());
    sd.dispose();
  }
}

async function runGenerate(argv: string[], io: CliIO): Promise<void> {
  const { values, positionals, help } = parseCommand(GENERATE, argv);
  if (help) return io.out(commandHelp(GENERATE));
  if (positionals.length !== 1) throw new CliError('generate takes exactly one prompt (quote it)');
  const prompt = positionals[0];
  const stepsArg = num(values, 'steps', { min: 1, max: 1000, integer: true });
  const guidanceArg = num(values, 'guidance', { min: 0 });
  const seed = num(values, 'seed', { integer: true, min: 0, max: MAX_SEED })!;
  const count = num(values, 'num-images', { integer: true, min: 1, max: 1000 })!;
  if (seed + count - 1 > MAX_SEED) throw new CliError(`--seed + --num-images − 1 must be ≤ ${MAX_SEED}, got ${seed + count - 1}`);
  const height = num(values, 'height', { min: 8, integer: true });
  const width = num(values, 'width', { min: 8, integer: true });
  for (const [n, v] of [['height', height], ['width', width]] as const) {
    if (v !== undefined && v % 8 !== 0) throw new CliError(`--${n} must be a multiple of 8, got ${v}`);
  }
  const out = str(values, 'out')!;
  const force = Boolean(values.force);
  const outs = count === 1 ? [out] : Array.from({ length: count }, (_, i) => withSuffix(out, `-${i + 1}`));
  for (const o of outs) checkOutput(o, force);
  const model = resolveModel(values);
  await startBackend(values, io);
  const sd = await loadModel(model, io);
  try {
    // Without --steps / --guidance: the model's own defaults (its ddsjs_defaults.json: the embedded toy model's
    // guidance 3 was chosen on a validation set, 7.5 overshoots its colours), else diffusers' 50 and 7.5.
    const resolved = resolveGenerateDefaults(sd.defaults, { steps: stepsArg, guidanceScale: guidanceArg });
    const [steps, guidance] = [resolved.steps.value, resolved.guidanceScale.value];
    const negative = str(values, 'negative') ?? '';
    io.err(`guidance: ${guidance}`);
    io.err(`seed: ${count === 1 ? seed : `${seed}…${seed + count - 1}`}`);
    warnTruncated(sd, [['the prompt', prompt], ['--negative', negative]], io);
    for (let i = 0; i < count; i++) {
      const bar = new Progress(count === 1 ? 'ddim' : `ddim #${i + 1}`, steps, (f) => `t ${f.t}`);
      const t0 = Date.now();
      let image: tf.Tensor4D;
      try {
        const r = await sd.generate(prompt, {
          steps,
          guidanceScale: guidance,
          negativePrompt: negative,
          seed: seed + i,
          height,
          width,
          onStep: ({ step, timestep }) => bar.update(step + 1, { t: timestep }),
        });
        r.latents.dispose();
        image = r.image;
      } finally {
        bar.stop();
      }
      try {
        await writeImage(image, outs[i], { overwrite: force });
      } finally {
        image.dispose();
      }
      io.err(`generated in ${((Date.now() - t0) / 1000).toFixed(1)}s`);
      io.out(`wrote ${outs[i]} (seed ${seed + i})`);
    }
  } finally {
    sd.dispose();
  }
}

async function runInspect(argv: string[], io: CliIO): Promise<void> {
  const { values, help } = parseCommand(INSPECT, argv);
  if (help) return io.out(commandHelp(INSPECT));
  const { path: modelPath, variant } = resolveModel(values);
  const text = await inspect(modelPath, { variant, all: Boolean(values.all) });
  io.out(text);
}

/**
 * Runs the `dds` command line. Returns the exit code: 0 on success, 2 on a usage or input error (a `CliError`, or a
 * library `DdsError` whose code names the user's input: see errors.ts; printed as one line, no stack trace; set
 * DDSJS_DEBUG=1 for the stack), 1 on an unexpected failure.
 */
export async function main(argv: string[], io: CliIO = defaultIO): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
      io.out(mainHelp());
      return cmd ? 0 : 2;
    }
    if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
      io.out(`dds ${VERSION}`);
      return 0;
    }
    if (cmd === 'edit') return await runEdit(rest, io);
    else if (cmd === 'generate') await runGenerate(rest, io);
    else if (cmd === 'inspect') await runInspect(rest, io);
    else if (cmd === 'train-translator') await runTrainTranslator(rest, io);
    else if (cmd === 'translate') await runTranslate(rest, io);
    else throw new CliError(`unknown command '${cmd}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    return 0;
  } catch (e) {
    if (process.env.DDSJS_DEBUG) io.err((e as Error)?.stack ?? String(e));
    io.err(`dds: error: ${userMessage(e)}`);
    return exitCodeFor(e);
  }
}
