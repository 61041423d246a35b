// One set of option checks for the trainers: each throws a one-line Error `<context>: <name> must be …, got <value>`
// before any heavy work, and returns the value so that a check reads as an assignment.
import { InvalidArgumentError } from '@ddsjs/safetensors';

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

function fail(context: string, name: string, what: string, v: unknown): never {
  throw new InvalidArgumentError(`${context}: ${name} must be ${what}, got ${show(v)}`);
}

/** `v` if it is an integer ≥ 1; otherwise throws `<context>: <name> must be a positive integer, got <v>`. */
export function positiveInt(context: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) fail(context, name, 'a positive integer', v);
  return v;
}

/** `v` if it is an integer ≥ 0; otherwise throws `<context>: <name> must be a non-negative integer, got <v>`. */
export function nonNegativeInt(context: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) fail(context, name, 'a non-negative integer', v);
  return v;
}

/** `v` if it is a finite number; otherwise throws `<context>: <name> must be a finite number, got <v>`. */
export function finiteNumber(context: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(context, name, 'a finite number', v);
  return v;
}

/** `v` if it is a finite number > 0; otherwise throws `<context>: <name> must be a positive finite number, got <v>`. */
export function positiveNumber(context: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(context, name, 'a positive finite number', v);
  return v;
}

/** `v` if it is a finite number ≥ 0; otherwise throws `<context>: <name> must be a non-negative finite number, got <v>`. */
export function nonNegativeNumber(context: string, name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(context, name, 'a non-negative finite number', v);
  return v;
}

/**
 * `v` if it is a number in the interval from `lo` to `hi` (closed ends unless `open` names them); otherwise throws
 * `<context>: <name> must be in [lo, hi), got <v>` (brackets as the interval's ends).
 */
export function numberInRange(context: string, name: string, v: unknown, lo: number, hi: number, open: { lo?: boolean; hi?: boolean } = {}): number {
  const ok = typeof v === 'number' && (open.lo ? v > lo : v >= lo) && (open.hi ? v < hi : v <= hi);
  if (!ok) fail(context, name, `in ${open.lo ? '(' : '['}${lo}, ${hi}${open.hi ? ')' : ']'}`, v);
  return v as number;
}

/** `v` if it is one of `choices`; otherwise throws `<context>: <name> must be one of a, b, c, got <v>`. */
export function oneOf<T extends string>(context: string, name: string, v: unknown, choices: readonly T[]): T {
  if (!(choices as readonly unknown[]).includes(v)) fail(context, name, `one of ${choices.join(', ')}`, v);
  return v as T;
}

/** `v` if it is a non-empty string; otherwise throws `<context>: <name> must be a non-empty string, got <v>`. */
export function nonEmptyString(context: string, name: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') fail(context, name, 'a non-empty string', v);
  return v;
}
