/**
 * The typed errors of every ddsjs package. Each carries a stable {@link DdsError.code}; callers branch on the code
 * (or on the class with `instanceof`), never on the message. Messages are one line naming the file, key, shape or
 * argument at fault. The codes are listed in CONTRIBUTING.md (Errors).
 */

/** The stable codes of {@link DdsError}. */
export type DdsErrorCode =
  /** A function was called with a bad argument or option (type, range, shape, an unknown name). */
  | 'INVALID_ARGUMENT'
  /** A model folder, config, tokenizer, checkpoint or translator folder is malformed or not what was expected. */
  | 'MODEL_FORMAT'
  /** A safetensors file or index is malformed, truncated or unsupported. */
  | 'SAFETENSORS_FORMAT'
  /** Weights a module needs are absent from the state dict. */
  | 'MISSING_WEIGHT'
  /** Weights in the state dict have another shape than the module's parameters. */
  | 'SHAPE_MISMATCH'
  /** A file or URL could not be found, read, fetched or written. */
  | 'IO'
  /** An output path cannot be written (missing folder, unknown format, an existing file without force, an input). */
  | 'OUTPUT_PATH'
  /** The running environment lacks what the call needs (a browser API, a Node module, a tfjs backend). */
  | 'UNSUPPORTED'
  /** A training run stopped because its loss or gradient stopped being finite. */
  | 'DIVERGED';

/** The base class of every error a ddsjs library throws on purpose: a one-line message and a stable `code`. */
export class DdsError extends Error {
  /** The stable code of the failure (see {@link DdsErrorCode}). */
  readonly code: DdsErrorCode;

  /**
   * @param code the stable code
   * @param message one line naming what is at fault
   * @param opts.cause the underlying error, when there is one
   */
  constructor(code: DdsErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'DdsError';
    this.code = code;
  }
}

/** A function was called with a bad argument or option: code `'INVALID_ARGUMENT'`. */
export class InvalidArgumentError extends DdsError {
  /** @param message one line naming the function and the argument at fault */
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('INVALID_ARGUMENT', message, opts);
    this.name = 'InvalidArgumentError';
  }
}

/** A model folder, config, tokenizer, checkpoint or translator folder is malformed: code `'MODEL_FORMAT'`. */
export class ModelFormatError extends DdsError {
  /** @param message one line naming the file (and field) at fault */
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('MODEL_FORMAT', message, opts);
    this.name = 'ModelFormatError';
  }
}

/** A file or URL could not be found, read, fetched or written: code `'IO'`. */
export class IoError extends DdsError {
  /** @param message one line naming the file or URL */
  constructor(message: string, opts: { cause?: unknown } = {}) {
    super('IO', message, opts);
    this.name = 'IoError';
  }
}

/** Whether `e` is a {@link DdsError}, by class or (across copies of the package) by its `code`. */
export function isDdsError(e: unknown): e is DdsError {
  if (e instanceof DdsError) return true;
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Error && typeof code === 'string' && DDS_ERROR_CODES.includes(code as DdsErrorCode);
}

/** Every {@link DdsErrorCode}. */
export const DDS_ERROR_CODES: readonly DdsErrorCode[] = [
  'INVALID_ARGUMENT',
  'MODEL_FORMAT',
  'SAFETENSORS_FORMAT',
  'MISSING_WEIGHT',
  'SHAPE_MISMATCH',
  'IO',
  'OUTPUT_PATH',
  'UNSUPPORTED',
  'DIVERGED',
];

/**
 * Error thrown for every problem with a safetensors file: a missing or unreadable file, a malformed
 * or inconsistent header, an unknown tensor name, an unsupported dtype, bad arguments to the writer.
 * Its code is `'SAFETENSORS_FORMAT'`, or `'IO'` where the file could not be found, read or fetched.
 *
 * The message always names the file (and the tensor key when one is at fault); the same values are
 * available as {@link SafetensorsError.file} and {@link SafetensorsError.key}.
 */
export class SafetensorsError extends DdsError {
  /** Path of the file at fault, when known. */
  readonly file?: string;
  /** Name of the tensor (or header key) at fault, when relevant. */
  readonly key?: string;

  /**
   * @param message full human-readable message (should already name the file and key)
   * @param opts.file path of the file at fault
   * @param opts.key tensor/header key at fault
   * @param opts.cause underlying error (e.g. an fs error)
   * @param opts.code `'IO'` for a file that cannot be found or read; default `'SAFETENSORS_FORMAT'`
   */
  constructor(message: string, opts: { file?: string; key?: string; cause?: unknown; code?: 'SAFETENSORS_FORMAT' | 'IO' } = {}) {
    super(opts.code ?? 'SAFETENSORS_FORMAT', message, opts.cause !== undefined ? { cause: opts.cause } : {});
    this.name = 'SafetensorsError';
    if (opts.file !== undefined) this.file = opts.file;
    if (opts.key !== undefined) this.key = opts.key;
  }
}
