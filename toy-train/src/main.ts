// Dispatch of the `dds-toy` command: each command's options and help are a CommandSpec (@ddsjs/cli/args).
import type { CommandSpec } from '@ddsjs/cli/args';
import { runEvalToyCommand, EVAL_TOY_COMMAND } from './commands/eval-toy';
import { runEvalToyTranslatorCommand, runTrainToyTranslatorCommand, EVAL_TOY_TRANSLATOR_COMMAND, TRAIN_TOY_TRANSLATOR_COMMAND } from './commands/toy-translator';
import { runTrainToyCommand, TRAIN_TOY_COMMAND } from './commands/train-toy';

type Run = (args: string[], out: (s: string) => void) => Promise<number>;

/** The commands of `dds-toy`: each one's spec (options and help) and how it runs. */
export const COMMANDS: Record<string, { spec: CommandSpec; run: Run }> = {
  train: { spec: TRAIN_TOY_COMMAND, run: runTrainToyCommand },
  eval: { spec: EVAL_TOY_COMMAND, run: runEvalToyCommand },
  'train-translator': { spec: TRAIN_TOY_TRANSLATOR_COMMAND, run: runTrainToyTranslatorCommand },
  'eval-translator': { spec: EVAL_TOY_TRANSLATOR_COMMAND, run: runEvalToyTranslatorCommand },
};

const USAGE = `usage: dds-toy <command> [options]

Trains and measures the toy-shapes model of @ddsjs/toy-shapes and its translator.

commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(18)}${c.spec.usage.replace(/^dds-toy \S+ /, '')}`)
  .join('\n')}

dds-toy <command> --help describes a command.`;

/**
 * Runs `dds-toy` with `argv` (without the node and script paths): prints results to `out` and progress to stderr.
 * Returns the exit code (0 ok, 2 usage error); throws an Error with a one-line message on bad input or a failure
 * (the bin prints it without a stack and exits 1).
 */
export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(USAGE);
    return cmd ? 0 : 2;
  }
  if (!Object.prototype.hasOwnProperty.call(COMMANDS, cmd)) throw new Error(`unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')}; see dds-toy --help)`);
  return COMMANDS[cmd].run(rest, out);
}
