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
}

/** Help text of a command. */
export function commandHelp(spec: CommandSpec): string {
  const lines = [`Usage: ${spec.usage}`, '', spec.summary, '', 'Options:'];
  const entries = Object.entries(spec.options);
  const left = entries.map(([name, o]) => `  ${o.short ? `-${o.short}, ` : ''}--${name}${o.arg ? ` ${o.arg}` : ''}`);
  const width = Math.max(...left.map((l) => l.length)) + 2;
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
    throw new CliError(`${spec.name}: ${(e as Error).message.replace(/\. To specify a positional.*$/s, '')}`);
  }
  if (!spec.positionals && parsed.positionals.length > 0 && !parsed.values.help) {
    throw new CliError(`${spec.name}: unexpected argument '${parsed.positionals[0]}' (see dds ${spec.name} --help)`);
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

/** Reads a numeric option within bounds; `integer` requires an integer. */
export function num(
  values: Record<string, unknown>,
  name: string,
  opts: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  const s = str(values, name);
  if (s === undefined) return undefined;
  const v = Number(s);
  if (s.trim() === '' || !Number.isFinite(v)) throw new CliError(`--${name} expects a number, got '${s}'`);
  if (opts.integer && !Number.isInteger(v)) throw new CliError(`--${name} expects an integer, got '${s}'`);
  if (opts.min !== undefined && v < opts.min) throw new CliError(`--${name} must be ≥ ${opts.min}, got ${v}`);
  if (opts.max !== undefined && v > opts.max) throw new CliError(`--${name} must be ≤ ${opts.max}, got ${v}`);
  return v;
}
