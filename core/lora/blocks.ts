/**
 * kohya's block maps of the U-Net and the per-block dims/alphas built on them
 * (`networks/lora.py`: `get_block_index`, `get_block_dims_and_alphas`,
 * `remove_block_dims_and_alphas`).
 *
 * SD 1.x/2.x: 25 blocks following the LDM U-Net: IN00..IN11 (`input_blocks`), MID, OUT00..OUT11
 * (`output_blocks`). IN00 is `conv_in`, which never gets a LoRA, so index 0 only ever appears in
 * per-block lists, never on a module.
 *
 * SDXL (`is_sdxl`): 23 blocks read from the SGM module names: 0 the embeddings (`time_embed`,
 * `label_emb`, no LoRA), 1..9 `input_blocks_0..8`, 10..12 `middle_block_0..2`, 13..21
 * `output_blocks_0..8`, 22 `out` (no LoRA).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** Down (and up) blocks of the full model, as kohya counts them (`NUM_OF_BLOCKS`). */
export const NUM_DOWN_BLOCKS = 12;
/** Middle blocks (`NUM_OF_MID_BLOCKS`). */
export const NUM_MID_BLOCKS = 1;
/** Length of every per-block list: 12 down + 1 mid + 12 up. */
export const NUM_TOTAL_BLOCKS = NUM_DOWN_BLOCKS * 2 + NUM_MID_BLOCKS;
/** Index of the middle block. */
export const MID_BLOCK_INDEX = NUM_DOWN_BLOCKS;

/** SDXL's input (and output) blocks (`SDXL_NUM_OF_BLOCKS`). */
export const SDXL_NUM_DOWN_BLOCKS = 9;
/** SDXL's middle blocks (`SDXL_NUM_OF_MID_BLOCKS`): ResNet, Transformer, ResNet. */
export const SDXL_NUM_MID_BLOCKS = 3;
/** Length of SDXL's per-block lists: embeddings + 9 input + 3 middle + 9 output + out. */
export const SDXL_NUM_TOTAL_BLOCKS = 1 + 2 * SDXL_NUM_DOWN_BLOCKS + SDXL_NUM_MID_BLOCKS + 1;

/** Length of the per-block lists of an SD 1.x/2.x (25) or SDXL (23) network. */
export function numTotalBlocks(sdxl: boolean): number {
  return sdxl ? SDXL_NUM_TOTAL_BLOCKS : NUM_TOTAL_BLOCKS;
}

// Same pattern as kohya's RE_UPDOWN; it is searched (not anchored) in the LoRA name.
const RE_UPDOWN = /(up|down)_blocks_(\d+)_(resnets|upsamplers|downsamplers|attentions)_(\d+)_/;

/**
 * kohya's `get_block_index` for SD 1.x/2.x: the block (0..24) a U-Net LoRA module belongs to, from
 * its LoRA name (`lora_unet_down_blocks_1_attentions_0_proj_in` -> 4). -1 for names outside the
 * down/mid/up blocks (kohya's "invalid" value).
 */
export function blockIndex(loraName: string): number {
  const m = RE_UPDOWN.exec(loraName);
  if (m !== null) {
    const i = Number(m[2]);
    const j = Number(m[4]);
    // Resnets and attentions of one level share indices 3i+j; the sampler is the level's third.
    const idx = m[3] === "upsamplers" || m[3] === "downsamplers" ? 3 * i + 2 : 3 * i + j;
    return m[1] === "down" ? 1 + idx : NUM_DOWN_BLOCKS + 1 + idx;
  }
  return loraName.includes("mid_block_") ? MID_BLOCK_INDEX : -1;
}

/**
 * kohya's `get_block_index` for SDXL: the block (0..22) of a U-Net LoRA module from its SGM name
 * (`lora_unet_input_blocks_4_1_proj_in` -> 5, `lora_unet_middle_block_1_...` -> 11,
 * `lora_unet_output_blocks_2_2_conv` -> 15); -1 for other names.
 */
export function sdxlBlockIndex(loraName: string): number {
  if (!loraName.startsWith("lora_unet_")) return -1;
  const name = loraName.slice("lora_unet_".length);
  const n = () => Number(name.split("_")[2]);
  if (name.startsWith("time_embed_") || name.startsWith("label_emb_")) return 0;
  if (name.startsWith("input_blocks_")) return 1 + n();
  if (name.startsWith("middle_block_")) return 10 + n();
  if (name.startsWith("output_blocks_")) return 13 + n();
  if (name.startsWith("out_")) return 22;
  return -1;
}

/** Human name of a block index: IN00..IN11, MID, OUT00..OUT11. */
export function blockLabel(index: number): string {
  if (!Number.isInteger(index) || index < 0 || index >= NUM_TOTAL_BLOCKS) {
    throw new LorakitError(`block index: expected an integer 0..24, found ${index}`);
  }
  const two = (n: number) => String(n).padStart(2, "0");
  if (index < NUM_DOWN_BLOCKS) return `IN${two(index)}`;
  if (index === MID_BLOCK_INDEX) return "MID";
  return `OUT${two(index - MID_BLOCK_INDEX - 1)}`;
}

/** Per-block ranks and alphas of the U-Net (kohya's block_dims path). */
export interface BlockDims {
  /** Rank of Linear and 1x1 conv modules per block (0 = no module). */
  dims: number[];
  alphas: number[];
  /** Rank of 3x3 conv modules per block; null when 3x3 convs get no LoRA. */
  convDims: number[] | null;
  convAlphas: number[] | null;
}

/** network_args' per-block ranks and alphas, 25 values each (SDXL 23) when given. */
export interface BlockDimLists {
  blockDims?: readonly number[] | null;
  blockAlphas?: readonly number[] | null;
  convBlockDims?: readonly number[] | null;
  convBlockAlphas?: readonly number[] | null;
}

/** Inputs of {@link resolveBlockDims}, already parsed to numbers (see network_args.ts). */
export interface BlockDimsInput extends BlockDimLists {
  /** SDXL's 23-block lists instead of SD 1.x/2.x's 25. */
  sdxl?: boolean;
  networkDim: number;
  networkAlpha: number;
  convDim?: number | null;
  convAlpha?: number | null;
}

function checkListLength(key: string, list: readonly number[], sdxl: boolean): number[] {
  const n = numTotalBlocks(sdxl);
  if (list.length !== n) {
    const parts = sdxl
      ? "SDXL: 1 for the embeddings, 9 input blocks, 3 middle, 9 output, 1 for out"
      : "12 down blocks, 1 mid, 12 up";
    throw new LorakitError(
      `network_args ${key}: expected ${n} comma-separated values (${parts}), found ${list.length}`,
    );
  }
  return [...list];
}

/**
 * kohya's `get_block_dims_and_alphas`: every list filled to 25 values (23 for SDXL). Missing
 * `block_dims` or `block_alphas` repeat `network_dim`/`network_alpha`; missing `conv_block_alphas` repeat
 * `conv_alpha` (1.0 when unset); without `conv_block_dims`, 3x3 convs use `conv_dim` everywhere,
 * or get no LoRA when `conv_dim` is unset too.
 */
export function resolveBlockDims(input: BlockDimsInput): BlockDims {
  const sdxl = input.sdxl ?? false;
  const fill = (v: number) => new Array<number>(numTotalBlocks(sdxl)).fill(v);
  const checkLength = (key: string, list: readonly number[]) => checkListLength(key, list, sdxl);
  const dims = input.blockDims != null
    ? checkLength("block_dims", input.blockDims)
    : fill(input.networkDim);
  const alphas = input.blockAlphas != null
    ? checkLength("block_alphas", input.blockAlphas)
    : fill(input.networkAlpha);
  let convDims: number[] | null = null;
  let convAlphas: number[] | null = null;
  if (input.convBlockDims != null) {
    convDims = checkLength("conv_block_dims", input.convBlockDims);
    convAlphas = input.convBlockAlphas != null
      ? checkLength("conv_block_alphas", input.convBlockAlphas)
      : fill(input.convAlpha ?? 1.0);
  } else if (input.convDim != null) {
    convDims = fill(input.convDim);
    convAlphas = fill(input.convAlpha ?? 1.0);
  }
  return { dims, alphas, convDims, convAlphas };
}

/**
 * kohya's `remove_block_dims_and_alphas`: a block whose learning-rate weight is 0 gets rank 0,
 * so its modules are never created (not merely frozen).
 */
export function dropZeroLrBlocks(dims: BlockDims, lrWeights: readonly number[] | null): BlockDims {
  if (lrWeights === null) return dims;
  const out: BlockDims = {
    dims: [...dims.dims],
    alphas: [...dims.alphas],
    convDims: dims.convDims && [...dims.convDims],
    convAlphas: dims.convAlphas && [...dims.convAlphas],
  };
  lrWeights.forEach((w, i) => {
    if (w === 0) {
      out.dims[i] = 0;
      if (out.convDims !== null) out.convDims[i] = 0;
    }
  });
  return out;
}
