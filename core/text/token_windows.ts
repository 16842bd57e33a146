/**
 * kohya's long prompts (`--max_token_length 150|225`): the CLIP text encoder sees 77 positions,
 * so a caption of up to 150 or 225 tokens is cut into 75-token chunks, each wrapped into its own
 * 77-token window, encoded separately, and the outputs are stitched back into one sequence of
 * `75 * n + 2` rows. This file does kohya's id layout (`TokenizeStrategy._get_input_ids`) and
 * the row bookkeeping of the stitch (`SdTextEncodingStrategy.encode_tokens`).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** Tokens of one window between its BOS and its last position. */
export const WINDOW_BODY = 75;
/** Positions of one window (the text encoder's context length). */
export const WINDOW_LENGTH = WINDOW_BODY + 2;

/** What the windowing needs from a tokenizer (`ClipTokenizer` has it). */
export interface WindowTokenizer {
  readonly bos: number;
  readonly eos: number;
  readonly padToken: number;
  encode(text: string): number[];
  pad(ids: readonly number[], length: number): number[];
}

/** Ids of a batch of captions laid out as windows: `ids` is [batch, windows, 77] row-major. */
export interface WindowedIds {
  ids: Int32Array;
  batch: number;
  windows: number;
}

/**
 * Windows for kohya's `--max_token_length`: none (the default) or 75 -> 1, 150 -> 2, 225 -> 3.
 * Other values are a LorakitError (kohya's own flag accepts only 75, 150 and 225).
 */
export function windowCountFor(maxTokenLength?: number | null): number {
  if (maxTokenLength === undefined || maxTokenLength === null) return 1;
  if (maxTokenLength === 75 || maxTokenLength === 150 || maxTokenLength === 225) {
    return maxTokenLength / WINDOW_BODY;
  }
  throw new LorakitError(
    `--max_token_length: expected 75, 150 or 225 (or none for 75), found ${maxTokenLength}`,
  );
}

/**
 * One caption's token ids (no BOS/EOS) as kohya lays them out: [windows * 77] row-major.
 *
 * With one window it is just `pad(ids, 77)`. With n windows, the ids are first padded to
 * `75n + 2` (BOS, at most 75n tokens, EOS, padding), then window w is BOS, the 75 entries from
 * position `1 + 75w`, and the sequence's last entry (EOS when the caption fills all 75n tokens,
 * else padding). SD 1.x pads with EOS, so every window ends in EOS. For SD 2.x (`padToken` is
 * not EOS) kohya then patches each window: if its second-to-last entry is neither EOS nor the
 * pad id, the last becomes EOS (a full chunk cut mid-caption); if its first token is the pad id,
 * it becomes EOS (an empty window reads BOS, EOS, pad...). kohya compares ids, so a real `!`
 * (id 0) in a caption counts as padding there too; we do the same.
 */
export function windowIdsFromTokens(
  tokenizer: WindowTokenizer,
  ids: readonly number[],
  maxTokenLength?: number | null,
): Int32Array {
  const n = windowCountFor(maxTokenLength);
  if (n === 1) return Int32Array.from(tokenizer.pad(ids, WINDOW_LENGTH));
  const full = tokenizer.pad(ids, n * WINDOW_BODY + 2);
  const last = full[full.length - 1];
  const { eos, padToken } = tokenizer;
  const out = new Int32Array(n * WINDOW_LENGTH);
  for (let w = 0; w < n; w++) {
    const window = out.subarray(w * WINDOW_LENGTH, (w + 1) * WINDOW_LENGTH);
    window[0] = full[0];
    for (let k = 0; k < WINDOW_BODY; k++) window[1 + k] = full[1 + w * WINDOW_BODY + k];
    window[WINDOW_LENGTH - 1] = last;
    if (padToken !== eos) {
      const beforeLast = window[WINDOW_LENGTH - 2];
      if (beforeLast !== eos && beforeLast !== padToken) window[WINDOW_LENGTH - 1] = eos;
      if (window[1] === padToken) window[1] = eos;
    }
  }
  return out;
}

/** `windowIdsFromTokens` for a batch of captions: ids [batch, windows, 77]. */
export function windowIds(
  tokenizer: WindowTokenizer,
  texts: readonly string[],
  maxTokenLength?: number | null,
): WindowedIds {
  const windows = windowCountFor(maxTokenLength);
  const ids = new Int32Array(texts.length * windows * WINDOW_LENGTH);
  texts.forEach((t, b) => {
    ids.set(
      windowIdsFromTokens(tokenizer, tokenizer.encode(t), maxTokenLength),
      b * windows * WINDOW_LENGTH,
    );
  });
  return { ids, batch: texts.length, windows };
}

/** Rows of the stitched sequence: `75 * windows + 2` (77 for one window, 152, 227). */
export function stitchedLength(windows: number): number {
  if (!Number.isInteger(windows) || windows < 1) {
    throw new LorakitError(`window count must be a positive integer, found ${windows}`);
  }
  return WINDOW_BODY * windows + 2;
}

/**
 * Which rows of one caption's `windows * 77` encoder outputs (windows in order, each 77 rows)
 * make up the stitched sequence, in order: row 0 (window 0's BOS), then rows 1..75 of every
 * window (its tokens, EOS and padding included, without its own BOS or last position), then the
 * very last row (window n-1's position 76). With one window that is all 77 rows unchanged.
 *
 * The same rows for SD 1.x and SD 2.x: kohya's SD 2.x branch means to replace an empty window's
 * first kept row (its EOS) by the next one, but it compares the ids with the token *string*
 * `"<|endoftext|>"`, which never equals an id, so nothing is ever replaced; we keep that result.
 * The text encoder gathers these rows per caption to build [B, 75n+2, C] from [B*n, 77, C].
 */
export function stitchRows(windows: number): Int32Array {
  const rows = new Int32Array(stitchedLength(windows));
  let k = 0;
  rows[k++] = 0;
  for (let w = 0; w < windows; w++) {
    for (let p = 1; p <= WINDOW_BODY; p++) rows[k++] = w * WINDOW_LENGTH + p;
  }
  rows[k] = windows * WINDOW_LENGTH - 1;
  return rows;
}

/**
 * Host-side stitch: `states` [batch * windows, 77, channels] (windows of a caption adjacent) ->
 * [batch, 75 * windows + 2, channels], keeping the rows of `stitchRows`.
 */
export function stitchWindowStates(
  states: Float32Array,
  batch: number,
  windows: number,
  channels: number,
): Float32Array {
  const perCaption = windows * WINDOW_LENGTH * channels;
  if (states.length !== batch * perCaption) {
    throw new LorakitError(
      `window states: expected ${batch}x${windows}x${WINDOW_LENGTH}x${channels} = ` +
        `${batch * perCaption} values, found ${states.length}`,
    );
  }
  const rows = stitchRows(windows);
  const out = new Float32Array(batch * rows.length * channels);
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < rows.length; r++) {
      const from = b * perCaption + rows[r] * channels;
      out.set(states.subarray(from, from + channels), (b * rows.length + r) * channels);
    }
  }
  return out;
}
