/**
 * kohya's layer block weights (`--lbws` of sdxl_merge_lora and svd_merge_lora): per LoRA file a
 * JSON list of 12, 17, 20 or 26 numbers, the weights of the blocks its length selects among the
 * 26 (BASE = the text encoders, IN00-IN11, MID, OUT00-OUT11; kohya's LAYER12/17/20/26 tables).
 * A module of a selected block has its scale multiplied by the block's weight; other modules
 * keep theirs. For SDXL kohya numbers a module's block from its SGM name: `input_blocks_N` is
 * block 1 + N, `middle_block` 13, `output_blocks_N` 14 + N, the text encoders 0.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

const T = true, F = false;
/** kohya's LAYER12, LAYER17, LAYER20 and LAYER26: which of the 26 blocks each length sets. */
const LAYERS: Record<number, readonly boolean[]> = {
  // BASE, IN00..IN11, MID, OUT00..OUT11
  12: [T, F, F, F, F, T, T, F, T, T, F, F, F, T, T, T, T, T, T, T, F, F, F, F, F, F],
  17: [T, F, T, T, F, T, T, F, T, T, F, F, F, T, F, F, F, T, T, T, T, T, T, T, T, T],
  20: [T, T, T, T, T, T, T, T, T, T, F, F, F, T, T, T, T, T, T, T, T, T, T, F, F, F],
  26: Array(26).fill(T),
};

/** One file's block weights: `weights[i]` for each block `i` in `targets`. */
export interface BlockWeights {
  weights: number[];
  targets: ReadonlySet<number>;
}

/**
 * Parses `--lbws` (one JSON list per `--models` file, all of one accepted length) as kohya's
 * `format_lbws`; null when the flag is absent or empty. Errors name the flag and the value.
 */
export function parseLbws(
  lbws: readonly string[] | null | undefined,
  models: number,
): BlockWeights[] | null {
  if (lbws === null || lbws === undefined || lbws.length === 0) return null;
  if (lbws.length !== models) {
    throw new LorakitError(
      `--lbws: expected one block weight list per --models file (${models}), found ${lbws.length}`,
    );
  }
  const lists = lbws.map((text) => {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw new LorakitError(`--lbws: expected a JSON list like [1,0,1,...], found '${text}'`);
    }
    if (!Array.isArray(v)) {
      throw new LorakitError(`--lbws: expected a JSON list of numbers, found '${text}'`);
    }
    if (!v.every((x) => typeof x === "number" || typeof x === "boolean")) {
      throw new LorakitError(`--lbws: expected numbers in the list, found '${text}'`);
    }
    if (LAYERS[v.length] === undefined) {
      throw new LorakitError(
        `--lbws: expected a list of 12, 17, 20 or 26 weights, found ${v.length} in '${text}'`,
      );
    }
    return v.map(Number);
  });
  if (new Set(lists.map((l) => l.length)).size !== 1) {
    throw new LorakitError(
      `--lbws: expected lists of one length, found lengths ${
        lists.map((l) => l.length).join(", ")
      }`,
    );
  }
  const flags = LAYERS[lists[0].length];
  const targetIdx = flags.flatMap((f, i) => (f ? [i] : []));
  const targets = new Set(targetIdx);
  return lists.map((l) => {
    const weights = Array(26).fill(1);
    targetIdx.forEach((idx, k) => (weights[idx] = l[k]));
    return { weights, targets };
  });
}

/** kohya's `get_lbw_block_index(name, is_sdxl=True)`: the block of an SDXL LoRA name, or -1. */
export function sdxlBlockIndex(loraName: string): number {
  if (loraName.includes("text_model_encoder_")) return 0;
  if (!loraName.startsWith("lora_unet_")) return -1;
  const name = loraName.slice("lora_unet_".length);
  if (name.startsWith("time_embed_") || name.startsWith("label_emb_")) return 1;
  if (name.startsWith("input_blocks_")) return 1 + Number.parseInt(name.split("_")[2], 10);
  if (name.startsWith("middle_block_")) return 13;
  if (name.startsWith("output_blocks_")) return 14 + Number.parseInt(name.split("_")[2], 10);
  if (name.startsWith("out_")) return 23;
  return -1;
}

/** The block weight of an SDXL module under `lbw`, or undefined when its block is not set. */
export function sdxlBlockWeight(lbw: BlockWeights | null, prefix: string): number | undefined {
  if (lbw === null) return undefined;
  const i = sdxlBlockIndex(prefix);
  return lbw.targets.has(i) ? lbw.weights[i] : undefined;
}
