// The dds commands' definitions (options, usage, help text) and the main help.
import { EDIT_METHODS } from '@ddsjs/dds';
import { CommandSpec } from './args';

/** The values of --backend. */
export const BACKENDS = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'];

const common: CommandSpec['options'] = {
  model: { type: 'string', arg: 'DIR|FILE', help: 'diffusers folder or single-file checkpoint (default: the embedded toy model)' },
  variant: { type: 'string', arg: 'fp16', help: 'load the *.fp16.safetensors variant of a diffusers folder' },
  backend: { type: 'string', arg: 'NAME', help: `tfjs backend: ${BACKENDS.join('|')}`, default: 'auto' },
};

/** `dds edit`. */
export const EDIT: CommandSpec = {
  name: 'edit',
  summary: 'Edit a picture towards a target prompt with Delta Denoising Score (or SDS), and write a PNG.',
  usage: 'dds edit --image IN --source "what the picture shows" --target "what it should show" [options]',
  options: {
    image: { type: 'string', short: 'i', arg: 'FILE', help: 'input picture (JPEG, PNG or WebP)' },
    source: { type: 'string', arg: 'TEXT', help: 'prompt describing the input picture' },
    target: { type: 'string', arg: 'TEXT', help: 'prompt describing the edited picture' },
    ...common,
    method: { type: 'string', arg: EDIT_METHODS.join('|'), help: 'score to optimise, or flowedit (defaults per method: docs/scores.md)', default: 'dds' },
    mask: { type: 'string', arg: 'FILE', help: 'edit only where this picture is white (black = keep; cropped and resized as the image)' },
    steps: { type: 'string', arg: 'N', help: "optimisation steps (default: the model's ddsjs_defaults.json, else the method's; printed at the start)" },
    lr: { type: 'string', arg: 'X', help: "SGD learning rate (default: the model's ddsjs_defaults.json, else the method's; printed at the start)" },
    guidance: { type: 'string', arg: 'X', help: "classifier-free guidance scale (default: the model's ddsjs_defaults.json, else the method's; printed at the start)" },
    seed: { type: 'string', arg: 'N', help: 'random seed (timesteps and noise)', default: '0' },
    size: { type: 'string', arg: 'PX', help: "edit at PX×PX (multiple of 8; default: the model's native size, as diffusers)" },
    width: { type: 'string', arg: 'PX', help: 'edit at this width (multiple of 8; with --height)' },
    height: { type: 'string', arg: 'PX', help: 'edit at this height (multiple of 8; with --width)' },
    fit: { type: 'string', arg: 'crop|pad|stretch', help: 'how the picture meets that size: centre crop, pad with white, or stretch', default: 'crop' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output picture, .png/.jpg/.webp (default: <image>-edited.png)' },
    'save-every': { type: 'string', arg: 'N', help: 'also write a strip: the input, then the edit every N steps (<out>-steps.<ext>), updated as it goes' },
    'save-on-interrupt': { type: 'boolean', help: 'on Ctrl-C, write the edit reached so far to --out' },
    force: { type: 'boolean', short: 'f', help: 'overwrite existing output files' },
  },
};

/** `dds generate`. */
export const GENERATE: CommandSpec = {
  name: 'generate',
  summary: 'Generate a picture from a prompt with DDIM sampling and classifier-free guidance.',
  usage: 'dds generate "PROMPT" [options]',
  positionals: true,
  options: {
    ...common,
    negative: { type: 'string', arg: 'TEXT', help: 'negative prompt', default: '' },
    steps: { type: 'string', arg: 'N', help: "DDIM steps (default: the model's ddsjs_defaults.json, else diffusers'; printed at the start)" },
    guidance: { type: 'string', arg: 'X', help: "classifier-free guidance scale (default: the model's ddsjs_defaults.json, else diffusers'; printed at the start)" },
    seed: { type: 'string', arg: 'N', help: 'random seed (picture i of --num-images uses seed + i)', default: '0' },
    'num-images': { type: 'string', arg: 'N', help: 'pictures to generate (written as <out>-1, <out>-2, …)', default: '1' },
    height: { type: 'string', arg: 'PX', help: 'height in pixels (default: the model sample size)' },
    width: { type: 'string', arg: 'PX', help: 'width in pixels (default: the model sample size)' },
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output picture, .png/.jpg/.webp', default: 'generated.png' },
    force: { type: 'boolean', short: 'f', help: 'overwrite existing output files' },
  },
};

/** `dds inspect`. */
export const INSPECT: CommandSpec = {
  name: 'inspect',
  summary: 'Describe a Stable Diffusion model folder or checkpoint: components, architecture, parameter counts.',
  usage: 'dds inspect [--model DIR|FILE] [--all]',
  options: { model: common.model, variant: common.variant, all: { type: 'boolean', help: 'list every tensor of a .safetensors file' } },
};

/** `dds train-translator`. */
export const TRAIN_TRANSLATOR: CommandSpec = {
  name: 'train-translator',
  summary: 'Train a network that edits a picture in one pass (DDS paper, Section 5), with DDS as its only signal.',
  usage: 'dds train-translator --source "TEXT" --target "TEXT" [--target "TEXT" …] (--images DIR | --generate N) [options]',
  options: {
    source: { type: 'string', arg: 'TEXT', help: 'prompt describing the training pictures' },
    target: { type: 'string', multiple: true, arg: 'TEXT', help: 'prompt of a task to learn (repeat for several tasks)' },
    images: { type: 'string', arg: 'DIR', help: 'folder of training pictures (all showing --source)' },
    generate: { type: 'string', arg: 'N', help: 'instead, generate N training pictures from --source with the model' },
    ...common,
    steps: { type: 'string', arg: 'N', help: 'training steps (in all, resumed steps included)', default: '1000' },
    batch: { type: 'string', arg: 'N', help: 'pictures per step', default: '1' },
    lr: { type: 'string', arg: 'X', help: 'Adam learning rate', default: '1e-5' },
    guidance: { type: 'string', arg: 'X', help: 'classifier-free guidance scale of the DDS teacher', default: '7.5' },
    seed: { type: 'string', arg: 'N', help: 'random seed (initialisation, data order, timesteps and noise)', default: '0' },
    size: { type: 'string', arg: 'PX', help: 'training picture size, multiple of 8 (default: the model sample size)' },
    cycle: { type: 'string', arg: 'W', help: 'weight of the cycle-consistency regulariser', default: '0' },
    identity: { type: 'string', arg: 'W', help: 'weight of the identity regulariser', default: '0' },
    'gen-steps': { type: 'string', arg: 'N', help: 'DDIM steps per generated picture', default: '50' },
    cache: { type: 'string', arg: 'DIR', help: 'cache of generated latents (default: <out>/data-cache)' },
    'checkpoint-every': { type: 'string', arg: 'N', help: 'write a checkpoint to --out every N steps', default: '100' },
    out: { type: 'string', short: 'o', arg: 'DIR', help: 'translator folder (resumed when it holds a checkpoint)', default: 'translator' },
    force: { type: 'boolean', short: 'f', help: 'start over, replacing a translator in --out' },
  },
};

/** `dds translate`. */
export const TRANSLATE: CommandSpec = {
  name: 'translate',
  summary: 'Edit a picture in one forward pass with a trained translator (dds train-translator), and write a PNG.',
  usage: 'dds translate [--translator DIR] --image IN --task "target prompt" [options]',
  options: {
    translator: {
      type: 'string',
      short: 't',
      arg: 'DIR',
      help: 'translator folder (dds train-translator --out; default: the toy translator shipped with the embedded model)',
    },
    image: { type: 'string', short: 'i', arg: 'FILE', help: 'input picture (JPEG, PNG or WebP)' },
    task: { type: 'string', arg: 'TEXT', help: 'target prompt of the task to run (one the translator was trained on)' },
    model: {
      type: 'string',
      arg: 'DIR|FILE',
      help: "the translator's teacher, for its VAE (default: the model it was trained with when found, else the embedded toy model)",
    },
    variant: common.variant,
    backend: common.backend,
    size: { type: 'string', arg: 'PX', help: 'translate at PX×PX (multiple of 8; default: the training size)' },
    width: { type: 'string', arg: 'PX', help: 'translate at this width (multiple of 8; with --height)' },
    height: { type: 'string', arg: 'PX', help: 'translate at this height (multiple of 8; with --width)' },
    fit: EDIT.options.fit,
    out: { type: 'string', short: 'o', arg: 'FILE', help: 'output picture, .png/.jpg/.webp (default: <image>-translated.png)' },
    force: { type: 'boolean', short: 'f', help: 'overwrite an existing output file' },
  },
};

/** Every command, in the order of the main help. */
export const COMMANDS = [EDIT, GENERATE, INSPECT, TRAIN_TRANSLATOR, TRANSLATE];

/** The text of `dds --help`: the commands and their one-line summaries. */
export function mainHelp(): string {
  return [
    'Usage: dds <command> [options]',
    '',
    'Score-distillation image editing with Stable Diffusion on TensorFlow.js.',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(Math.max(...COMMANDS.map((k) => k.name.length)) + 2)}${c.summary}`),
    '',
    'Run `dds <command> --help` for the options of a command; `dds --version` prints the version.',
  ].join('\n');
}
