/**
 * Block learning-rate weights (kohya's `down_lr_weight` / `mid_lr_weight` / `up_lr_weight`,
 * `get_block_lr_weight`) and the learning rate `prepare_optimizer_params` gives every LoRA
 * parameter.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import {
  NUM_DOWN_BLOCKS,
  NUM_MID_BLOCKS,
  NUM_TOTAL_BLOCKS,
  SDXL_NUM_DOWN_BLOCKS,
  SDXL_NUM_MID_BLOCKS,
  SDXL_NUM_TOTAL_BLOCKS,
} from "./blocks.ts";
import type { LoraModuleSpec } from "./modules.ts";

/** kohya's named block-weight curves. */
export const LR_WEIGHT_PRESETS = ["cosine", "sine", "linear", "reverse_linear", "zeros"] as const;
/** One of {@link LR_WEIGHT_PRESETS}. */
export type LrWeightPreset = typeof LR_WEIGHT_PRESETS[number];

/** A down/up weight setting: a preset curve plus an offset (`sine+.5`), or explicit values. */
export type LrWeightSpec = { preset: LrWeightPreset; offset: number } | number[];

/** The block-lr network args, parsed (see network_args.ts). */
export interface BlockLrArgs {
  downLrWeight?: LrWeightSpec | null;
  /** kohya always splits `mid_lr_weight` on commas, so it is a list (usually of one value). */
  midLrWeight?: number[] | null;
  upLrWeight?: LrWeightSpec | null;
  /** Weights at or below this become 0 (default 0). */
  blockLrZeroThreshold?: number | null;
}

/**
 * The `n` weights of a preset curve (12; SDXL 9), shallow to deep for down blocks (kohya's
 * `get_list`).
 */
export function presetWeights(preset: LrWeightPreset, offset = 0, n = NUM_DOWN_BLOCKS): number[] {
  const idx = [...Array(n).keys()];
  const rev = [...idx].reverse();
  const sin = (i: number) => Math.sin(Math.PI * (i / (n - 1)) / 2) + offset;
  const lin = (i: number) => i / (n - 1) + offset;
  switch (preset) {
    case "cosine":
      return rev.map(sin);
    case "sine":
      return idx.map(sin);
    case "linear":
      return idx.map(lin);
    case "reverse_linear":
      return rev.map(lin);
    case "zeros":
      return idx.map(() => 0.0 + offset);
  }
}

function expand(spec: LrWeightSpec, n: number): number[] {
  return Array.isArray(spec) ? [...spec] : presetWeights(spec.preset, spec.offset, n);
}

/** Pad with 1.0 or cut to `len`, as kohya does (with a warning). */
function fit(name: string, list: number[], len: number, warn: (m: string) => void): number[] {
  if (list.length > len) {
    warn(`${name} has ${list.length} values; values after the ${len}th are ignored`);
    return list.slice(0, len);
  }
  if (list.length < len) {
    warn(`${name} has ${list.length} values; the missing ${len - list.length} are set to 1.0`);
    return [...list, ...new Array<number>(len - list.length).fill(1.0)];
  }
  return list;
}

/**
 * kohya's `get_block_lr_weight`: for SD 1.x/2.x 25 weights (12 down, mid, 12 up); for SDXL 23
 * (1.0 for the embeddings, 9 input, 3 middle, 9 output, 1.0 for out); null when none of the
 * three settings is given (block lr off). Lists that are too short are padded with 1.0 and long
 * ones cut; in the lists that were given, weights `<= threshold` become 0. A setting that was not
 * given is all 1.0 and is not thresholded.
 */
export function blockLrWeights(
  args: BlockLrArgs,
  warn: (message: string) => void = () => {},
  sdxl = false,
): number[] | null {
  const { downLrWeight, midLrWeight, upLrWeight } = args;
  if (downLrWeight == null && midLrWeight == null && upLrWeight == null) return null;
  const nDown = sdxl ? SDXL_NUM_DOWN_BLOCKS : NUM_DOWN_BLOCKS;
  const nMid = sdxl ? SDXL_NUM_MID_BLOCKS : NUM_MID_BLOCKS;
  const threshold = args.blockLrZeroThreshold ?? 0.0;
  const clip = (list: number[]) => list.map((w) => (w > threshold ? w : 0));
  const down = downLrWeight != null
    ? clip(fit("down_lr_weight", expand(downLrWeight, nDown), nDown, warn))
    : new Array<number>(nDown).fill(1.0);
  const mid = midLrWeight != null
    ? clip(fit("mid_lr_weight", [...midLrWeight], nMid, warn))
    : new Array<number>(nMid).fill(1.0);
  const up = upLrWeight != null
    ? clip(fit("up_lr_weight", expand(upLrWeight, nDown), nDown, warn))
    : new Array<number>(nDown).fill(1.0);
  return sdxl ? [1.0, ...down, ...mid, ...up, 1.0] : [...down, ...mid, ...up];
}

/** Learning-rate settings of `prepare_optimizer_params`. */
export interface OptimizerLrOptions {
  /** `--text_encoder_lr`; falls back to `learningRate` when null/undefined. */
  textEncoderLr?: number | null;
  /** `--unet_lr`; falls back to `learningRate` when null/undefined. */
  unetLr?: number | null;
  /** `--learning_rate`, the default. */
  learningRate: number;
  /** 25 (SDXL 23) block weights from {@link blockLrWeights}; null = block lr off. */
  blockLrWeight?: readonly number[] | null;
  /** LoRA+ ratios: `lora_up` parameters get lr * ratio (`loraplus_*_lr_ratio` network args). */
  loraplusLrRatio?: number | null;
  loraplusUnetLrRatio?: number | null;
  loraplusTextEncoderLrRatio?: number | null;
}

/**
 * Block weights must be counted for the network's model: 23 for SDXL-named modules, 25 for SD
 * 1.x/2.x (a list for the other would give modules the wrong blocks' rates without an error).
 */
function checkBlockCount(modules: readonly LoraModuleSpec[], n: number): void {
  const unet = modules.find((m) => m.part === "unet");
  if (unet === undefined) return;
  const sdxl = /^lora_unet_(input_blocks|middle_block|output_blocks)_/.test(unet.prefix);
  const want = sdxl ? SDXL_NUM_TOTAL_BLOCKS : NUM_TOTAL_BLOCKS;
  if (n !== want) {
    throw new LorakitError(
      `block learning rates: ${n} block weights for ${sdxl ? "an SDXL" : "an SD 1.x/2.x"} ` +
        `network (module '${unet.prefix}'), expected ${want}; compute them for the network's ` +
        `model (networkOptions with the network's sdxl layout)`,
    );
  }
}

/** Names of a module's two trainable parameters, as kohya's optimizer sees them. */
export function parameterNames(prefix: string): [down: string, up: string] {
  return [`${prefix}.lora_down.weight`, `${prefix}.lora_up.weight`];
}

/**
 * The learning rate kohya's `LoRANetwork.prepare_optimizer_params` gives each parameter of
 * `modules` (a list from `buildLoraModules`), keyed `<prefix>.lora_down.weight` /
 * `<prefix>.lora_up.weight`. null = the parameter is not given to the optimizer (its group's lr
 * is 0 or unset: kohya's "NO LR skipping!"). Modules of blocks with weight 0 are absent because
 * kohya never creates them; build `modules` with the same block weights.
 */
export function parameterLearningRates(
  modules: readonly LoraModuleSpec[],
  options: OptimizerLrOptions,
): Map<string, number | null> {
  const out = new Map<string, number | null>();
  // Python `a or b`: a ratio of 0 falls through to the global ratio, as in kohya.
  const teRatio = options.loraplusTextEncoderLrRatio || options.loraplusLrRatio || null;
  const unetRatio = options.loraplusUnetLrRatio || options.loraplusLrRatio || null;
  const weights = options.blockLrWeight ?? null;
  if (weights !== null) checkBlockCount(modules, weights.length);
  const assign = (m: LoraModuleSpec, lr: number | null, ratio: number | null) => {
    const [down, up] = parameterNames(m.prefix);
    const upLr = lr === null ? null : ratio !== null ? lr * ratio : lr;
    out.set(down, lr === 0 ? null : lr);
    out.set(up, upLr === 0 ? null : upLr);
  };
  for (const m of modules) {
    if (m.part === "text_encoder") {
      assign(m, options.textEncoderLr ?? options.learningRate ?? null, teRatio);
      continue;
    }
    const base = options.unetLr ?? options.learningRate ?? null;
    if (weights === null || base === null) {
      assign(m, base, unetRatio);
      continue;
    }
    const w = weights[m.block];
    if (w === undefined) {
      throw new LorakitError(
        `block learning rates: module '${m.prefix}' is in block ${m.block}, ` +
          `expected 0..${weights.length - 1}`,
      );
    }
    assign(m, base * w, unetRatio);
  }
  return out;
}
