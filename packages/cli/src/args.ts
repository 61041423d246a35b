import { parseArgs } from 'node:util';

/** A user-facing CLI error: printed as one line, no stack trace, exit code 2. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

/** An option of a command, as node:util parseArgs takes it, plus help text. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  help: string;
  /** Placeholder shown in help (e.g. `N`, `DIR`). */
  arg?: string;
  default?: string | boolean;
}

/** A subcommand's definition. */
export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  /** Whether positional arguments are accepted. */
  positionals?: boolean;
  /** The executable named in error messages' `(see PROGRAM NAME --help)` (default `dds`). */
  program?: string;
}

/** Help text of a command. */
export function commandHelp(spec: CommandSpec): string {
  const lines = [`Usage: ${spec.usage}`, '', spec.summary, '', 'Options:'];
  const entries = Object.entries(spec.options);
  const left = entries.map(([name, o]) => `  ${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`);
  const width = Math.max(...left.map((l) => l.length), '  -h, --help'.length) + 2;
  entries.forEach(([, o], i) => {
    const def = o.default !== undefined && o.default !== false ? ` (default: ${o.default})` : '';
    lines.push(left[i].padEnd(width) + o.help + def);
  });
  lines.push('  -h, --help'.padEnd(width) + 'show this help');
  return lines.join('\n');
}

/** Parses `argv` for `spec`; unknown options or missing values become {@link CliError}s. */
export function parseCommand(
  spec: CommandSpec,
  argv: string[],
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[]; help: boolean } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) };
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new CliError(`${spec.name}: ${parseErrorText(e as Error & { code?: string })} (see ${spec.program ?? 'dds'} ${spec.name} --help)`);
  }
  if (!spec.positionals && parsed.positionals.length > 0 && !parsed.values.help) {
    throw new CliError(`${spec.name}: unexpected argument '${parsed.positionals[0]}' (see ${spec.program ?? 'dds'} ${spec.name} --help)`);
  }
  const values: Record<string, string | boolean | string[] | undefined> = {};
  for (const [name, o] of Object.entries(spec.options)) values[name] = (parsed.values[name] as string | boolean | string[] | undefined) ?? o.default;
  return { values, positionals: parsed.positionals, help: Boolean(parsed.values.help) };
}

/** Reads a string option; throws a CliError naming it when required and absent or empty. */
export function str(values: Record<string, unknown>, name: string, required = false): string | undefined {
  const v = values[name];
  if (v === undefined) {
    if (required) throw new CliError(`missing --${name}`);
    return undefined;
  }
  if (typeof v !== 'string') throw new CliError(`--${name} expects a value`);
  if (required && v.trim() === '') throw new CliError(`--${name} must not be empty`);
  return v;
}

/** node:util parseArgs' errors in the CLI's words (its own name the option, not the "did you forget" advice). */
function parseErrorText(e: Error & { code?: string }): string {
  const opt = /'(-[-\w]+)/.exec(e.message)?.[1] ?? '';
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
      return `unknown option '${opt}'`;
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE':
      return /ambiguous/.test(e.message)
        ? `${opt} needs a value (for a value starting with '-', write ${opt}=VALUE)`
        : /does not take an argument/.test(e.message)
          ? `${opt} takes no value`
          : `${opt} needs a value`;
    default:
      return e.message.split('\n')[0];
  }
}

const DECIMAL_INTEGER = /^[+-]?\d+$/;
const DECIMAL_NUMBER = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

/** Bounds of a numeric option (see {@link num}). */
export interface NumberBounds {
  /** Smallest value allowed (inclusive). */
  min?: number;
  /** Largest value allowed (inclusive). */
  max?: number;
  /** The value must be greater than this (exclusive). */
  above?: number;
  /** Only integers, written in decimal digits (no `0x10`, `1e2`, `1.0`), and at most `Number.MAX_SAFE_INTEGER`. */
  integer?: boolean;
}

/** What a numeric option takes, in words: "an integer ≥ 1", "a number > 0", "an integer in [0, 4294967295]". */
export function describeBounds(b: NumberBounds): string {
  const what = b.integer ? 'an integer' : 'a number';
  if (b.min !== undefined && b.max !== undefined) return `${what} in [${b.min}, ${b.max}]`;
  if (b.above !== undefined) return `${what} > ${b.above}${b.max !== undefined ? ` and ≤ ${b.max}` : ''}`;
  if (b.min !== undefined) return `${what} ≥ ${b.min}`;
  if (b.max !== undefined) return `${what} ≤ ${b.max}`;
  return what;
}

/**
 * Parses the text of a numeric option — the CLI's one number parser: decimal only (`0x10`, `0b1`, `Infinity`,
 * empty text are refused), finite, integers in decimal digits and exactly representable when `integer`, and within
 * the bounds. Throws a {@link CliError} `--NAME must be <what it takes>, got 'TEXT'` otherwise.
 */
export function parseNumber(name: string, text: string, bounds: NumberBounds = {}): number {
  const fail = (): never => {
    throw new CliError(`--${name} must be ${describeBounds(bounds)}, got '${text}'`);
  };
  const t = text.trim();
  if (!(bounds.integer ? DECIMAL_INTEGER : DECIMAL_NUMBER).test(t)) fail();
  const v = Number(t);
  if (!Number.isFinite(v)) fail();
  if (bounds.integer && !Number.isSafeInteger(v)) fail();
  if (bounds.min !== undefined && v < bounds.min) fail();
  if (bounds.max !== undefined && v > bounds.max) fail();
  if (bounds.above !== undefined && !(v > bounds.above)) fail();
  return Object.is(v, -0) ? 0 : v;
}

/** Reads a numeric option with {@link parseNumber}; undefined when absent. */
export function num(values: Record<string, unknown>, name: string, bounds: NumberBounds = {}): number | undefined {
  const s = str(values, name);
  return s === undefined ? undefined : parseNumber(name, s, bounds);
}

/** The largest seed: seeds are taken modulo 2³², so larger ones would silently repeat smaller ones. */
export const MAX_SEED = 2 ** 32 - 1;
