// `dds-toy train`: trains the embedded toy model of @ddsjs/toy-shapes — a latent diffusion model with
// exactly the Stable Diffusion structure (CLIP tokenizer + CLIP text model, AutoencoderKL, UNet2DConditionModel
// with cross-attention) — on the synthetic shapes world, with @ddsjs code on tfjs. Two sequential phases:
//   1. the VAE (reconstruction MSE + a small KL term), then the latent scaling factor = 1 / std(latents);
//   2. the UNet (epsilon prediction, SD's scaled_linear betas, 10% caption dropout for classifier-free guidance),
//      the VAE frozen.
// The text encoder is a CLIP text model frozen at its seeded random initialisation: the world has 60 training
// captions, so their embeddings are computed once into a table and each step gathers rows (no text forward or
// backward per step); the UNet's cross-attention learns to read those random but distinct features.
// Every checkpoint is a complete diffusers folder (loadable by loadStableDiffusion) plus `train/` (state, Adam
// moments, loss log), so a run resumes exactly where its last checkpoint left off.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type { Module } from '@ddsjs/nn';
import {
  AutoencoderKL,
  CLIPTextModel,
  CLIPTokenizer,
  UNet2DConditionModel,
} from '@ddsjs/sd';
import { makeNoiseSchedule, parseCLIPTextConfig, parseSchedulerConfig, parseUNetConfig, parseVaeConfig } from '@ddsjs/sd/internals';
import { captions } from '@ddsjs/toy-shapes';
import { Adam, LossLog, TrainingRun, clipScale, configHash, gradNorm, nonNegativeInt, writeJsonAtomic } from '@ddsjs/train';
import { prepareOutdir, writeConfigs, writeTokenizer } from '@ddsjs/weights-tools';
import { FILES, fp16Name, loadComponent, readInitConfigs, writeComponent } from './toy/component-io';
import { type LatentPool, encodePool, makeBatch, mix, unetDraws } from './toy/data';
import { unetInputs, unetLoss, vaeLoss } from './toy/losses';
import { type TrainState, type TrainToyOptions, type TrainToyResult, checkResumeTrajectory, phaseTrajectories, resolveToyOptions } from './toy/options';
import { type ToyPreset, toyConfigs } from './toy/presets';

/**
 * Trains the toy model into `options.outdir` (a diffusers folder): the VAE, then the UNet, with the text encoder
 * frozen at its seeded initialisation (see the file header). Resumes from `<outdir>/train/` when it exists (the
 * saved configs, seed, weights and Adam moments are used; data and noise are functions of (seed, phase, step),
 * so a resumed run sees the same batches an uninterrupted one would). Appends one JSON line per step to
 * `<outdir>/train/loss.jsonl`. Works on any tfjs backend (wasm and cpu included).
 * @returns what was done; throws an Error naming the option at fault on bad options, or when `outdir` is a
 *   non-empty folder without training state (unless `force`).
 */
export async function trainToy(options: TrainToyOptions): Promise<TrainToyResult> {
  const t0 = Date.now();
  const outdir = path.resolve(options.outdir);
  const trainDir = path.join(outdir, 'train');
  const stateFile = path.join(trainDir, 'state.json');
  const log = options.log ?? (() => undefined);
  // ---- saved state (read only; nothing is written before the options are validated)
  const resuming = (options.resume ?? true) && !options.force && fs.existsSync(stateFile);
  let saved: TrainState | null = null;
  if (resuming) {
    try {
      saved = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as TrainState;
    } catch (e) {
      throw new Error(`${stateFile}: cannot read the training state: ${(e as Error).message}`);
    }
    if (saved.version !== 1) throw new Error(`${stateFile}: unknown state version ${saved.version}`);
    if (options.seed !== undefined && options.seed !== saved.seed) {
      throw new Error(`train-toy: ${outdir} was trained with seed ${saved.seed}, not ${options.seed} (pass --force to start afresh)`);
    }
  }
  const preset: ToyPreset = saved?.preset ?? options.preset ?? 'toy';
  const o = resolveToyOptions(options, preset);

  // ---- state: fresh or resumed
  let state: TrainState;
  if (saved) {
    state = saved;
    log(`resuming ${outdir}: VAE step ${state.vaeStep}, UNet step ${state.unetStep}`);
  } else {
    const seed = options.seed ?? 0;
    nonNegativeInt('train-toy', 'seed', seed);
    prepareOutdir(outdir, options.force);
    // A forced fresh start must not inherit an older run's log, optimizer moments or state.
    for (const f of ['loss.jsonl', 'adam-vae.safetensors', 'adam-unet.safetensors', 'state.json']) fs.rmSync(path.join(trainDir, f), { force: true });
    state = { version: 1, seed, preset, configs: toyConfigs(preset), vaeStep: 0, unetStep: 0, scalingFactor: null, seconds: 0 };
    if (options.initFrom !== undefined) {
      const from = path.resolve(options.initFrom);
      state.configs = readInitConfigs(from);
      state.initFrom = from;
      const sf = state.configs.vae.scaling_factor;
      if (typeof sf !== 'number' || !(sf > 0)) throw new Error(`train-toy: ${from}/vae/config.json has no positive scaling_factor`);
      state.scalingFactor = sf;
      state.scalingFactorStep = 0;
    }
  }
  const seed = state.seed;
  const raw = state.configs;
  const vaeCfg = parseVaeConfig(raw.vae, 'vae config');
  const unetCfg = parseUNetConfig(raw.unet, 'unet config');
  const textCfg = parseCLIPTextConfig(raw.textEncoder, 'text_encoder config');
  const schedCfg = parseSchedulerConfig(raw.scheduler, 'scheduler config');
  const size = raw.vae.sample_size as number;
  if (o.unetSteps > 0 && state.unetStep === 0 && state.vaeStep > o.vaeSteps) {
    log(`note: the VAE already has ${state.vaeStep} steps (more than vaeSteps ${o.vaeSteps})`);
  }
  if (o.vaeLatentMaskWeight > 0 && vaeCfg.latentChannels < 4) {
    throw new Error(`train-toy: vaeLatentMaskWeight needs ≥ 4 latent channels, the VAE has ${vaeCfg.latentChannels}`);
  }
  if (state.unetStep > 0 && o.vaeSteps > state.vaeStep) {
    throw new Error(`train-toy: UNet training has started (step ${state.unetStep}); the VAE cannot be trained further (vaeSteps ${o.vaeSteps} > ${state.vaeStep})`);
  }

  // ---- a resume continues a phase only with the options that shaped it
  const phaseTrajectory = phaseTrajectories(o, seed);
  checkResumeTrajectory(state, o, phaseTrajectory, outdir);

  // ---- modules
  const vae = new AutoencoderKL(vaeCfg);
  const unet = new UNet2DConditionModel(unetCfg);
  const text = new CLIPTextModel(textCfg);
  if (resuming) {
    await loadComponent(path.join(outdir, FILES.vae), vae);
    await loadComponent(path.join(outdir, FILES.unet), unet);
    await loadComponent(path.join(outdir, FILES.textEncoder), text);
  } else if (state.initFrom !== undefined) {
    const from = state.initFrom;
    for (const [k, m] of [['vae', vae], ['unet', unet], ['textEncoder', text]] as const) {
      const f32 = path.join(from, FILES[k]);
      await loadComponent(fs.existsSync(f32) ? f32 : path.join(from, fp16Name(FILES[k])), m);
    }
    writeTokenizer(outdir, '<|endoftext|>', path.join(from, 'tokenizer'));
    log(`initialised from ${from} (VAE scaling_factor ${state.scalingFactor})`);
  } else {
    vae.initialize(mix(seed, 1));
    if (o.vaeLogvarInit !== 0) {
      // encoder.conv_out outputs [mean (latent channels), logvar (latent channels)]: start with a small posterior std.
      const [name, bias] = vae.namedParameters().find(([n]) => n === 'encoder.conv_out.bias') ?? [];
      if (!name || !bias) throw new Error('train-toy: VAE has no encoder.conv_out.bias');
      const lc = bias.shape[0] / 2;
      const init = tf.tidy(() => tf.concat([tf.slice(bias.value, [0], [lc]), tf.fill([lc], o.vaeLogvarInit)]));
      bias.set(init);
      init.dispose();
    }
    unet.initialize(mix(seed, 2));
    text.initialize(mix(seed, 3));
    writeTokenizer(outdir, '<|endoftext|>');
  }
  text.setTrainable(false);
  fs.mkdirSync(trainDir, { recursive: true });
  const tokenizer = await CLIPTokenizer.fromPretrained(path.join(outdir, 'tokenizer'));

  // ---- text table: every training caption plus "" (the unconditional caption)
  const texts = [...captions('train'), ''];
  const table = new Map(texts.map((c, i) => [c, i] as [string, number]));
  const emptyIndex = texts.length - 1;
  const ctxTable = tf.tidy(() => text.forward(tokenizer.encode(texts)));

  const schedule = makeNoiseSchedule(schedCfg, vaeCfg.scalingFactor);
  const lossLog = new LossLog(path.join(trainDir, 'loss.jsonl'));
  const result: TrainToyResult = {
    outdir, vaeSteps: state.vaeStep, unetSteps: state.unetStep, done: false, seconds: 0,
    vaeSecondsPerStep: NaN, unetSecondsPerStep: NaN, vaeLosses: [], unetLosses: [], scalingFactor: state.scalingFactor ?? vaeCfg.scalingFactor,
  };

  const writeFolder = async (fp16: boolean) => {
    const cfgs = structuredClone(raw);
    if (state.scalingFactor !== null) cfgs.vae.scaling_factor = state.scalingFactor;
    writeConfigs(outdir, cfgs);
    for (const [k, m] of [['unet', unet], ['vae', vae], ['textEncoder', text]] as const) {
      await writeComponent(path.join(outdir, FILES[k]), m, false);
      if (fp16) await writeComponent(path.join(outdir, fp16Name(FILES[k])), m, true);
    }
  };
  const checkpoint = async (adam: Adam | null, phase: 'vae' | 'unet') => {
    state.seconds += (Date.now() - lastSave) / 1000;
    lastSave = Date.now();
    await writeFolder(false);
    if (options.keepCheckpoints) {
      const dir = path.join(trainDir, 'checkpoints');
      fs.mkdirSync(dir, { recursive: true });
      const step = phase === 'vae' ? state.vaeStep : state.unetStep;
      fs.copyFileSync(path.join(outdir, FILES[phase]), path.join(dir, `${phase}-${step}.safetensors`));
    }
    if (adam) await adam.save(path.join(trainDir, `adam-${phase}.safetensors`));
    writeJsonAtomic(stateFile, state);
    log(`checkpoint: VAE step ${state.vaeStep}, UNet step ${state.unetStep} → ${outdir}`);
  };
  let lastSave = Date.now();

  /** Runs one phase on the training-run loop; returns false when stopped by the time budget or the signal. */
  const runPhase = async (
    phase: 'vae' | 'unet',
    module: Module,
    total: number,
    stepFn: (step: number) => { loss: tf.Scalar; grads: tf.NamedTensorMap },
    lrAt: (step: number) => number,
  ): Promise<boolean> => {
    const done = () => (phase === 'vae' ? state.vaeStep : state.unetStep);
    if (done() >= total) return true;
    const trajectory = phaseTrajectory[phase];
    state.trajectory = { ...state.trajectory, [phase]: { hash: configHash(trajectory), config: trajectory } };
    const params = module.namedParameters().filter(([, p]) => p.isTrainable);
    const adam = new Adam(params);
    const adamFile = path.join(trainDir, `adam-${phase}.safetensors`);
    try {
      if (done() > 0 && fs.existsSync(adamFile)) await adam.load(adamFile);
      const run = new TrainingRun({
        name: 'train-toy',
        start: done(),
        total,
        checkpointEvery: o.checkpointEvery,
        checkpoint: async (n) => {
          await checkpoint(adam, phase);
          return { dir: outdir, step: n };
        },
        lastCheckpoint: done() > 0 ? { dir: outdir, step: done() } : null,
        timeBudgetSeconds: o.timeBudgetSeconds,
        startedAt: t0,
        signal: options.signal,
        lossLog,
        logFields: { phase },
        labels: { loss: `${phase} loss` },
        updates: phase === 'vae' ? 'the VAE' : 'the UNet',
        advice: 'it is a loadable model; to train on, start afresh (--force) with a lower learning rate',
        onStep: (p) => {
          (phase === 'vae' ? result.vaeLosses : result.unetLosses).push(p.values.loss as number);
          if (phase === 'vae') result.vaeSecondsPerStep = p.secondsPerStep;
          else result.unetSecondsPerStep = p.secondsPerStep;
          options.onProgress?.({ phase, step: p.done, total, loss: p.values.loss as number, secondsPerStep: p.secondsPerStep, etaSeconds: p.etaSeconds });
        },
      });
      const r = await run.run(async (step) => {
        const { loss, grads } = stepFn(step);
        const dispose = () => tf.dispose([loss, ...Object.values(grads)]);
        try {
          const lossValue = (await loss.data())[0];
          return {
            values: { loss: lossValue },
            apply: async () => {
              const norm = await gradNorm(params.map(([, p]) => grads[p.value.name]));
              const lr = lrAt(step);
              adam.apply(new Map(params.map(([n, p]) => [n, grads[p.value.name]] as [string, tf.Tensor])), lr, clipScale(norm, o.gradClip));
              if (phase === 'vae') state.vaeStep++;
              else state.unetStep++;
              return { gradNorm: norm, lr };
            },
            dispose,
          };
        } catch (e) {
          dispose();
          throw e;
        }
      });
      return r.stop === 'done';
    } finally {
      adam.dispose();
    }
  };

  try {
    // ---- phase 1: VAE
    vae.setTrainable(true);
    if (o.vaeFreezeEncoder) {
      // Decoder-only fine-tuning keeps the latents (and so a UNet trained on them) valid.
      for (const [n, p] of vae.namedParameters()) if (n.startsWith('encoder.') || n.startsWith('quant_conv.')) p.setTrainable(false);
    }
    const vaeOk = await runPhase('vae', vae, o.vaeSteps, (step) => {
      const b = makeBatch(seed, 'vae', o.fixedBatch ? 0 : step, o.vaeBatch, size, table, 0, emptyIndex);
      const x = tf.tensor4d(b.pixels, [o.vaeBatch, size, size, 3]);
      const masks = tf.tensor4d(b.masks, [o.vaeBatch, size, size, 1]);
      const r = tf.variableGrads(() => vaeLoss(vae, x, masks, b.noiseSeed, o), vae.trainableVariables());
      tf.dispose([x, masks]);
      return { loss: r.value, grads: r.grads };
    }, () => o.vaeLr);
    result.vaeSteps = state.vaeStep;
    if (!vaeOk) return finish(false);
    vae.setTrainable(false);

    // ---- scaling factor: 1 / std of the latent means over 64 training pictures (as SD's 0.18215 was chosen)
    // A fine-tune of a folder's decoder keeps that folder's factor (its encoder, and so its latents, are unchanged).
    const keepInitFactor = state.initFrom !== undefined && o.vaeFreezeEncoder && state.scalingFactorStep === 0;
    if (state.scalingFactor === null || (state.scalingFactorStep !== state.vaeStep && !keepInitFactor)) {
      const n = 64;
      const b = makeBatch(seed, 'vae', 1_000_000, n, size, table, 0, emptyIndex);
      const stdT = tf.tidy(() => {
        const x = tf.tensor4d(b.pixels, [n, size, size, 3]);
        const { mean, std, logvar } = vae.encode(x);
        tf.dispose([std, logvar]);
        return tf.moments(mean).variance.sqrt();
      });
      const sd = (await stdT.data())[0];
      stdT.dispose();
      state.scalingFactor = Number((1 / Math.max(sd, 1e-6)).toPrecision(5));
      state.scalingFactorStep = state.vaeStep;
      log(`VAE latent std ${sd.toFixed(4)} → scaling_factor ${state.scalingFactor}`);
      await checkpoint(null, 'vae');
    }
    const sf = state.scalingFactor;
    result.scalingFactor = sf;

    // ---- phase 2: UNet, on a pool of pictures encoded once by the frozen VAE (rendering and encoding every
    // batch would cost ~20% of each step); each step draws its batch from the pool and samples z ~ N(mean, std).
    let pool: LatentPool | null = null;
    if (state.unetStep < o.unetSteps) {
      log(`encoding a pool of ${o.poolSize} pictures for UNet training`);
      pool = await encodePool(vae, seed, o.poolSize, size, o.poolBackgroundWeights, table);
    }
    unet.setTrainable(true);
    const warmup = 100;
    try {
      const unetOk = await runPhase('unet', unet, o.unetSteps, (step) => {
        const draws = unetDraws(seed, o.fixedBatch ? 0 : step, o.unetBatch, pool!.captions, o.captionDropout, emptyIndex, schedule.numTrainTimesteps);
        const inputs = unetInputs(pool!, ctxTable, schedule, draws, sf, o.noiseOffset);
        const r = tf.variableGrads(() => unetLoss(unet, inputs, draws.timesteps), unet.trainableVariables());
        tf.dispose([inputs.zt, inputs.eps, inputs.ctx]);
        return { loss: r.value, grads: r.grads };
      }, (step) => o.unetLr * Math.min(1, (step + 1) / warmup));
      if (!unetOk) return finish(false);
    } finally {
      if (pool) tf.dispose([pool.mean, pool.std]);
    }
    result.unetSteps = state.unetStep;
    if (options.fp16 ?? true) await writeFolder(true);
    return finish(true);
  } finally {
    lossLog.close();
    tf.dispose(ctxTable);
    vae.dispose();
    unet.dispose();
    text.dispose();
  }

  function finish(done: boolean): TrainToyResult {
    result.vaeSteps = state.vaeStep;
    result.unetSteps = state.unetStep;
    result.done = done;
    result.seconds = (Date.now() - t0) / 1000;
    return result;
  }
}
