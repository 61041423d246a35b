/**
 * Error thrown for every problem with a safetensors file: a missing or unreadable file, a malformed
 * or inconsistent header, an unknown tensor name, an unsupported dtype, bad arguments to the writer.
 *
 * The message always names the file (and the tensor key when one is at fault); the same values are
 * available as {@link SafetensorsError.file} and {@link SafetensorsError.key}.
 */
export class SafetensorsError extends Error {
  /** Path of the file at fault, when known. */
  readonly file?: string;
  /** Name of the tensor (or header key) at fault, when relevant. */
  readonly key?: string;

  /**
   * @param message full human-readable message (should already name the file and key)
   * @param opts.file path of the file at fault
   * @param opts.key tensor/header key at fault
   * @param opts.cause underlying error (e.g. an fs error)
   */
  constructor(message: string, opts: { file?: string; key?: string; cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.name = 'SafetensorsError';
    if (opts.file !== undefined) this.file = opts.file;
    if (opts.key !== undefined) this.key = opts.key;
  }
}
