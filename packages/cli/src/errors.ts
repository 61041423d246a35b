// How the dds command reports a failure: the exit code and the one line it prints, from the error's class and code.
import { DDS_ERROR_CODES, isDdsError, type DdsErrorCode } from '@ddsjs/nn';
import { CliError } from './args';

/** Library error codes that mean the user's input is at fault (every code but a training run's DIVERGED): exit code 2. */
export const USER_ERROR_CODES: readonly DdsErrorCode[] = DDS_ERROR_CODES.filter((c) => c !== 'DIVERGED');

/** Codes whose messages may start with the throwing function's name (`"trainTranslator: "`), which the CLI drops. */
const PREFIXED_CODES: readonly DdsErrorCode[] = ['INVALID_ARGUMENT', 'MODEL_FORMAT', 'IO'];

/** A function name at the start of a message: `fn: `, or `Class.method: ` (not a file name such as `a.json: `). */
const FUNCTION_PREFIX = /^(?:[a-z_$][\w$]*|[A-Z][\w$]*(?:\.[\w$]+)*): /;

/**
 * The exit code for an error `main` caught: 2 for a usage error ({@link CliError}) or a library error whose code
 * says the input is at fault ({@link USER_ERROR_CODES}); 1 for anything else (a bug, a diverged training run).
 */
export function exitCodeFor(e: unknown): 2 | 1 {
  if (e instanceof CliError) return 2;
  return isDdsError(e) && USER_ERROR_CODES.includes(e.code) ? 2 : 1;
}

/**
 * The one line the CLI prints for an error: its message on one line, without the library function's name in front
 * (the user ran a command, not a function).
 */
export function userMessage(e: unknown): string {
  const message = ((e as Error | null)?.message ?? String(e)).split('\n').join(' ');
  return isDdsError(e) && PREFIXED_CODES.includes(e.code) ? message.replace(FUNCTION_PREFIX, '') : message;
}
