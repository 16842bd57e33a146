/**
 * How the command line reports a failure. A user-facing error (a LorakitError, no GPU, an OS
 * refusal such as a missing file or a read-only disk) is one line, `error: <message>`; anything
 * else is a bug in lorakit and says so in one line too. The stack trace is printed only in debug
 * mode (`--debug` anywhere on the command line, or `LORAKIT_DEBUG=1`), where it helps a report.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";

/** Exit code of a failure caused by the input (flags, files, the disk). */
export const EXIT_USER_ERROR = 1;
/** Exit code of an internal error, a bug in lorakit (BSD's EX_SOFTWARE). */
export const EXIT_INTERNAL_ERROR = 70;

/** The global flag that turns debug mode on. */
export const DEBUG_FLAG = "--debug";
/** The environment variable that turns debug mode on (any value but "", "0" or "false"). */
export const DEBUG_ENV = "LORAKIT_DEBUG";

let debugFlag = false;

/** Turn debug mode on for this process (the CLI does so on `--debug`). */
export function setDebug(on: boolean): void {
  debugFlag = on;
}

/** True when stack traces should be printed. */
export function debugMode(): boolean {
  if (debugFlag) return true;
  let v: string | undefined;
  try {
    v = Deno.env.get(DEBUG_ENV);
  } catch {
    // Without --allow-env the variable cannot be read; the flag still works.
    return false;
  }
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false";
}

/**
 * Remove every `--debug` from a command line, so that the tools' own parsers never see it;
 * returns the remaining arguments and whether it was there. Arguments after `--` are left as
 * they are.
 */
export function takeDebugFlag(argv: string[]): { args: string[]; debug: boolean } {
  const end = argv.indexOf("--");
  const head = end < 0 ? argv : argv.slice(0, end);
  const tail = end < 0 ? [] : argv.slice(end);
  const args = head.filter((a) => a !== DEBUG_FLAG);
  return { args: [...args, ...tail], debug: args.length !== head.length };
}

/** Deno's errors for refusals of the file system, whose messages name the path. */
const OS_ERRORS = [
  Deno.errors.NotFound,
  Deno.errors.PermissionDenied,
  Deno.errors.AlreadyExists,
  Deno.errors.IsADirectory,
  Deno.errors.NotADirectory,
  Deno.errors.FilesystemLoop,
  Deno.errors.NotCapable,
];

/**
 * True for an error of the input rather than of lorakit: a LorakitError, the GPU-less machine's
 * NoGpuError, or an OS error (EACCES, EROFS, ENOSPC, ENOENT, ...; Deno raises the rarer ones as
 * plain Errors whose message ends in "(os error N): <call> '<path>'").
 */
export function isUserError(e: unknown): e is Error {
  if (e instanceof LorakitError) return true;
  if (!(e instanceof Error)) return false;
  if (e.name === "NoGpuError") return true;
  if (OS_ERRORS.some((c) => e instanceof c)) return true;
  return /\(os error \d+\)/.test(e.message);
}

/** Messages longer than this quote the input at length (a 5,000-character key): cut the middle. */
const MAX_MESSAGE = 600;

/** `text` with its middle left out when it is longer than {@link MAX_MESSAGE}. */
export function shortened(text: string): string {
  if (text.length <= MAX_MESSAGE) return text;
  const head = text.slice(0, 400), tail = text.slice(-150);
  return `${head} ... [${text.length - 550} characters left out] ... ${tail}`;
}

function firstLine(text: string): string {
  const nl = text.indexOf("\n");
  return nl < 0 ? text : text.slice(0, nl);
}

/** The stack of `e` (which starts with its message), or what can be said of a non-Error. */
function stackOf(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return String(e);
}

/**
 * The lines that report `e` on stderr: `error: <message>` for a user error, the internal-error
 * line otherwise; with `debug`, the stack follows (or replaces the short line of a bug).
 */
export function failureText(e: unknown, debug: boolean): string {
  if (isUserError(e)) {
    return debug ? `error: ${e.message}\n${stackOf(e)}` : `error: ${shortened(e.message)}`;
  }
  const message = e instanceof Error ? `${e.name}: ${firstLine(e.message)}` : String(e);
  if (debug) return `internal error in lorakit (a bug, please report it):\n${stackOf(e)}`;
  return `internal error in lorakit (a bug, please report it): ${message}; run again with ` +
    `${DEBUG_FLAG} for the stack trace`;
}

/** Print `e` on stderr and return its exit code; `userCode` is the code of a user error. */
export function reportFailure(e: unknown, userCode: number = EXIT_USER_ERROR): number {
  console.error(failureText(e, debugMode()));
  return isUserError(e) ? userCode : EXIT_INTERNAL_ERROR;
}
