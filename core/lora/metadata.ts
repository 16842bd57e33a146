/**
 * LoRA file metadata as kohya writes it: the `ss_*` keys of `train_network.py` and of the LoRA
 * tools, and the `modelspec.*` keys of `library/sai_model_spec.py`. Every value is a string made
 * by Python's `str()` (`True`, `None`, `0.0001`, `5e-05`, `(512, 512)`) or `json.dumps()`, and
 * consumers (A1111's metadata viewer, civitai) parse them as such, so the formatting is Python's.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** Python's `repr(float)` / `str(float)`: shortest round-trip digits, Python's layout. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expText] = Math.abs(x).toExponential().split("e");
  const digits = mant.replace(".", "");
  const e = Number(expText);
  const sign = x < 0 ? "-" : "";
  // Python switches to exponent form below 1e-4 and from 1e16 up.
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  const intPart = digits.slice(0, e + 1).padEnd(e + 1, "0");
  const frac = digits.slice(e + 1);
  return `${sign}${intPart}.${frac === "" ? "0" : frac}`;
}

/** Python's `str(int)`; a non-integer is an error naming `what`. */
export function pyIntStr(what: string, n: number): string {
  if (!Number.isSafeInteger(n)) throw new LorakitError(`${what}: expected an integer, found ${n}`);
  return String(n);
}

function jsonString(s: string): string {
  // json.dumps' default ensure_ascii: everything outside printable ASCII as \uXXXX.
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c >= 0x20 && c < 0x7f) out += ch;
    else {
      for (let i = 0; i < ch.length; i++) {
        out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, "0")}`;
      }
    }
  }
  return out + '"';
}

/**
 * Python's `json.dumps(value)` with default settings (`", "` and `": "` separators, ASCII only).
 * JavaScript numbers that are integers print as Python ints, others as Python floats.
 */
export function pyJsonDumps(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") {
    if (Number.isNaN(value)) return "NaN";
    if (!Number.isFinite(value)) return value > 0 ? "Infinity" : "-Infinity";
    return Number.isSafeInteger(value) ? String(value) : pyFloatRepr(value);
  }
  if (typeof value === "string") return jsonString(value);
  if (Array.isArray(value)) return `[${value.map(pyJsonDumps).join(", ")}]`;
  if (typeof value === "object") {
    const parts = Object.entries(value as Record<string, unknown>).map(([k, v]) =>
      `${jsonString(k)}: ${pyJsonDumps(v)}`
    );
    return `{${parts.join(", ")}}`;
  }
  throw new TypeError(`pyJsonDumps: cannot encode a ${typeof value}`);
}

/** kohya's `sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0`, an SDXL network's base version. */
export const SDXL_BASE_MODEL_VERSION = "sdxl_base_v1-0";

/**
 * kohya's `get_model_version_str_for_sd1_sd2`: `sd_v1`, `sd_v2`, with `_v` for v-prediction;
 * `sdxl_base_v1-0` for SDXL (sdxl_train_network.py's value, whatever the prediction type).
 */
export function baseModelVersion(v2: boolean, vParameterization: boolean, sdxl = false): string {
  if (sdxl) return SDXL_BASE_MODEL_VERSION;
  return `sd_${v2 ? "v2" : "v1"}${vParameterization ? "_v" : ""}`;
}

/** What the LoRA tools (merge, resize, extract, ...) record about the network. */
export interface NetworkMetadataInput {
  v2: boolean;
  vParameterization?: boolean;
  /** An SDXL network (`ss_base_model_version` `sdxl_base_v1-0`; `ss_v2` stays False). */
  sdxl?: boolean;
  /** Default `networks.lora`. */
  networkModule?: string;
  /** A number prints as a Python int; a string (e.g. `Dynamic`) is written as is. */
  networkDim: number | string;
  /** A number prints as a Python float (`2.0`); pass a string for another spelling. */
  networkAlpha: number | string;
  /** Recorded as JSON (`ss_network_args`) when given. */
  networkArgs?: Record<string, unknown> | null;
}

/**
 * The `ss_*` keys kohya's LoRA tools set: `ss_network_module`, `ss_network_dim`,
 * `ss_network_alpha`, `ss_v2`, `ss_base_model_version`, and `ss_network_args` when given. These
 * are also what A1111 uses to tell SD1 from SD2 files.
 */
export function networkMetadata(input: NetworkMetadataInput): Record<string, string> {
  const dim = typeof input.networkDim === "number"
    ? pyIntStr("ss_network_dim", input.networkDim)
    : input.networkDim;
  const alpha = typeof input.networkAlpha === "number"
    ? pyFloatRepr(input.networkAlpha)
    : input.networkAlpha;
  const out: Record<string, string> = {
    ss_network_module: input.networkModule ?? "networks.lora",
    ss_network_dim: dim,
    ss_network_alpha: alpha,
    ss_v2: input.v2 ? "True" : "False",
    ss_base_model_version: baseModelVersion(
      input.v2,
      input.vParameterization ?? false,
      input.sdxl ?? false,
    ),
  };
  if (input.networkArgs != null) out.ss_network_args = pyJsonDumps(input.networkArgs);
  return out;
}

/** Inputs of {@link modelSpecMetadata} (kohya's `sai_model_spec.build_metadata` for a LoRA). */
export interface ModelSpecInput {
  v2: boolean;
  vParameterization?: boolean;
  /**
   * An SDXL LoRA: architecture `stable-diffusion-xl-v1-base/lora`, implementation Stability's
   * generative-models (kohya's `IMPL_STABILITY_AI` for SDXL LoRAs), default resolution 1024.
   */
  sdxl?: boolean;
  /** Seconds since the epoch (Python `time.time()`). */
  timestamp: number;
  /** Default `LoRA@<timestamp>`. */
  title?: string;
  /** [width, height] or one side; default 512x512 (768x768 for SD2 v-prediction, 1024 SDXL). */
  resolution?: number | [number, number];
  author?: string;
  description?: string;
  license?: string;
  tags?: string;
  /** Comma-joined titles of merged inputs. */
  mergedFrom?: string;
  /** [min, max] training timesteps. */
  timesteps?: [number, number];
  clipSkip?: number;
  /** Default `lorakit`; kohya writes `sd-scripts/<commit>`. */
  implementationVersion?: string;
  /** Further `modelspec.*` entries (`trigger_phrase`, `usage_hint`, ...), key without prefix. */
  extra?: Record<string, string>;
}

/** `YYYY-MM-DDTHH:MM:SS` in local time, as Python's `datetime.fromtimestamp(t).isoformat()`. */
export function isoLocalSeconds(timestamp: number): string {
  const d = new Date(Math.trunc(timestamp) * 1000);
  const two = (n: number) => String(n).padStart(2, "0");
  return `${String(d.getFullYear()).padStart(4, "0")}-${two(d.getMonth() + 1)}-${
    two(d.getDate())
  }T${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** The `modelspec.*` keys kohya writes into an SD 1.x/2.x or SDXL LoRA (ModelSpec 1.0.1). */
export function modelSpecMetadata(input: ModelSpecInput): Record<string, string> {
  const vPred = input.vParameterization ?? false;
  const sdxl = input.sdxl ?? false;
  const arch = sdxl
    ? "stable-diffusion-xl-v1-base"
    : input.v2
    ? (vPred ? "stable-diffusion-v2-768-v" : "stable-diffusion-v2-512")
    : "stable-diffusion-v1";
  const reso = input.resolution === undefined
    ? (sdxl ? [1024, 1024] : input.v2 && vPred ? [768, 768] : [512, 512])
    : typeof input.resolution === "number"
    ? [input.resolution, input.resolution]
    : input.resolution;
  const out: Record<string, string> = {
    "modelspec.sai_model_spec": "1.0.1",
    "modelspec.architecture": `${arch}/lora`,
    "modelspec.implementation": sdxl
      ? "https://github.com/Stability-AI/generative-models"
      : "diffusers",
    "modelspec.title": input.title ?? `LoRA@${pyFloatRepr(input.timestamp)}`,
    "modelspec.resolution": `${reso[0]}x${reso[1]}`,
    "modelspec.date": isoLocalSeconds(input.timestamp),
    "modelspec.prediction_type": vPred ? "v" : "epsilon",
    "modelspec.implementation_version": input.implementationVersion ?? "lorakit",
  };
  const optional: [string, string | undefined][] = [
    ["author", input.author],
    ["description", input.description],
    ["license", input.license],
    ["tags", input.tags],
    ["merged_from", input.mergedFrom],
    ["timestep_range", input.timesteps && `${input.timesteps[0]},${input.timesteps[1]}`],
    ["encoder_layer", input.clipSkip === undefined ? undefined : String(input.clipSkip)],
  ];
  for (const [k, v] of optional) if (v !== undefined) out[`modelspec.${k}`] = v;
  for (const [k, v] of Object.entries(input.extra ?? {})) {
    out[k.startsWith("modelspec.") ? k : `modelspec.${k}`] = v;
  }
  return out;
}

/** Python type of an `ss_*` value, which decides its `str()` form. */
type PyType = "int" | "float" | "bool" | "str" | "json" | "tuple";

/** `undefined`: required; `null`: Python None. */
type Default = number | string | boolean | null | undefined;

/**
 * The `ss_*` keys of kohya's `train_network.py` for SD 1.x/2.x (key without `ss_`, Python type,
 * argparse default), in kohya's order. `always` keys are written on every run; the others only
 * when given (dataset summaries, model names and hashes, per-save step counters).
 */
export const TRAINING_METADATA_KEYS: readonly (readonly [string, PyType, Default, boolean])[] = [
  ["session_id", "int", undefined, true],
  ["training_started_at", "float", undefined, true],
  ["output_name", "str", null, true],
  ["learning_rate", "float", 2e-6, true],
  ["text_encoder_lr", "float", null, true],
  ["unet_lr", "float", null, true],
  ["num_train_images", "int", undefined, true],
  ["num_validation_images", "int", 0, true],
  ["num_reg_images", "int", 0, true],
  ["num_batches_per_epoch", "int", undefined, true],
  ["num_epochs", "int", undefined, true],
  ["gradient_checkpointing", "bool", false, true],
  ["gradient_accumulation_steps", "int", 1, true],
  ["max_train_steps", "int", 1600, true],
  ["lr_warmup_steps", "int", 0, true],
  ["lr_scheduler", "str", "constant", true],
  ["network_module", "str", "networks.lora", true],
  ["network_dim", "int", null, true],
  ["network_alpha", "float", 1.0, true],
  ["network_dropout", "float", null, true],
  ["mixed_precision", "str", "no", true],
  ["full_fp16", "bool", false, true],
  ["v2", "bool", false, true],
  ["base_model_version", "str", undefined, true],
  ["clip_skip", "int", null, true],
  ["max_token_length", "int", null, true],
  ["cache_latents", "bool", false, true],
  ["seed", "int", null, true],
  ["lowram", "bool", false, true],
  ["noise_offset", "float", null, true],
  ["multires_noise_iterations", "int", null, true],
  ["multires_noise_discount", "float", 0.3, true],
  ["adaptive_noise_scale", "float", null, true],
  ["zero_terminal_snr", "bool", false, true],
  ["training_comment", "str", null, true],
  ["sd_scripts_commit_hash", "str", "lorakit", true],
  ["optimizer", "str", undefined, true],
  ["max_grad_norm", "float", 1.0, true],
  ["caption_dropout_rate", "float", 0.0, true],
  ["caption_dropout_every_n_epochs", "int", null, true],
  ["caption_tag_dropout_rate", "float", 0.0, true],
  ["face_crop_aug_range", "str", null, true],
  ["prior_loss_weight", "float", 1.0, true],
  ["min_snr_gamma", "float", null, true],
  ["scale_weight_norms", "float", null, true],
  ["ip_noise_gamma", "float", null, true],
  ["debiased_estimation", "bool", false, true],
  ["noise_offset_random_strength", "bool", false, true],
  ["ip_noise_gamma_random_strength", "bool", false, true],
  ["loss_type", "str", "l2", true],
  ["huber_schedule", "str", "snr", true],
  ["huber_scale", "float", 1.0, true],
  ["huber_c", "float", 0.1, true],
  ["fp8_base", "bool", false, true],
  ["fp8_base_unet", "bool", false, true],
  ["validation_seed", "int", null, true],
  ["validation_split", "float", 0.0, true],
  ["max_validation_steps", "int", null, true],
  ["validate_every_n_epochs", "int", null, true],
  ["validate_every_n_steps", "int", null, true],
  ["resize_interpolation", "str", null, true],
  // Without a dataset config file (train_data_dir / reg_data_dir):
  ["batch_size_per_device", "int", null, false],
  ["total_batch_size", "int", null, false],
  ["resolution", "tuple", null, false],
  ["color_aug", "bool", null, false],
  ["flip_aug", "bool", null, false],
  ["random_crop", "bool", null, false],
  ["shuffle_caption", "bool", null, false],
  ["enable_bucket", "bool", null, false],
  ["bucket_no_upscale", "bool", null, false],
  ["min_bucket_reso", "int", null, false],
  ["max_bucket_reso", "int", null, false],
  ["keep_tokens", "int", null, false],
  ["reg_dataset_dirs", "json", null, false],
  ["bucket_info", "json", null, false],
  // With a dataset config file:
  ["datasets", "json", null, false],
  // Both:
  ["dataset_dirs", "json", null, false],
  ["tag_frequency", "json", null, false],
  ["network_args", "json", null, false],
  ["sd_model_hash", "str", null, false],
  ["new_sd_model_hash", "str", null, false],
  ["sd_model_name", "str", null, false],
  ["vae_hash", "str", null, false],
  ["new_vae_hash", "str", null, false],
  ["vae_name", "str", null, false],
  // Set at each save:
  ["training_finished_at", "float", null, false],
  ["steps", "int", null, false],
  ["epoch", "int", null, false],
];

/** Training settings by `ss_*` key without the prefix (`learning_rate`, `network_dim`, ...). */
export type TrainingMetadataInput = Record<string, unknown>;

function pyStr(key: string, type: PyType, v: unknown): string {
  const where = `metadata ss_${key}`;
  if (v === null) return "None";
  switch (type) {
    case "json":
      return pyJsonDumps(v);
    case "tuple":
      if (!Array.isArray(v)) throw new LorakitError(`${where}: expected a list, found ${v}`);
      return `(${v.map((x) => pyStr(key, "int", x)).join(", ")}${v.length === 1 ? "," : ""})`;
    case "bool":
      if (typeof v !== "boolean") {
        throw new LorakitError(`${where}: expected a boolean, found ${v}`);
      }
      return v ? "True" : "False";
    case "str":
      if (typeof v !== "string") throw new LorakitError(`${where}: expected a string, found ${v}`);
      return v;
    case "int":
    case "float":
      if (typeof v !== "number") throw new LorakitError(`${where}: expected a number, found ${v}`);
      return type === "int" ? pyIntStr(where, v) : pyFloatRepr(v);
  }
}

/**
 * The `ss_*` map kohya's `train_network.py` writes, from training settings keyed like
 * {@link TRAINING_METADATA_KEYS}. Settings not given take kohya's argparse defaults; required
 * ones (session id, start time, image/batch/epoch counts, base model version, optimizer) must be
 * given. An unknown key is an error (it would otherwise silently vanish from the file).
 */
export function trainingMetadata(input: TrainingMetadataInput): Record<string, string> {
  const known = new Set(TRAINING_METADATA_KEYS.map((k) => k[0]));
  for (const k of Object.keys(input)) {
    if (!known.has(k)) {
      throw new LorakitError(
        `training metadata: unknown key '${k}'; known keys: ${[...known].join(", ")}`,
      );
    }
  }
  const out: Record<string, string> = {};
  for (const [key, type, def, always] of TRAINING_METADATA_KEYS) {
    const given = Object.hasOwn(input, key) && input[key] !== undefined;
    if (!given && !always) continue;
    if (!given && def === undefined) {
      throw new LorakitError(`training metadata: expected a value for ss_${key}, found none`);
    }
    out[`ss_${key}`] = pyStr(key, type, given ? input[key] : def);
  }
  return out;
}
