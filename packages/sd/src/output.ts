// Output paths: one check, run before any heavy work, and atomic writes (Node only).
import * as fs from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { DdsError } from '@ddsjs/safetensors';

/**
 * A path given as an output cannot be written (missing or unwritable folder, unknown format, a folder where a file
 * is wanted, an existing file without permission to replace it, or one of the inputs). The message is one line
 * without a function prefix, fit to show a user as is.
 */
export class OutputPathError extends DdsError {
  constructor(message: string) {
    super('OUTPUT_PATH', message);
    this.name = 'OutputPathError';
  }
}

/** Options of {@link checkOutputPath}. */
export interface CheckOutputOptions {
  /** `'file'` (default): a file is written at the path; `'folder'`: files are written inside a folder at the path. */
  kind?: 'file' | 'folder';
  /** May an existing file be replaced (a `'file'` output)? Default false. */
  force?: boolean;
  /** How a user allows replacing, for the message. Default `'pass --force to overwrite it'`. */
  forceHint?: string;
  /** Extensions (lower case, with the dot) that name a format the writer knows; a `'file'` output must end in one. */
  extensions?: readonly string[];
  /** Paths the command reads: the output must be none of them (by real path, symbolic and hard links included). */
  inputs?: readonly string[];
}

/** The file extensions {@link writeImage} knows. */
export const IMAGE_EXTENSIONS: readonly string[] = ['.png', '.jpg', '.jpeg', '.webp'];

function errnoText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const known: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    EROFS: 'read-only file system',
    ENOENT: 'the folder does not accept new files',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    ENOTDIR: 'not a folder',
  };
  return (code && known[code]) ?? (code ? code.toLowerCase() : String((e as Error).message ?? e));
}

/** The real path of `p`, or of its nearest existing ancestor joined with the rest (for a path not created yet). */
function realPathOf(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    const parent = path.dirname(abs);
    return parent === abs ? abs : path.join(realPathOf(parent), path.basename(abs));
  }
}

/**
 * True when `a` and `b` name the same file: the same real path (symbolic links resolved), or, for two existing
 * files, the same device and inode (hard links).
 */
export function samePath(a: string, b: string): boolean {
  if (realPathOf(a) === realPathOf(b)) return true;
  try {
    const sa = fs.statSync(a);
    const sb = fs.statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/**
 * Throws an {@link OutputPathError} unless `file` ends in one of `extensions` (lower-case, with the dot; compared
 * case-insensitively): the one wording of "the writer cannot tell the format from this name".
 */
export function assertOutputExtension(file: string, extensions: readonly string[]): void {
  const ext = path.extname(file).toLowerCase();
  if (!extensions.includes(ext)) {
    throw new OutputPathError(`output ${file}: ${ext ? `unknown format '${ext}'` : 'no file extension'}; use ${extensions.join(', ')}`);
  }
}

/**
 * Checks that `output` can be written, before any heavy work (a model load, an edit): throws an
 * {@link OutputPathError} when its folder is missing or not writable (a probe file is created and removed), when
 * a `'file'` output names a folder, has no or an unknown extension (`extensions`), exists without `force`, or is
 * one of `inputs` (compared by real path and by inode); when a `'folder'` output is an existing file, or is an
 * input. Creates nothing that stays.
 */
export function checkOutputPath(output: string, opts: CheckOutputOptions = {}): void {
  if (typeof output !== 'string' || output.trim() === '') throw new OutputPathError('the output path is empty');
  const kind = opts.kind ?? 'file';
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(output);
  } catch {
    st = undefined;
  }
  if (kind === 'file') {
    if (st?.isDirectory() || /[\\/]$/.test(output)) throw new OutputPathError(`output ${output} is a folder; give a file name`);
    if (opts.extensions) assertOutputExtension(output, opts.extensions);
  } else if (st && !st.isDirectory()) {
    throw new OutputPathError(`output ${output} exists and is not a folder`);
  }
  for (const input of opts.inputs ?? []) {
    if (samePath(output, input)) throw new OutputPathError(`output ${output} is also an input (${input}); choose another output`);
  }
  if (kind === 'file' && st && !opts.force) throw new OutputPathError(`output ${output} exists; ${opts.forceHint ?? 'pass --force to overwrite it'}`);
  // The folder the files go to: the output's parent (a file, or a folder yet to be created), or the folder itself.
  const dir = kind === 'folder' && st ? path.resolve(output) : path.dirname(path.resolve(output));
  let dst: fs.Stats;
  try {
    dst = fs.statSync(dir);
  } catch {
    throw new OutputPathError(`output folder ${dir} does not exist`);
  }
  if (!dst.isDirectory()) throw new OutputPathError(`output folder ${dir} is not a folder`);
  const probe = path.join(dir, `.ddsjs-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (e) {
    throw new OutputPathError(`cannot write to output folder ${dir}: ${errnoText(e)}`);
  }
  fs.rmSync(probe, { force: true });
}

/**
 * Writes `bytes` to `file` atomically: into a temporary file in the same folder, then renamed over `file` (a
 * reader never sees a half-written file; an interrupted write leaves the old file, or none). Without `overwrite`,
 * an existing `file` is an {@link OutputPathError} (checked again at the rename, by a hard link, so a file created
 * meanwhile is not replaced either). Other failures throw an OutputPathError naming the file and the cause.
 */
export async function writeFileAtomic(file: string, bytes: Uint8Array, opts: { overwrite?: boolean; forceHint?: string } = {}): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const exists = (): OutputPathError => new OutputPathError(`output ${file} exists; ${opts.forceHint ?? 'pass --force to overwrite it'}`);
  try {
    await fs.promises.writeFile(tmp, bytes, { flag: 'wx' });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !fs.existsSync(dir)) throw new OutputPathError(`output folder ${dir} does not exist`);
    throw new OutputPathError(`cannot write ${file}: ${errnoText(e)}`);
  }
  try {
    if (opts.overwrite) {
      await fs.promises.rename(tmp, file);
    } else {
      try {
        await fs.promises.link(tmp, file); // fails when file exists: no clobbering
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw exists();
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw e;
        // A file system without hard links: check, then rename.
        if (fs.existsSync(file)) throw exists();
        await fs.promises.rename(tmp, file);
      }
    }
  } catch (e) {
    if (e instanceof OutputPathError) throw e;
    throw new OutputPathError(`cannot write ${file}: ${errnoText(e)}`);
  } finally {
    await fs.promises.rm(tmp, { force: true });
  }
}
