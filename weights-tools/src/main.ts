// Argument parsing and dispatch of the `dds-weights` command.
import { type CommandSpec, commandHelp, parseCommand } from '@ddsjs/cli/args';
import { inspect } from '@ddsjs/sd';
import { convertSingleFile } from './convert';
import { toFp16 } from './fp16';
import { averageCheckpoints } from './average';
import { makeRandom } from './random';
import { formatCount } from './folder';

const USAGE = `usage: dds-weights <command> [options]

commands:
  inspect <file|dir> [--all] [--variant fp16|fp32]
  convert-single-file <file> <outdir> [--config-from DIR] [--prediction-type epsilon|v_prediction] [--fp16] [--force]
  to-fp16 <dir> [--force]
  average <output.safetensors> <checkpoint.safetensors>... [--force]
  make-random --like sd15|sd21 <outdir> [--width F] [--scale-all] [--seed N] [--fp16-only] [--force]

dds-weights <command> --help describes a command. The toy model's training and evaluation are dds-toy's
(@ddsjs/toy-train).`;

const spec = (name: string, usage: string, summary: string, options: CommandSpec['options']): CommandSpec => ({
  name,
  usage: `dds-weights ${name} ${usage}`,
  summary,
  options,
  positionals: true,
  program: 'dds-weights',
});

/** The commands of `dds-weights`: their options and help (see @ddsjs/cli/args). */
export const COMMANDS: Record<string, CommandSpec> = {
  inspect: spec(
    'inspect',
    '<file|dir> [--all] [--variant fp16|fp32]',
    `Describes a .safetensors file (tensor count, dtypes, parameters, a table of tensors: the first 20, or every
one with --all), a single-file LDM checkpoint (detected model type, per-component counts) or a diffusers
folder (per component: weights files found, dtype, tensors, parameters, size, key config fields).
Reads headers and configs only.`,
    {
      all: { type: 'boolean', help: 'list every tensor (default: the first 20)' },
      variant: { type: 'string', arg: 'V', help: "fp16 or fp32: the weights files of a folder to describe" },
    },
  ),
  'convert-single-file': spec(
    'convert-single-file',
    '<file> <outdir> [--config-from DIR] [--prediction-type epsilon|v_prediction] [--fp16] [--force]',
    `Converts an LDM/CompVis single-file SD 1.x/2.x checkpoint (.safetensors) into a diffusers folder:
model_index.json, unet/, vae/, text_encoder/ (configs + weights with diffusers key names), tokenizer/ and
scheduler/. Configs come from --config-from DIR, else the checkpoint's own folder when it holds diffusers
configs, else the built-in SD 1.5 / 2.1 configs (with the bundled CLIP vocabulary and the right pad token).`,
    {
      'config-from': { type: 'string', arg: 'DIR', help: 'diffusers folder whose configs (and tokenizer) describe the checkpoint' },
      'prediction-type': { type: 'string', arg: 'T', help: 'epsilon (SD 1.x, SD 2.x-base) or v_prediction (SD 2.x 768)' },
      fp16: { type: 'boolean', help: 'write float16 weights as *.fp16.safetensors (default: float32 *.safetensors)' },
      force: { type: 'boolean', help: 'write into an existing non-empty outdir' },
    },
  ),
  'to-fp16': spec(
    'to-fp16',
    '<dir> [--force]',
    `Writes *.fp16.safetensors beside every float32 weights file of the folder's components (round to nearest
even, as torch's .half(); values beyond the float16 range become inf, with a warning).`,
    { force: { type: 'boolean', help: 'overwrite existing fp16 files' } },
  ),
  average: spec(
    'average',
    '<output.safetensors> <checkpoint.safetensors>... [--force]',
    `Writes the element-wise mean of two or more checkpoints of one model (same tensor names and shapes; float dtypes),
in float32: checkpoint averaging ("stochastic weight averaging") of a training run's last checkpoints, e.g. those
dds-toy train --keep-checkpoints keeps. Streams one tensor at a time.`,
    { force: { type: 'boolean', help: 'overwrite an existing output file' } },
  ),
  'make-random': spec(
    'make-random',
    '--like sd15|sd21 <outdir> [--width F] [--scale-all] [--seed N] [--fp16-only] [--force]',
    `Writes a diffusers folder with the real SD 1.5 / 2.1 architecture and seeded random weights (N(0, 1/sqrt(fan_in))
weights, norm scales ~1, small biases) for benchmarks. Never commit it (SD 1.5 float32 is ~4.3 GB).`,
    {
      like: { type: 'string', arg: 'M', help: 'sd15 or sd21' },
      width: { type: 'string', arg: 'F', help: "scale the UNet's block_out_channels by F (rounded to multiples of lcm(32, heads); default 1)" },
      'scale-all': { type: 'boolean', help: 'also scale the VAE and text encoder widths by F (default: real sizes)' },
      seed: { type: 'string', arg: 'N', help: 'PRNG seed (default 0)' },
      'fp16-only': { type: 'boolean', help: 'write only the *.fp16.safetensors variant (default: float32 files and the fp16 variant)' },
      force: { type: 'boolean', help: 'write into an existing non-empty outdir' },
    },
  ),
};

function progressPrinter(enabled: boolean): ((done: number, total: number) => void) | undefined {
  if (!enabled) return undefined;
  let last = -1;
  return (done, total) => {
    const pct = Math.floor((100 * done) / total);
    if (pct !== last && (pct % 10 === 0 || done === total)) {
      last = pct;
      process.stderr.write(`  ${pct}% (${done}/${total} tensors)\n`);
    }
  };
}

/**
 * Runs `dds-weights` with `argv` (without the node and script paths): prints results to stdout and warnings to
 * stderr. Returns the exit code (0 ok, 2 usage error); throws an Error with a one-line message on bad input
 * or a failure (the bin prints it without a stack and exits 1).
 */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  if (!(cmd in COMMANDS)) throw new Error(`unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')}; see dds-weights --help)`);
  const warn = (m: string) => process.stderr.write(`warning: ${m}\n`);
  const parse = () => {
    const r = parseCommand(COMMANDS[cmd], rest);
    return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals, help: r.help };
  };
  const positionals = (p: string[], n: number, names: string) => {
    if (p.length !== n) throw new Error(`${cmd}: expected ${names}, got ${p.length ? p.map((x) => JSON.stringify(x)).join(' ') : 'nothing'} (see dds-weights ${cmd} --help)`);
  };
  const isTty = !!process.stderr.isTTY;
  switch (cmd) {
    case 'inspect': {
      const { values, positionals: p, help } = parse();
      if (help) return out(commandHelp(COMMANDS[cmd])), 0;
      positionals(p, 1, '<file|dir>');
      const variant = values.variant as string | undefined;
      if (variant !== undefined && variant !== 'fp16' && variant !== 'fp32') throw new Error(`inspect: --variant must be fp16 or fp32, got ${variant}`);
      out(await inspect(p[0], { all: !!values.all, variant: variant as 'fp16' | 'fp32' | undefined }));
      return 0;
    }
    case 'convert-single-file': {
      const { values, positionals: p, help } = parse();
      if (help) return out(commandHelp(COMMANDS[cmd])), 0;
      positionals(p, 2, '<file> <outdir>');
      const pt = values['prediction-type'] as string | undefined;
      if (pt !== undefined && pt !== 'epsilon' && pt !== 'v_prediction') {
        throw new Error(`convert-single-file: --prediction-type must be epsilon or v_prediction, got ${pt}`);
      }
      const r = await convertSingleFile(p[0], p[1], {
        configFrom: values['config-from'] as string | undefined,
        predictionType: pt as 'epsilon' | 'v_prediction' | undefined,
        fp16: !!values.fp16,
        force: !!values.force,
        warn,
        onProgress: progressPrinter(isTty),
      });
      out(`converted ${p[0]} (${r.modelType}, configs from ${r.configSource}) → ${p[1]}`);
      for (const [name, c] of Object.entries(r.components)) out(`  ${name}: ${c.tensors} tensors, ${formatCount(c.parameters)} parameters → ${c.file}`);
      if (r.otherKeys) out(`  ${r.otherKeys} other checkpoint keys (not UNet/VAE/text encoder) were not written`);
      return 0;
    }
    case 'to-fp16': {
      const { values, positionals: p, help } = parse();
      if (help) return out(commandHelp(COMMANDS[cmd])), 0;
      positionals(p, 1, '<dir>');
      const files = await toFp16(p[0], { force: !!values.force, warn });
      for (const f of files) out(`${f.source} → ${f.output} (${f.converted} tensors to F16${f.copied ? `, ${f.copied} kept` : ''}${f.overflow ? `, ${f.overflow} values overflowed to inf` : ''})`);
      return 0;
    }
    case 'average': {
      const { values, positionals: p, help } = parse();
      if (help) return out(commandHelp(COMMANDS[cmd])), 0;
      if (p.length < 3) throw new Error(`average: expected <output.safetensors> and at least two checkpoints, got ${p.length} path(s) (see dds-weights average --help)`);
      const r = await averageCheckpoints(p[0], p.slice(1), { force: !!values.force, onProgress: progressPrinter(isTty) });
      out(`averaged ${r.inputs} checkpoints (${r.tensors} tensors) → ${r.output}`);
      return 0;
    }
    case 'make-random': {
      const { values, positionals: p, help } = parse();
      if (help) return out(commandHelp(COMMANDS[cmd])), 0;
      positionals(p, 1, '<outdir>');
      const like = values.like as string | undefined;
      if (like !== 'sd15' && like !== 'sd21') throw new Error(`make-random: --like must be sd15 or sd21, got ${like ?? 'nothing'}`);
      const num = (name: string, v: unknown, int: boolean): number | undefined => {
        if (v === undefined) return undefined;
        const x = Number(v);
        if (v === '' || !Number.isFinite(x) || (int && !Number.isInteger(x))) throw new Error(`make-random: --${name} must be ${int ? 'an integer' : 'a number'}, got ${String(v)}`);
        return x;
      };
      const r = await makeRandom(p[0], {
        like,
        width: num('width', values.width, false),
        seed: num('seed', values.seed, true),
        scaleAll: !!values['scale-all'],
        fp16Only: !!values['fp16-only'],
        force: !!values.force,
        onProgress: progressPrinter(isTty),
      });
      out(`wrote ${p[0]}: ${like}, unet block_out_channels ${JSON.stringify(r.configs.unet.block_out_channels)}`);
      for (const [name, n] of Object.entries(r.parameters)) out(`  ${name}: ${formatCount(n)} parameters`);
      return 0;
    }
  }
  return 2;
}
