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

/**
 * A parser's error as one short line: the first line of its message (a TOML error adds an excerpt
 * of the document below it), with the line and column the error carries, cut to `max` characters
 * (some parsers quote the input at length).
 */
export function oneLineReason(e: unknown, max = 200): string {
  const msg = e instanceof Error ? e.message : String(e);
  let first = msg.split("\n", 1)[0].trim();
  const at = e as { line?: unknown; column?: unknown };
  if (typeof at.line === "number" && typeof at.column === "number") {
    first += ` (line ${at.line}, column ${at.column})`;
  }
  return first.length > max ? `${first.slice(0, max - 3)}...` : first;
}
