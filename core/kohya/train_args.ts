/**
 * train_network's command line, parsed as kohya's `setup_parser()` declares it (npm `argparse`,
 * Python argparse semantics: the same names, types, nargs, defaults and choices, unique prefixes
 * of long flags accepted), then `--config_file` merged the way kohya's `read_config_from_file`
 * does: the TOML's sections are flattened into one table, its values replace the defaults, and
 * flags given on the command line win over the TOML.
 *
 * Stricter than kohya, on purpose: an unknown flag or TOML key is an error naming it (with the
 * nearest known flag), a TOML value of the wrong type is an error naming the key and the file,
 * and flags lorakit cannot honour are either accepted with a one-time note (no effect here) or
 * rejected when set — see `support` in the flag tables.
 *
 * @module
 */
import { ArgumentParser, SUPPRESS } from "../deps/argparse.ts";
import { parse as parseToml } from "../deps/smol_toml.ts";
import { LorakitError, oneLineReason } from "../errors.ts";
import { readText } from "../io/fs.ts";
import { datasetArgsToConfig } from "./dataset_config.ts";
import { describeValue, nearestName } from "./dataset_schema.ts";
import { DATA_FLAGS } from "./train_args_flags_data.ts";
import { TRAINING_FLAGS } from "./train_args_flags_training.ts";
import { SDXL_FLAGS } from "./train_args_flags_sdxl.ts";
import { type ArgsOf, type FlagSpec, pyFloat, pyInt, pyIntOrFloat } from "./train_args_types.ts";

/** Every train_network flag, in kohya's order. */
export const TRAIN_FLAGS: readonly FlagSpec[] = [...DATA_FLAGS, ...TRAINING_FLAGS];

/** The parsed train_network arguments, one field per kohya flag (kohya's names). */
export type TrainArgs = ArgsOf<typeof DATA_FLAGS> & ArgsOf<typeof TRAINING_FLAGS>;

/** sdxl_train_network's flags: train_network's and SDXL's own. */
export const SDXL_TRAIN_FLAGS: readonly FlagSpec[] = [...TRAIN_FLAGS, ...SDXL_FLAGS];

/** The parsed sdxl_train_network arguments (train_network's with the SDXL flags). */
export type SdxlTrainArgs = TrainArgs & ArgsOf<typeof SDXL_FLAGS>;

/** The training tools sharing this parser. */
export type TrainTool = "train_network" | "sdxl_train_network";

/** A tool's flag table. */
export function trainFlags(tool: TrainTool = "train_network"): readonly FlagSpec[] {
  return tool === "sdxl_train_network" ? SDXL_TRAIN_FLAGS : TRAIN_FLAGS;
}

/** `network_module` values lorakit implements. */
export const NETWORK_MODULES = ["networks.lora", "networks.dylora"];

/** Thrown by {@link parseTrainArgs} for `-h`/`--help`; `text` is the help to print. */
export class HelpRequested extends Error {
  constructor(readonly text: string) {
    super("help requested");
    this.name = "HelpRequested";
  }
}

/** Options of {@link parseTrainArgs}. */
export interface ParseOptions {
  /** Receives each note about an accepted no-op flag once (default: console.warn, deduplicated). */
  onNote?: (note: string) => void;
  /** Reads the `--config_file` text (default: the file, as UTF-8); lets it come from memory. */
  readText?: (path: string) => Promise<string>;
  /** Which tool's command line (default train_network). */
  tool?: TrainTool;
}

const printed = new Set<string>();
const defaultNote = (note: string) => {
  if (!printed.has(note)) {
    printed.add(note);
    console.warn(`note: ${note}`);
  }
};

const specs = (tool: TrainTool) => new Map(trainFlags(tool).map((f) => [f.name, f]));

// Named like Python's types so argparse says "invalid int value: 'x'".
const CONVERT = {
  int: Object.defineProperty((s: string) => pyInt(s), "name", { value: "int" }),
  float: Object.defineProperty((s: string) => pyFloat(s), "name", { value: "float" }),
  int_or_float: Object.defineProperty((s: string) => pyIntOrFloat(s), "name", {
    value: "int_or_float",
  }),
};

// deno-lint-ignore no-explicit-any
type Parser = any;

function buildParser(suppressDefaults: boolean, tool: TrainTool = "train_network"): Parser {
  const parser: Parser = new ArgumentParser({
    prog: `lorakit ${tool}`,
    description: tool === "sdxl_train_network"
      ? "Train a LoRA for SDXL with kohya's sdxl_train_network flags. Where kohya multiplies " +
        "text encoder 2's pooled state by the stored text_projection untransposed, lorakit uses " +
        "it as SDXL files, diffusers and ComfyUI do (pooled = x @ P), so the pooled vector of " +
        "the size-conditioning input differs from kohya's."
      : "Train a LoRA for Stable Diffusion 1.x/2.x with kohya's train_network flags.",
    add_help: false,
  });
  parser.error = (message: string): never => {
    throw new LorakitError(`${tool}: ${message}`);
  };
  parser.add_argument("-h", "--help", { action: "store_true", help: "show this help and exit" });
  for (const f of trainFlags(tool)) {
    const opts: Record<string, unknown> = { help: helpOf(f) };
    if (f.type === "bool") opts.action = "store_true";
    else {
      if (f.type !== "str") opts.type = CONVERT[f.type];
      if (f.nargs) opts.nargs = f.nargs;
      if (f.choices) opts.choices = f.choices;
    }
    opts.default = suppressDefaults ? SUPPRESS : f.default;
    parser.add_argument(`--${f.name}`, opts);
  }
  return parser;
}

function helpOf(f: FlagSpec): string {
  const d = f.type === "bool" || f.default === null ? "" : ` (default: ${f.default})`;
  const s = f.support === "noop"
    ? ` [accepted, no effect in lorakit: ${f.note}]`
    : f.support === "reject"
    ? ` [not supported by lorakit: ${f.note}]`
    : "";
  return (f.help + d + s).replace(/%/g, "%%");
}

/** The `--help` text. */
export function trainHelpText(tool: TrainTool = "train_network"): string {
  return buildParser(false, tool).format_help();
}

/**
 * Parse a train_network command line (without the program name), merge `--config_file`, check
 * the result. Errors are LorakitErrors naming the flag (and the file for TOML keys).
 */
export async function parseTrainArgs(
  argv: string[],
  options: ParseOptions = {},
): Promise<TrainArgs> {
  const tool = options.tool ?? "train_network";
  const parser = buildParser(false, tool);
  const [ns, extras] = parser.parse_known_args(argv);
  if (ns.help) throw new HelpRequested(parser.format_help());
  if (extras.length > 0) throw unknownFlag(extras, tool);
  const args: Record<string, unknown> = { ...ns };
  delete args.help;
  const origin: Record<string, string> = {};
  for (const k of Object.keys(args)) origin[k] = "the default";
  const given = buildParser(true, tool).parse_known_args(argv)[0];
  for (const k of Object.keys(given)) origin[k] = "the command line";
  if (typeof args.config_file === "string" && args.config_file !== "") {
    const path = args.config_file.endsWith(".toml") ? args.config_file : args.config_file + ".toml";
    const text = options.readText ?? readText;
    for (const [key, value] of Object.entries(await readConfigFile(path, text, tool))) {
      if (key in given) continue; // the command line wins
      args[key] = value;
      origin[key] = path;
    }
  }
  return checkTrainArgs(args, origin, options.onNote ?? defaultNote, tool);
}

function unknownFlag(extras: string[], tool: TrainTool): LorakitError {
  const first = extras.find((e) => e.startsWith("-")) ?? extras[0];
  if (!first.startsWith("-")) {
    return new LorakitError(
      `${tool}: unexpected argument ${JSON.stringify(first)}; ${tool} takes only --flags`,
    );
  }
  const name = first.replace(/^-+/, "").split("=")[0];
  const near = nearestName(name, specs(tool).keys());
  return new LorakitError(
    `${tool}: unknown flag --${name}` + (near ? ` (did you mean --${near}?)` : "") +
      `; kohya's ${tool} has no such flag`,
  );
}

/**
 * kohya's `read_config_from_file`: a TOML whose tables are flattened one level (a key's last
 * occurrence wins). Each key must be a known flag and its value of the flag's type.
 */
export async function readConfigFile(
  path: string,
  read: (path: string) => Promise<string> = readText,
  tool: TrainTool = "train_network",
): Promise<Record<string, unknown>> {
  const spec = specs(tool);
  let raw: Record<string, unknown>;
  try {
    raw = parseToml(await read(path)) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof LorakitError) throw new LorakitError(`--config_file: ${e.message}`);
    throw new LorakitError(`--config_file ${path}: not valid TOML: ${oneLineReason(e)}`);
  }
  const flat: [string, unknown, string][] = [];
  for (const [section, value] of Object.entries(raw)) {
    if (
      value !== null && typeof value === "object" && !Array.isArray(value) &&
      !(value instanceof Date)
    ) {
      for (const [k, v] of Object.entries(value)) flat.push([k, v, `[${section}] `]);
    } else flat.push([section, value, ""]);
  }
  const out: Record<string, unknown> = {};
  for (const [key, value, where] of flat) {
    const flag = spec.get(key);
    if (flag === undefined) {
      const near = nearestName(key, spec.keys());
      throw new LorakitError(
        `${path}: ${where}${key}: unknown key; it is not a ${tool} flag` +
          (near ? ` (did you mean ${near}?)` : ""),
      );
    }
    out[key] = tomlValue(flag, value, `${path}: ${where}${key}`);
  }
  return out;
}

function tomlValue(spec: FlagSpec, value: unknown, where: string): unknown {
  const elem = (v: unknown): unknown => {
    switch (spec.type) {
      case "bool":
        return typeof v === "boolean" ? v : undefined;
      case "str":
        // A number for a text flag (e.g. resolution = 512) means its decimal text.
        return typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined;
      case "int":
        return typeof v === "number" && Number.isInteger(v) ? v : undefined;
      case "float":
        return typeof v === "number" ? v : undefined;
      case "int_or_float":
        return typeof v === "number"
          ? v
          : typeof v === "string"
          ? safe(() => pyIntOrFloat(v))
          : undefined;
    }
  };
  let out: unknown;
  if (spec.nargs === "*") {
    if (Array.isArray(value)) {
      const items = value.map(elem);
      out = items.every((i) => i !== undefined) ? items : undefined;
    } else if (typeof value === "number" && spec.type !== "str") out = [value];
  } else out = elem(value);
  const want = spec.nargs === "*" ? `an array of ${typeWord(spec)}s` : typeWord(spec);
  if (out === undefined) {
    throw new LorakitError(`${where}: expected ${want}, found ${describeValue(value)}`);
  }
  if (spec.choices && !spec.nargs && !spec.choices.includes(out as string | number)) {
    throw new LorakitError(
      `${where}: expected one of ${spec.choices.join(", ")}, found ${describeValue(value)}`,
    );
  }
  return out;
}

function safe<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

function typeWord(spec: FlagSpec): string {
  return {
    bool: "boolean",
    str: "string",
    int: "integer",
    float: "number",
    int_or_float: "number",
  }[spec.type];
}

function checkTrainArgs(
  args: Record<string, unknown>,
  origin: Record<string, string>,
  onNote: (note: string) => void,
  tool: TrainTool,
): TrainArgs {
  const fail = (flag: string, what: string): never => {
    throw new LorakitError(`--${flag} (from ${origin[flag] ?? "the command line"}): ${what}`);
  };
  for (const f of trainFlags(tool)) {
    const v = args[f.name];
    const isDefault = JSON.stringify(v) === JSON.stringify(f.default) ||
      (f.type === "bool" && v === false) || (f.default === null && v === null);
    if (isDefault) continue;
    if (f.support === "reject") fail(f.name, `not supported by lorakit: ${f.note}`);
    if (f.support === "noop") {
      onNote(`--${f.name} is accepted but has no effect in lorakit: ${f.note}`);
    }
  }
  // kohya's prepare_dataset_args: the old spelling overrides the new one.
  if (typeof args.caption_extention === "string") {
    args.caption_extension = args.caption_extention;
    args.caption_extention = null;
  }
  try {
    datasetArgsToConfig(args);
  } catch (e) {
    if (e instanceof LorakitError) {
      const flag = e.message.startsWith("--face") ? "face_crop_aug_range" : "resolution";
      fail(flag, e.message.replace(/^--\w+: /, ""));
    }
    throw e;
  }
  const module = args.network_module;
  if (module === null) fail("network_module", "required; use networks.lora (or networks.dylora)");
  if (!NETWORK_MODULES.includes(module as string)) {
    fail(
      "network_module",
      `lorakit implements ${NETWORK_MODULES.join(" and ")}, found ${JSON.stringify(module)}`,
    );
  }
  const dim = args.network_dim as number | null;
  if (dim !== null && dim < 1) {
    fail("network_dim", `the rank must be at least 1, found ${dim} (kohya divides alpha by it)`);
  }
  const dropout = args.network_dropout as number | null;
  if (dropout !== null && !(dropout >= 0 && dropout <= 1)) {
    fail("network_dropout", `expected a probability in [0, 1], found ${dropout}`);
  }
  if (args.network_train_unet_only && args.network_train_text_encoder_only) {
    fail(
      "network_train_text_encoder_only",
      "cannot be combined with --network_train_unet_only (nothing would be trained)",
    );
  }
  if (args.mixed_precision === "bf16") {
    fail("mixed_precision", "bf16 is not available: WebGPU has no bf16 arithmetic; use fp16 or no");
  }
  if (typeof args.optimizer_type === "string" && args.optimizer_type.includes(".")) {
    fail(
      "optimizer_type",
      `lorakit cannot import the Python class ${args.optimizer_type}; use a built-in optimizer name`,
    );
  }
  for (const flag of ["train_batch_size", "max_train_steps", "gradient_accumulation_steps"]) {
    if ((args[flag] as number) < 1) fail(flag, `must be at least 1, found ${args[flag]}`);
  }
  // kohya's verify_training_args.
  if (args.adaptive_noise_scale !== null && args.noise_offset === null) {
    fail("adaptive_noise_scale", "requires --noise_offset");
  }
  if (args.scale_v_pred_loss_like_noise_pred && !args.v_parameterization) {
    fail("scale_v_pred_loss_like_noise_pred", "can be enabled only with --v_parameterization");
  }
  if (args.v_pred_like_loss !== null && args.v_parameterization) {
    fail("v_pred_like_loss", "cannot be enabled with --v_parameterization");
  }
  if (tool === "sdxl_train_network") checkSdxlArgs(args, fail, onNote);
  for (const flag of ["sample_every_n_epochs", "sample_every_n_steps"]) {
    const v = args[flag] as number | null;
    if (v !== null && v <= 0) {
      onNote(`--${flag} is ${v} (<= 0), so it is disabled, as in kohya`);
      args[flag] = null;
    }
  }
  return args as unknown as TrainArgs;
}

/** kohya's `verify_sdxl_training_args` and sdxl_train_network's `assert_extra_args`. */
function checkSdxlArgs(
  args: Record<string, unknown>,
  fail: (flag: string, what: string) => never,
  onNote: (note: string) => void,
): void {
  if (args.v2) fail("v2", "cannot be enabled in SDXL training (as in kohya)");
  if (args.clip_skip !== null) {
    onNote("--clip_skip has no effect on SDXL: it always conditions on the penultimate layers");
  }
  if (args.cache_text_encoder_outputs_to_disk && !args.cache_text_encoder_outputs) {
    onNote(
      "--cache_text_encoder_outputs_to_disk turns --cache_text_encoder_outputs on, as in kohya",
    );
    args.cache_text_encoder_outputs = true;
  }
  if (args.cache_text_encoder_outputs && !args.network_train_unet_only) {
    fail(
      "cache_text_encoder_outputs",
      "needs --network_train_unet_only: the text encoders cannot be trained from cached outputs",
    );
  }
}
