// `dds-toy train`: the command's flags, help text and progress lines around the trainToy library call.
import * as path from 'node:path';
import { type CommandSpec, commandHelp, parseCommand } from '@ddsjs/cli/args';
import { BACKEND_NAMES, BackendName, initBackend } from '@ddsjs/nn';
import { BACKGROUND_NAMES, type BackgroundName } from '@ddsjs/toy-shapes';
import { abortOnInterrupt } from '@ddsjs/train';
import { trainToy } from '../train-toy';
import type { TrainToyOptions, TrainToyProgress, TrainToyResult } from '../toy/options';
import { TOY_PRESETS, type ToyPreset } from '../toy/presets';

/** One line of text for a {@link TrainToyProgress} (`vae  120/1500 [####------] loss 0.01234  0.45 s/step  eta 10m20s`). */
export function formatTrainProgress(p: TrainToyProgress, width = 20): string {
  const filled = Math.round((p.step / Math.max(1, p.total)) * width);
  const eta = Math.round(p.etaSeconds);
  const etaText = eta >= 3600 ? `${Math.floor(eta / 3600)}h${String(Math.floor((eta % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(eta / 60)}m${String(eta % 60).padStart(2, '0')}s`;
  return `${p.phase.padEnd(4)} ${String(p.step).padStart(String(p.total).length)}/${p.total} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] loss ${p.loss.toFixed(5)}  ${p.secondsPerStep.toFixed(2)} s/step  eta ${etaText}`;
}

/** `dds-toy train`: its options and help (see @ddsjs/cli/args). */
export const TRAIN_TOY_COMMAND: CommandSpec = {
  name: 'train',
  program: 'dds-toy',
  positionals: true,
  usage: 'dds-toy train <outdir> [options]',
  summary: `Trains the toy-shapes model of @ddsjs/toy-shapes (Stable Diffusion structure: CLIP tokenizer + frozen CLIP text
model, AutoencoderKL, UNet2DConditionModel) on the synthetic shapes world: the VAE, then the UNet (epsilon
prediction, 10% caption dropout). <outdir> is a diffusers folder at every checkpoint; <outdir>/train/ holds the
state, the Adam moments and loss.jsonl. Rerunning the same command resumes from the last checkpoint.`,
  options: {
    preset: { type: 'string', arg: 'P', help: 'toy (64x64 pictures, 8x8x4 latents; default), toy16 (64x64 pictures, 16x16x4 latents) or micro (16x16 pictures, for tests)' },
    seed: { type: 'string', arg: 'N', help: 'seed of initialisation, data and noise (default 0; must match when resuming)' },
    'vae-steps': { type: 'string', arg: 'N', help: 'VAE steps (default 1200)' },
    'unet-steps': { type: 'string', arg: 'N', help: 'UNet steps (default 2000)' },
    'vae-batch': { type: 'string', arg: 'N', help: 'VAE batch (default 4)' },
    'unet-batch': { type: 'string', arg: 'N', help: 'UNet batch (default 16)' },
    'vae-lr': { type: 'string', arg: 'X', help: 'VAE Adam lr (default 1e-3)' },
    'unet-lr': { type: 'string', arg: 'X', help: 'UNet Adam lr (default 5e-4)' },
    'pool-size': { type: 'string', arg: 'N', help: 'pictures pre-encoded for UNet training (default 8192)' },
    'shape-weight': { type: 'string', arg: 'X', help: 'weight of shape pixels in the VAE loss (default 5)' },
    'vae-colour-weight': { type: 'string', arg: 'X', help: "weight of the VAE's 4x4 block-mean colour term (default 4; 0 = off)" },
    'vae-latent-colour-weight': { type: 'string', arg: 'X', help: "weight of the term tying latent channels 0-2 to each cell's mean RGB (default 0)" },
    'vae-latent-mask-weight': { type: 'string', arg: 'X', help: "weight of the term tying latent channel 3 to the shape's coverage of each cell (default 0)" },
    'vae-latent-mask-level': { type: 'string', arg: 'X', help: "that channel's value on the shape (+X) and the background (-X) (default 2)" },
    'vae-freeze-encoder': { type: 'boolean', help: 'train only the VAE decoder (the latents, and a UNet trained on them, stay valid)' },
    init: { type: 'string', arg: 'DIR', help: 'start from the weights and configs of the diffusers folder DIR (fine-tuning; e.g. the decoder of a finished model with --vae-freeze-encoder --unet-steps 0, keeping its scaling_factor)' },
    'vae-logvar-init': { type: 'string', arg: 'X', help: "initial bias of the VAE encoder's logvar channels (default -6: posterior std 0.05)" },
    'noise-offset': { type: 'string', arg: 'X', help: "offset noise in the UNet phase, as diffusers' --noise_offset (default 0; see TrainToyOptions)" },
    'pool-background-weights': { type: 'string', arg: 'LIST', help: "relative frequency of backgrounds in the UNet's pool, e.g. gray=3 (others 1)" },
    'checkpoint-every': { type: 'string', arg: 'N', help: 'checkpoint interval in steps (default 250)' },
    'keep-checkpoints': { type: 'boolean', help: "keep each checkpoint's weights in <outdir>/train/checkpoints/ (for dds-weights average)" },
    'time-budget': { type: 'string', arg: 'S', help: 'stop cleanly (checkpoint) after S seconds; rerun to resume (Ctrl-C does the same; twice: quit now)' },
    backend: { type: 'string', arg: 'B', help: 'tfjs backend: wasm, cpu, tensorflow, webgpu or auto (default wasm)' },
    force: { type: 'boolean', help: 'start afresh in a non-empty <outdir>' },
    'no-fp16': { type: 'boolean', help: 'skip writing the *.fp16.safetensors variant at the end' },
  },
};

/** Parsed `dds-toy train` arguments: the {@link trainToy} options plus the backend to use. */
export interface TrainToyArgs {
  /** Options for {@link trainToy}. */
  options: TrainToyOptions;
  /** The tfjs backend to initialise (`--backend`, default wasm). */
  backend: BackendName;
  /** `--help` was given (nothing else is parsed then). */
  help: boolean;
}

/** `gray=3,white=0.5` → `{ gray: 3, white: 0.5 }`; throws naming the flag on a malformed entry. */
function parseBackgroundWeights(text: string): Partial<Record<BackgroundName, number>> {
  const out: Partial<Record<BackgroundName, number>> = {};
  for (const part of text.split(',')) {
    const m = /^\s*([a-z]+)\s*=\s*([^\s]+)\s*$/.exec(part);
    const w = m ? Number(m[2]) : NaN;
    if (!m || !(BACKGROUND_NAMES as readonly string[]).includes(m[1]) || !Number.isFinite(w) || w < 0) {
      throw new Error(`train: --pool-background-weights must look like gray=3,white=1 (backgrounds ${BACKGROUND_NAMES.join(', ')}; weights ≥ 0), got '${text}'`);
    }
    out[m[1] as BackgroundName] = w;
  }
  return out;
}

/**
 * Parses the arguments of `dds-toy train` (after the command name). Throws an Error naming the flag on
 * an unknown flag or a bad number.
 */
export function parseTrainToyArgs(args: string[]): TrainToyArgs {
  const parsed = parseCommand(TRAIN_TOY_COMMAND, args);
  const v = parsed.values;
  if (parsed.help) return { options: { outdir: '' }, backend: 'wasm', help: true };
  if (parsed.positionals.length !== 1) {
    throw new Error(`train: expected <outdir>, got ${parsed.positionals.length ? parsed.positionals.map((x) => JSON.stringify(x)).join(' ') : 'nothing'} (see dds-toy train --help)`);
  }
  const num = (name: string, int: boolean): number | undefined => {
    const s = v[name];
    if (s === undefined) return undefined;
    const x = Number(s);
    if (s === '' || !Number.isFinite(x) || (int && !Number.isInteger(x))) throw new Error(`train: --${name} must be ${int ? 'an integer' : 'a number'}, got ${String(s)}`);
    return x;
  };
  const preset = v.preset as string | undefined;
  if (preset !== undefined && !(TOY_PRESETS as readonly string[]).includes(preset)) throw new Error(`train: --preset must be one of ${TOY_PRESETS.join(', ')}, got ${preset}`);
  const backend = (v.backend as string | undefined) ?? 'wasm';
  if (backend !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(backend)) {
    throw new Error(`train: --backend must be auto or one of ${BACKEND_NAMES.join(', ')}, got ${backend}`);
  }
  return {
    help: false,
    backend: backend as BackendName,
    options: {
      outdir: parsed.positionals[0],
      preset: preset as ToyPreset | undefined,
      ...(v.init !== undefined ? { initFrom: v.init as string } : {}),
      seed: num('seed', true),
      vaeSteps: num('vae-steps', true),
      unetSteps: num('unet-steps', true),
      vaeBatch: num('vae-batch', true),
      unetBatch: num('unet-batch', true),
      vaeLr: num('vae-lr', false),
      unetLr: num('unet-lr', false),
      poolSize: num('pool-size', true),
      ...(v['pool-background-weights'] !== undefined ? { poolBackgroundWeights: parseBackgroundWeights(v['pool-background-weights'] as string) } : {}),
      shapeWeight: num('shape-weight', false),
      vaeLogvarInit: num('vae-logvar-init', false),
      vaeLowFreqWeight: num('vae-colour-weight', false),
      vaeFreezeEncoder: v['vae-freeze-encoder'] === true,
      vaeLatentColourWeight: num('vae-latent-colour-weight', false),
      vaeLatentMaskWeight: num('vae-latent-mask-weight', false),
      vaeLatentMaskLevel: num('vae-latent-mask-level', false),
      checkpointEvery: num('checkpoint-every', true),
      keepCheckpoints: v['keep-checkpoints'] === true,
      timeBudgetSeconds: num('time-budget', false),
      noiseOffset: num('noise-offset', false),
      force: !!v.force,
      fp16: !v['no-fp16'],
    },
  };
}

/**
 * Runs `dds-toy train` with `args` (after the command name): initialises the backend, trains, prints a
 * progress line on stderr (redrawn in place on a terminal, every 10 steps otherwise), checkpoints and a summary on
 * `out`. Returns the exit code (0; the training state is kept when stopped by `--time-budget` or by a first Ctrl-C /
 * SIGTERM, which stops after the current step and writes a checkpoint; a second one kills at once). Throws an Error
 * with a one-line message on bad arguments.
 */
export async function runTrainToyCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const a = parseTrainToyArgs(args);
  if (a.help) {
    out(commandHelp(TRAIN_TOY_COMMAND));
    return 0;
  }
  const backend = await initBackend(a.backend, { quiet: true });
  out(`train: backend ${backend}, outdir ${path.resolve(a.options.outdir)}`);
  const tty = !!process.stderr.isTTY;
  const ctrl = new AbortController();
  const signals = abortOnInterrupt(ctrl, '\ninterrupted: stopping after this step (a checkpoint will be written; rerun to resume)');
  let r: TrainToyResult;
  try {
    r = await trainToy({
      ...a.options,
      signal: ctrl.signal,
      log: (l) => {
        if (tty) process.stderr.write('\n');
        out(l);
      },
      onProgress: (p) => {
        if (tty) process.stderr.write(`\r${formatTrainProgress(p)}`);
        else if (p.step % 10 === 0 || p.step === p.total) process.stderr.write(formatTrainProgress(p) + '\n');
      },
    });
  } finally {
    signals.remove();
  }
  if (tty) process.stderr.write('\n');
  const sps = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)} s/step` : '-');
  out(`train: ${r.done ? 'done' : signals.interrupted() ? 'interrupted (rerun to resume)' : 'stopped (rerun to resume)'}: VAE ${r.vaeSteps} steps (${sps(r.vaeSecondsPerStep)}), UNet ${r.unetSteps} steps (${sps(r.unetSecondsPerStep)}), ${(r.seconds / 60).toFixed(1)} min, scaling_factor ${r.scalingFactor}`);
  return 0;
}
