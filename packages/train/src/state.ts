// Checkpoint-folder helpers: atomic JSON state, the loss log, and the "same trajectory" check of a resume.
import { IoError } from '@ddsjs/safetensors';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Writes `value` as pretty JSON (with a final newline) to `file` atomically: a temporary file renamed into place. */
export function writeJsonAtomic(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

/**
 * The JSON object in `file`; throws a one-line error `<context>: cannot read <file>: <reason>` when it is missing,
 * not valid JSON or not an object.
 */
export function readJsonObject(context: string, file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new IoError(`${context}: cannot read ${file}: ${((e as Error).message ?? String(e)).split('\n')[0]}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new IoError(`${context}: cannot read ${file}: not a JSON object`);
  return v as Record<string, unknown>;
}

/** JSON with object keys sorted at every level, so that equal configs give equal text whatever their key order. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) : v,
  );
}

/** The first 16 hex digits of the SHA-256 of {@link canonicalJson}`(config)`: the id of a training trajectory. */
export function configHash(config: unknown): string {
  return createHash('sha256').update(canonicalJson(config)).digest('hex').slice(0, 16);
}

/**
 * The keys whose values differ between a saved config and the current one, as `key: <saved> in the checkpoint,
 * <now> now` lines (values as JSON; a key absent on one side reads `undefined`). Empty when they describe the same
 * trajectory.
 */
export function configDiff(saved: Readonly<Record<string, unknown>>, now: Readonly<Record<string, unknown>>): string[] {
  return Object.keys({ ...now, ...saved })
    .filter((k) => canonicalJson(saved[k]) !== canonicalJson(now[k]))
    .map((k) => `${k}: ${canonicalJson(saved[k]) ?? 'undefined'} in the checkpoint, ${canonicalJson(now[k]) ?? 'undefined'} now`);
}

/**
 * Throws `<context>: <what> was trained with other options (<diffs>); resume with the same options` unless `saved`
 * and `now` describe the same trajectory (see {@link configDiff}).
 */
export function checkSameTrajectory(context: string, what: string, saved: Readonly<Record<string, unknown>>, now: Readonly<Record<string, unknown>>): void {
  const diffs = configDiff(saved, now);
  if (diffs.length) throw new IoError(`${context}: ${what} was trained with other options (${diffs.join('; ')}); resume with the same options`);
}

/** An append-only JSON-lines loss log (one object per step), opened once and written synchronously. */
export class LossLog {
  private fd: number | null;

  /** Opens `file` for appending (creating it and its folder); `fresh` empties it first. */
  constructor(
    readonly file: string,
    fresh = false,
  ) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    this.fd = fs.openSync(file, fresh ? 'w' : 'a');
  }

  /** Appends `record` as one JSON line. */
  write(record: Record<string, unknown>): void {
    if (this.fd === null) throw new IoError(`LossLog: ${this.file} is closed`);
    fs.writeSync(this.fd, JSON.stringify(record) + '\n');
  }

  /** Closes the file (idempotent). */
  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}
