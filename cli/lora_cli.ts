/**
 * What the LoRA file tools' command lines share: an argparse parser that returns instead of
 * exiting (resize_images_to_resolution uses it too), kohya's common flags (`--device`,
 * precisions, output and input files, ranks), the `.safetensors`-only output rule, a progress
 * line per module on stderr, and error reporting.
 *
 * @module
 */
import { ArgumentParser } from "../core/deps/argparse.ts";
import { LorakitError } from "../core/errors.ts";
import { checkWritableFile } from "../core/io/fs.ts";
import { reportFailure } from "./report.ts";

/** Thrown instead of calling process.exit, so a tool's `main` can return the code. */
export class ParserExit {
  constructor(readonly status: number) {}
}

/** The part of the (untyped) argparse port the tools use. */
export interface Parser {
  add_argument(...args: unknown[]): unknown;
  parse_args(args: string[]): unknown;
  exit(status?: number, message?: string): never;
}

const ParserClass = ArgumentParser as unknown as new (options: Record<string, unknown>) => Parser;

/** A parser for `lorakit <tool>` whose --help and errors return a code instead of exiting. */
export function makeParser(tool: string, description: string): Parser {
  const p = new ParserClass({ prog: `lorakit ${tool}`, description });
  p.exit = (status = 0, message?: string): never => {
    if (message) Deno.stderr.writeSync(new TextEncoder().encode(message));
    throw new ParserExit(status);
  };
  return p;
}

/** Help of kohya's `--device`, which lorakit accepts and ignores. */
export const DEVICE_HELP =
  "accepted for kohya compatibility and ignored: lorakit computes on the WebGPU adapter " +
  "(a GPU, or a software one), whatever this says (cuda, cpu, ...)";

/** Help text for the precision flags. */
export const PRECISIONS = ["float", "fp16", "bf16"];

/**
 * `--save_precision`, and with `precisionHelp` also `--precision` (the arithmetic's, default
 * float), which is then `--save_precision`'s default; without it the saved file defaults to float.
 */
export function addPrecisionFlags(p: Parser, precisionHelp?: string): void {
  p.add_argument("--save_precision", {
    type: "str",
    default: null,
    choices: PRECISIONS,
    help: precisionHelp === undefined
      ? "precision of the saved file (default float)"
      : "precision of the saved file; default: --precision",
  });
  if (precisionHelp === undefined) return;
  p.add_argument("--precision", {
    type: "str",
    default: "float",
    choices: PRECISIONS,
    help: precisionHelp,
  });
}

/** `--save_to` (the output file), then the merge tools' `--models` and `--ratios`. */
export function addMergeFileFlags(p: Parser): void {
  p.add_argument("--save_to", { type: "str", default: null, help: "output .safetensors file" });
  p.add_argument("--models", { type: "str", nargs: "*", help: "LoRA files (.safetensors)" });
  p.add_argument("--ratios", { type: "float", nargs: "*", help: "one ratio per LoRA file" });
}

/** `--new_rank` (default 4) and `--new_conv_rank` (default: --new_rank). */
export function addNewRankFlags(p: Parser, newRankHelp: string): void {
  p.add_argument("--new_rank", { type: "int", default: 4, help: newRankHelp });
  p.add_argument("--new_conv_rank", {
    type: "int",
    default: null,
    help: "rank of 3x3 conv modules; default: --new_rank",
  });
}

/** `--no_metadata`; `ofWhat` says which files still get the minimum ss_* keys (all by default). */
export function addNoMetadataFlag(p: Parser, ofWhat = ""): void {
  p.add_argument("--no_metadata", {
    action: "store_true",
    help: `do not write modelspec.* metadata (the minimum ss_* keys ${ofWhat}are always written)`,
  });
}

/** A tool's rank counts (rank -> modules) as `"<n> x rank <k>"` by rank, e.g. for its summary. */
export function rankCounts(ranks: Map<number, number>): string {
  return [...ranks].sort((x, y) => x[0] - y[0]).map(([k, n]) => `${n} x rank ${k}`).join(", ");
}

/** The sentence each tool's description ends with about outputs. */
export const SAFETENSORS_ONLY =
  "Outputs are .safetensors only: kohya also writes .ckpt/.pt/.pth via torch.save, which " +
  "lorakit does not support. Outputs are written to a temporary file and renamed, so a failed " +
  "run leaves no partial file.";

/** The SVD sign rule the help texts state. */
export const SIGN_RULE =
  "SVD signs follow lorakit's rule (in each left singular vector the entry of largest " +
  "magnitude is positive), because kohya's quantile clamp depends on the signs its SVD " +
  "routine happens to return.";

/** Reject a non-.safetensors output path, naming the flag. */
export function requireSafetensors(flag: string, path: string | null | undefined): string {
  if (path === null || path === undefined || path === "") {
    throw new LorakitError(`${flag}: expected an output .safetensors path, found none`);
  }
  if (!path.toLowerCase().endsWith(".safetensors")) {
    throw new LorakitError(
      `${flag}: expected a .safetensors path, found '${path}' (.ckpt/.pt/.pth outputs are not ` +
        `supported)`,
    );
  }
  return path;
}

/**
 * A `.safetensors` output path that can be written: {@link requireSafetensors}, then a check in
 * milliseconds, before any input is read, that the file's folder exists and takes files and
 * that no folder is in the way.
 */
export async function writableSafetensors(
  flag: string,
  path: string | null | undefined,
): Promise<string> {
  const out = requireSafetensors(flag, path);
  await checkWritableFile(out, flag);
  return out;
}

/** Seconds between progress lines when stderr is not a terminal (a log file, a CI job). */
const LOG_EVERY_S = 5;
let lastLogged = -Infinity;

/**
 * Progress on stderr: one rewritten line on a terminal; otherwise the first and last steps and at
 * most one line every few seconds between them, so a log does not get a line per layer.
 */
export function progress(done: number, total: number, what: string): void {
  const text = `[${done}/${total}] ${what}`;
  const enc = new TextEncoder();
  if (Deno.stderr.isTerminal()) {
    Deno.stderr.writeSync(enc.encode(`\r\x1b[K${text}${done === total ? "\n" : ""}`));
    return;
  }
  const now = performance.now() / 1000;
  if (done > 1 && done < total && now - lastLogged < LOG_EVERY_S) return;
  lastLogged = now;
  Deno.stderr.writeSync(enc.encode(`${text}\n`));
}

/**
 * Parse, run, and map errors to exit codes (2: bad flags; `failureCode`, default 1: a
 * LorakitError or an OS refusal; 70: an internal error), printed as one line unless debug mode
 * asks for the stack.
 */
export async function runTool<A>(
  parser: Parser,
  args: string[],
  run: (a: A) => Promise<number>,
  failureCode?: number,
): Promise<number> {
  let a: A;
  try {
    a = parser.parse_args(args) as A;
  } catch (e) {
    if (e instanceof ParserExit) return e.status;
    throw e;
  }
  try {
    return await run(a);
  } catch (e) {
    return reportFailure(e, failureCode);
  }
}

/** Seconds since `t0` (a performance.now() value), one decimal. */
export function seconds(t0: number): string {
  return ((performance.now() - t0) / 1000).toFixed(1);
}

/** What merge_lora and sdxl_merge_lora print after merging LoRA files into a checkpoint. */
export function checkpointMergedLine(
  r: {
    modulesApplied: number;
    weightsChanged: number;
    tensorsWritten: number;
    yamlWritten?: string | null;
  },
  files: number,
  saveTo: string,
  t0: number,
): string {
  return `merged ${r.modulesApplied} LoRA modules from ${files} file(s) into ` +
    `${r.weightsChanged} weights; wrote ${r.tensorsWritten} tensors to ${saveTo}` +
    `${r.yamlWritten ? ` and the base's config to ${r.yamlWritten}` : ""} (${seconds(t0)} s)`;
}

/** What merge_lora and sdxl_merge_lora print after merging LoRA files into one (`kind` "" or "SDXL "). */
export function filesMergedLine(
  kind: string,
  r: { modules: number; dim: number | string; alpha: number | string },
  files: number,
  saveTo: string,
  t0: number,
): string {
  return `merged ${files} ${kind}LoRA file(s) into ${r.modules} modules (dim ${r.dim}, alpha ` +
    `${r.alpha}); wrote ${saveTo} (${seconds(t0)} s)`;
}
