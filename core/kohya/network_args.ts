/**
 * kohya's `--network_args` strings (`conv_dim=4`, `block_dims=2,2,...`, `down_lr_weight=sine+.5`,
 * `unit=4`, ...): train_network.py splits each at `=` into a dict of strings, and the network
 * module's `create_network` converts the values it reads with Python's `int()` / `float()`.
 * Here every value is converted up front, so a bad value is reported before anything loads, and
 * an unknown key is an error instead of being silently ignored.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { LR_WEIGHT_PRESETS, type LrWeightPreset, type LrWeightSpec } from "../lora/block_lr.ts";
import type { NetworkModuleName } from "../lora/modules.ts";
import type { NetworkArgs } from "../lora/network_args.ts";

/** The keys each network module reads from `--network_args`. */
export const KNOWN_NETWORK_ARGS: Readonly<Record<NetworkModuleName, readonly string[]>> = {
  "networks.lora": [
    "conv_dim",
    "conv_alpha",
    "block_dims",
    "block_alphas",
    "conv_block_dims",
    "conv_block_alphas",
    "down_lr_weight",
    "mid_lr_weight",
    "up_lr_weight",
    "block_lr_zero_threshold",
    "rank_dropout",
    "module_dropout",
    "dropout",
    "loraplus_lr_ratio",
    "loraplus_unet_lr_ratio",
    "loraplus_text_encoder_lr_ratio",
  ],
  "networks.dylora": [
    "unit",
    "conv_dim",
    "conv_alpha",
    "loraplus_lr_ratio",
    "loraplus_unet_lr_ratio",
    "loraplus_text_encoder_lr_ratio",
  ],
};

/**
 * Keys kohya accepts but whose value its network does not use: networks.lora reads neuron dropout
 * from `--network_dropout`, not `dropout`; DyLoRA gives 3x3 convs `network_alpha`, not
 * `conv_alpha`. They are parsed and recorded (kohya writes them to `ss_network_args`) and listed
 * in {@link NetworkArgs.ignored} so the CLI can say so.
 */
const UNUSED: Readonly<Record<NetworkModuleName, readonly string[]>> = {
  "networks.lora": ["dropout"],
  "networks.dylora": ["conv_alpha"],
};

const RE_INT = /^[+-]?\d+(?:_\d+)*$/;
const RE_FLOAT =
  /^[+-]?(?:(?:\d+(?:_\d+)*)?\.?\d+(?:_\d+)*|\d+(?:_\d+)*\.)(?:[eE][+-]?\d+(?:_\d+)*)?$/;
const RE_FLOAT_SPECIAL = /^[+-]?(?:inf|infinity|nan)$/i;

/** Python's `int(s)` for a decimal string (surrounding whitespace, sign, `_` separators). */
export function pyInt(flag: string, s: string): number {
  const t = s.trim();
  if (!RE_INT.test(t)) {
    throw new LorakitError(`${flag}: expected an integer, found '${s}'`);
  }
  return Number(t.replaceAll("_", ""));
}

/** Python's `float(s)` (decimal or exponent form, `inf`, `nan`, `_` separators). */
export function pyFloat(flag: string, s: string): number {
  const t = s.trim();
  if (RE_FLOAT_SPECIAL.test(t)) {
    const neg = t.startsWith("-");
    return /nan/i.test(t) ? NaN : neg ? -Infinity : Infinity;
  }
  if (!RE_FLOAT.test(t)) {
    throw new LorakitError(`${flag}: expected a number, found '${s}'`);
  }
  return Number(t.replaceAll("_", ""));
}

function intList(flag: string, s: string): number[] {
  return s.split(",").map((v, i) => pyInt(`${flag} (value ${i + 1})`, v));
}

function floatList(flag: string, s: string): number[] {
  return s.split(",").map((v, i) => pyFloat(`${flag} (value ${i + 1})`, v));
}

/** kohya's block-weight lists: empty entries mean 0 (`float(s) if s else 0.0`). */
function weightList(flag: string, s: string): number[] {
  return s.split(",").map((v, i) => (v === "" ? 0.0 : pyFloat(`${flag} (value ${i + 1})`, v)));
}

/**
 * `down_lr_weight` / `up_lr_weight`: a comma-separated list, or a preset with an optional offset
 * (`sine`, `cosine+.5`). kohya treats any value without a comma as a preset name, so a single
 * number must be written with a trailing comma (`0.5,`).
 */
export function parseLrWeight(flag: string, s: string): LrWeightSpec {
  if (s.includes(",")) return weightList(flag, s);
  const tokens = s.split("+");
  const name = tokens[0];
  if (!(LR_WEIGHT_PRESETS as readonly string[]).includes(name) || tokens.length > 2) {
    throw new LorakitError(
      `${flag}: expected one of ${LR_WEIGHT_PRESETS.join(", ")} (optionally '+offset', e.g. ` +
        `'sine+.5') or a comma-separated list of weights (12 per side; SDXL 9), found '${s}'`,
    );
  }
  const offset = tokens.length > 1 ? pyFloat(`${flag} offset`, tokens[1]) : 0.0;
  return { preset: name as LrWeightPreset, offset };
}

/**
 * Parse `--network_args` values (`key=value` each, split at the first `=`) for a network module.
 * An unknown key is a LorakitError naming it and listing the keys the module knows.
 */
export function parseNetworkArgs(
  args: readonly string[],
  module: NetworkModuleName = "networks.lora",
  flag = "--network_args",
): NetworkArgs {
  const known = KNOWN_NETWORK_ARGS[module];
  const raw: Record<string, string> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) {
      throw new LorakitError(`${flag}: expected key=value, found '${arg}'`);
    }
    const key = arg.slice(0, eq);
    if (!known.includes(key)) {
      throw new LorakitError(
        `${flag}: unknown key '${key}' for ${module}; known keys: ${known.join(", ")}`,
      );
    }
    raw[key] = arg.slice(eq + 1);
  }
  const out: NetworkArgs = { raw, ignored: UNUSED[module].filter((k) => k in raw) };
  const f = (key: string) => `${flag} ${key}`;
  for (const [key, value] of Object.entries(raw)) {
    switch (key) {
      case "conv_dim":
        out.convDim = pyInt(f(key), value);
        break;
      case "conv_alpha":
        out.convAlpha = pyFloat(f(key), value);
        break;
      case "block_dims":
        out.blockDims = intList(f(key), value);
        break;
      case "block_alphas":
        out.blockAlphas = floatList(f(key), value);
        break;
      case "conv_block_dims":
        out.convBlockDims = intList(f(key), value);
        break;
      case "conv_block_alphas":
        out.convBlockAlphas = floatList(f(key), value);
        break;
      case "down_lr_weight":
        out.downLrWeight = parseLrWeight(f(key), value);
        break;
      case "up_lr_weight":
        out.upLrWeight = parseLrWeight(f(key), value);
        break;
      case "mid_lr_weight":
        out.midLrWeight = weightList(f(key), value);
        break;
      case "block_lr_zero_threshold":
        out.blockLrZeroThreshold = pyFloat(f(key), value);
        break;
      case "rank_dropout":
        out.rankDropout = pyFloat(f(key), value);
        break;
      case "module_dropout":
        out.moduleDropout = pyFloat(f(key), value);
        break;
      case "dropout":
        out.dropout = pyFloat(f(key), value);
        break;
      case "unit":
        out.unit = pyInt(f(key), value);
        break;
      case "loraplus_lr_ratio":
        out.loraplusLrRatio = pyFloat(f(key), value);
        break;
      case "loraplus_unet_lr_ratio":
        out.loraplusUnetLrRatio = pyFloat(f(key), value);
        break;
      case "loraplus_text_encoder_lr_ratio":
        out.loraplusTextEncoderLrRatio = pyFloat(f(key), value);
        break;
    }
  }
  return out;
}
