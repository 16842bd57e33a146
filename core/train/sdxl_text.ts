/**
 * SDXL's text conditioning in training: kohya's `get_hidden_states_sdxl` over captions of one or
 * more 77-token windows, and the same conditioning read from the text encoder output cache.
 *
 * @module
 */
import { concat, scope, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { gatherRows, toDtype } from "../models/ops.ts";
import { encodeSdxlText, encodeTe2, type SdxlTextEncoding } from "../models/sdxl_conditioning.ts";
import type { StableDiffusionXL } from "../models/stable_diffusion_xl.ts";
import { stitchRows, WINDOW_LENGTH } from "../text/token_windows.ts";

/** One caption's cached conditioning (host copies, in the encoders' dtype's values). */
export interface CachedTextOutputs {
  /** [rows, C1 + C2] context rows (77, or 75n + 2 with n windows). */
  context: Float32Array;
  rows: number;
  /** [P] pooled embedding. */
  pooled: Float32Array;
}

/** Cached outputs by the caption's token ids (both tokenizers). */
export type TextOutputCache = Map<string, CachedTextOutputs>;

/** The cache key of sample `i` of a batch of `n` samples' ids (all its windows). */
export function textCacheKey(ids1: Int32Array, ids2: Int32Array, i: number, n: number): string {
  const per = ids1.length / n;
  const row = (ids: Int32Array) => ids.subarray(i * per, (i + 1) * per).join(",");
  return `${row(ids1)}|${row(ids2)}`;
}

/**
 * kohya's `get_hidden_states_sdxl` for captions of `n` windows each (`--max_token_length`): both
 * encoders run on every window, their penultimate states are stitched per caption as SD's
 * windows are (`stitchRows`: one BOS, 75 rows of each window, the last row), and the pooled
 * embedding is the first window's.
 */
export function encodeSdxlWindows(
  sd: Pick<StableDiffusionXL, "textEncoder" | "textEncoder2">,
  ids1: Int32Array,
  ids2: Int32Array,
  batch: number,
): SdxlTextEncoding {
  const windows = ids1.length / (batch * WINDOW_LENGTH);
  if (windows === 1) return encodeSdxlText(sd.textEncoder, sd.textEncoder2, ids1, ids2);
  const te1 = sd.textEncoder;
  return scope(() => {
    const [h1] = te1.hiddenStates(ids1, [te1.config.numLayers - 1]);
    const { penultimate, pooled } = encodeTe2(sd.textEncoder2, ids2);
    const rows = stitchRows(windows);
    const per = windows * WINDOW_LENGTH;
    const all = new Int32Array(batch * rows.length);
    for (let b = 0; b < batch; b++) {
      for (let r = 0; r < rows.length; r++) all[b * rows.length + r] = b * per + rows[r];
    }
    const stitch = (h: Tensor) => gatherRows(h, all, [batch, rows.length, h.shape[2]]);
    const first = Int32Array.from({ length: batch }, (_, b) => b * windows);
    const context = concat([stitch(h1), toDtype(stitch(penultimate), h1.dtype)], 2);
    return { context, pooled: gatherRows(pooled, first, [batch, pooled.shape[1]]) };
  });
}

/** A batch's conditioning from the text encoder output cache (the same values, uploaded). */
export function cachedText(
  cache: TextOutputCache,
  ids1: Int32Array,
  ids2: Int32Array,
  n: number,
  dtype: Tensor["dtype"],
): SdxlTextEncoding {
  const rows = Array.from({ length: n }, (_, i) => {
    const hit = cache.get(textCacheKey(ids1, ids2, i, n));
    if (!hit) {
      throw new LorakitError(
        "--cache_text_encoder_outputs: a caption missing from the cache (its text changed " +
          "after caching)",
      );
    }
    return hit;
  });
  const per = rows[0].context.length, p = rows[0].pooled.length;
  const context = new Float32Array(n * per), pooled = new Float32Array(n * p);
  rows.forEach((r, i) => {
    context.set(r.context, i * per);
    pooled.set(r.pooled, i * p);
  });
  const len = rows[0].rows;
  return {
    context: Tensor.fromArray(context, [n, len, per / len], dtype),
    pooled: Tensor.fromArray(pooled, [n, p], dtype),
  };
}
