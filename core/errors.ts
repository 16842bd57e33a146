/**
 * User-facing errors. A `LorakitError` is a one-paragraph message naming the file, key or flag,
 * what was expected and what was found; the CLI prints its message without a stack trace.
 *
 * @module
 */

/** An error caused by the user's input (files, flags, configs), not by a bug in lorakit. */
export class LorakitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "LorakitError";
  }
}
