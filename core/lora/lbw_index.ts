/**
 * The block a LoRA module belongs to under kohya's layer block weights, for either model family,
 * as `svd_merge_lora.py`'s `get_lbw_block_index` numbers them: 0 for the text encoders, 1-12 the
 * down blocks (IN00-IN11), 13 the middle block, 14-25 the up blocks (OUT00-OUT11). SD 1.x/2.x
 * names are diffusers' (`down_blocks_1_attentions_0_...`); SDXL names are SGM's (see lbw.ts).
 *
 * kohya's svd_merge_lora decides the family from the lists' length (12 or 20 weights: SDXL; 17 or
 * 26: SD 1.x/2.x), so a list of the other family's length silently weights the text encoders
 * alone; lorakit makes that an error naming `--lbws` instead ({@link checkLbwFamily}).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { type BlockWeights, sdxlBlockIndex } from "./lbw.ts";

const RE_UPDOWN = /(up|down)_blocks_(\d+)_(resnets|upsamplers|downsamplers|attentions)_(\d+)_/;
const NUM_OF_BLOCKS = 12;

/** kohya's `get_lbw_block_index(name, is_sdxl=False)`: an SD 1.x/2.x module's block, or -1. */
export function sdBlockIndex(loraName: string): number {
  if (loraName.includes("text_model_encoder_")) return 0;
  const m = RE_UPDOWN.exec(loraName);
  if (m !== null) {
    const [, upDown, iText, kind, jText] = m;
    const i = Number(iText), j = Number(jText);
    let idx: number;
    if (upDown === "down") {
      if (kind === "resnets" || kind === "attentions") idx = 3 * i + j + 1;
      else if (kind === "downsamplers") idx = 3 * (i + 1);
      else return -1;
      return 1 + idx;
    }
    if (kind === "resnets" || kind === "attentions") idx = 3 * i + j;
    else if (kind === "upsamplers") idx = 3 * i + 2;
    else return -1;
    return 1 + NUM_OF_BLOCKS + 1 + idx;
  }
  if (loraName.includes("mid_block_")) return 1 + NUM_OF_BLOCKS;
  return -1;
}

/** kohya's rule: lists of 12 or 20 weights are SDXL's. */
export function lbwListsAreSdxl(lbws: readonly BlockWeights[]): boolean {
  const n = lbws[0].targets.size;
  return n === 12 || n === 20;
}

/** The lists' family must be the files' (see the module doc). */
export function checkLbwFamily(lbws: readonly BlockWeights[], sdxlFiles: boolean): void {
  const sdxl = lbwListsAreSdxl(lbws);
  if (sdxl === sdxlFiles) return;
  const n = lbws[0].targets.size;
  throw new LorakitError(
    `--lbws: lists of ${n} weights are for ${sdxl ? "SDXL" : "SD 1.x/2.x"} LoRA files (12 or ` +
      `20 weights for SDXL, 17 or 26 for SD 1.x/2.x), found ${
        sdxlFiles ? "SDXL" : "SD 1.x/2.x"
      } files in --models`,
  );
}

/** The factor a module's scale is multiplied by under one file's block weights (1 if none). */
export function lbwFactor(lbw: BlockWeights | null, prefix: string, sdxl: boolean): number {
  if (lbw === null) return 1;
  const i = sdxl ? sdxlBlockIndex(prefix) : sdBlockIndex(prefix);
  return lbw.targets.has(i) ? lbw.weights[i] : 1;
}
