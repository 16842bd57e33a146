/**
 * `--output_config`: kohya's `read_config_from_file` with `output_config` set writes the
 * arguments to `--config_file` (`.toml` appended when missing) as a flat TOML table and exits
 * without training. Like kohya it leaves out `config_file`, `output_config` and `wandb_api_key`
 * and every flag still at its default, and refuses to overwrite an existing file. Read back with
 * `--config_file`, the file gives the same arguments.
 *
 * Stricter than kohya, on purpose: the arguments are checked as for a run before anything is
 * written (a config that lorakit would reject is an error now, not at training time), and
 * `--output_config` without `--config_file` is an error instead of silently training.
 *
 * @module
 */
import { ArgumentParser, SUPPRESS } from "../deps/argparse.ts";
import { stringify } from "../deps/smol_toml.ts";
import { LorakitError } from "../errors.ts";
import { checkWritableFile, exists, writeFileAtomic } from "../io/fs.ts";
import {
  type ParseOptions,
  parseTrainArgs,
  type TrainArgs,
  trainFlags,
  type TrainTool,
} from "./train_args.ts";

/** Flags kohya never writes to the output config. */
const NOT_WRITTEN = new Set(["config_file", "output_config", "wandb_api_key"]);

/**
 * The file `--output_config` writes to, or null when the command line does not set
 * `--output_config` (or cannot be parsed; {@link parseTrainArgs} then reports why). The command
 * line is split the way train_network's parser splits it (the same flags, nargs and prefixes).
 */
export function outputConfigTarget(
  argv: string[],
  tool: TrainTool = "train_network",
): string | null {
  // deno-lint-ignore no-explicit-any
  const parser: any = new ArgumentParser({ add_help: false });
  parser.error = (message: string): never => {
    throw new LorakitError(message);
  };
  for (const f of trainFlags(tool)) {
    const opts: Record<string, unknown> = { default: SUPPRESS };
    if (f.type === "bool") opts.action = "store_true";
    else if (f.nargs) opts.nargs = f.nargs;
    parser.add_argument(`--${f.name}`, opts);
  }
  let ns: Record<string, unknown>;
  try {
    ns = parser.parse_known_args(argv)[0];
  } catch (e) {
    if (e instanceof LorakitError) return null;
    throw e;
  }
  if (ns.output_config !== true) return null;
  const file = ns.config_file;
  if (typeof file !== "string" || file === "") {
    throw new LorakitError(
      "--output_config: needs --config_file, the TOML file to write the arguments to",
    );
  }
  return file.endsWith(".toml") ? file : file + ".toml";
}

/** The TOML `--output_config` writes: every written flag that differs from its default. */
export function outputConfigToml(args: TrainArgs, tool: TrainTool = "train_network"): string {
  const values = args as unknown as Record<string, unknown>;
  const table: Record<string, unknown> = {};
  for (const f of trainFlags(tool)) {
    const v = values[f.name];
    if (NOT_WRITTEN.has(f.name) || v === null || v === undefined) continue;
    if (JSON.stringify(v) === JSON.stringify(f.default)) continue;
    if (f.type === "bool" && v === false) continue;
    table[f.name] = v;
  }
  return stringify(table) + "\n";
}

/**
 * Carry out `--output_config` for `argv`: parse and check the arguments (without reading
 * `--config_file`, which is the output), then write them to `path`. Returns `path`.
 */
export async function writeOutputConfig(
  argv: string[],
  path: string,
  options: ParseOptions = {},
): Promise<string> {
  // The last --config_file wins: an empty one keeps the parser from reading the output file.
  const args = await parseTrainArgs([...argv, "--config_file", ""], options);
  if (await exists(path)) {
    throw new LorakitError(
      `--output_config: ${path} already exists; choose a new --config_file (it is not overwritten)`,
    );
  }
  await checkWritableFile(path, "--config_file");
  await writeFileAtomic(path, outputConfigToml(args, options.tool));
  return path;
}
