/**
 * kohya gen_img's prompt weighting (its copy of diffusers' community `lpw_stable_diffusion`):
 * - syntax (`parsePromptAttention`): `(text)` x1.1, `(text:1.3)` x1.3, `[text]` /1.1, nesting
 *   multiplies, unclosed brackets apply to the rest, escapes `\(` `\)` `\[` `\]` `\\`, and
 *   `BREAK` (kept as its own segment: the tokens so far are padded to the next multiple of 77);
 * - tokens (`weightedTokens`): each segment tokenized on its own, weights copied per token,
 *   truncated at `75 * max_embeddings_multiples`; prompt and negative share the chunk count (the
 *   longest, up to the maximum), each chunk a 77-token window (BOS, 75 tokens, EOS/padding);
 * - embeddings (`applyPromptWeights`): the text encoder's output of each window is
 *   concatenated, multiplied by the token weights, and rescaled per prompt so the mean over all
 *   positions and channels is what it was ("original" mode; "abs" restores the mean absolute
 *   value; "none" skips it).
 * kohya's " AND " split (regional prompts for regional LoRA) is not done here.
 *
 * @module
 */
import { cast, div, mean, mul, scope, sqrt, square, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";

/** A run of prompt text and its attention weight. */
export type WeightedText = [text: string, weight: number];

// kohya's re_attention: escapes, brackets, ":weight)", plain runs, a lone ":".
const RE_ATTENTION = /\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:([+-]?[.\d]+)\)|\)|]|[^\\()[\]:]+|:/g;

const ROUND = 1.1;
const SQUARE = 1 / 1.1;

/** Split a prompt into (text, weight) runs by kohya's `parse_prompt_attention` rules. */
export function parsePromptAttention(prompt: string): WeightedText[] {
  const res: WeightedText[] = [];
  const round: number[] = [], squareOpen: number[] = [];
  const multiply = (start: number, m: number): void => {
    for (let p = start; p < res.length; p++) res[p][1] *= m;
  };
  // BREAK is wrapped in backslashes so it stays a separate run (each backslash adds "").
  const text = prompt.replaceAll("BREAK", "\\BREAK\\");
  for (const m of text.matchAll(RE_ATTENTION)) {
    const tok = m[0], weight = m[1];
    if (tok.startsWith("\\")) res.push([tok.slice(1), 1]);
    else if (tok === "(") round.push(res.length);
    else if (tok === "[") squareOpen.push(res.length);
    else if (weight !== undefined && round.length > 0) {
      const w = Number(weight);
      if (!Number.isFinite(w)) {
        throw new LorakitError(
          `prompt: '(...:${weight})' is not a number in ${JSON.stringify(prompt)}`,
        );
      }
      multiply(round.pop()!, w);
    } else if (tok === ")" && round.length > 0) multiply(round.pop()!, ROUND);
    else if (tok === "]" && squareOpen.length > 0) multiply(squareOpen.pop()!, SQUARE);
    else res.push([tok, 1]);
  }
  for (const p of round) multiply(p, ROUND);
  for (const p of squareOpen) multiply(p, SQUARE);
  if (res.length === 0) return [["", 1]];
  // Merge neighbours of equal weight, never across a BREAK.
  for (let i = 0; i + 1 < res.length;) {
    if (
      res[i][1] === res[i + 1][1] && res[i][0].trim() !== "BREAK" &&
      res[i + 1][0].trim() !== "BREAK"
    ) {
      res[i][0] += res[i + 1][0];
      res.splice(i + 1, 1);
    } else i++;
  }
  return res;
}

/** What the weighting needs from a tokenizer (`ClipTokenizer` has it). */
export interface WeightingTokenizer {
  readonly bos: number;
  readonly eos: number;
  readonly padToken: number;
  encode(text: string): number[];
}

/** Tokens of a window body (between its BOS and last position). */
export const CHUNK_BODY = 75;
/** Positions of one window. */
export const CHUNK_LENGTH = CHUNK_BODY + 2;

/** One prompt's tokens and per-token weights, without BOS/EOS, and whether it was cut. */
export interface PromptTokens {
  tokens: number[];
  weights: number[];
  truncated: boolean;
}

/** kohya's `get_prompts_with_weights` for one prompt, cut at `maxLength` tokens. */
export function promptTokens(
  tokenizer: WeightingTokenizer,
  prompt: string,
  maxLength: number,
): PromptTokens {
  const tokens: number[] = [], weights: number[] = [];
  let truncated = false;
  for (const [word, weight] of parsePromptAttention(prompt)) {
    if (word.trim() === "BREAK") {
      // kohya pads to the tokenizer's model_max_length (77), not to the 75-token chunk body.
      const pad = CHUNK_LENGTH - (tokens.length % CHUNK_LENGTH);
      for (let i = 0; i < pad; i++) (tokens.push(tokenizer.padToken), weights.push(1));
      continue;
    }
    const ids = tokenizer.encode(word);
    for (const id of ids) (tokens.push(id), weights.push(weight));
    if (tokens.length > maxLength) {
      truncated = true;
      break;
    }
  }
  if (tokens.length > maxLength) {
    truncated = true;
    tokens.length = maxLength;
    weights.length = maxLength;
  }
  return { tokens, weights, truncated };
}

/** A batch of prompts laid out for the text encoder and the weighting. */
export interface WeightedTokens {
  /** Window ids [batch, chunks, 77] row-major, for `textEncoder.forward` as batch*chunks rows. */
  ids: Int32Array;
  /** Weights [batch, chunks * 77] row-major (1 at BOS, EOS and padding). */
  weights: Float32Array;
  batch: number;
  chunks: number;
  /** True when some prompt was longer than `75 * max_embeddings_multiples` tokens. */
  truncated: boolean;
}

/**
 * kohya's `get_weighted_text_embeddings` token side for prompts that are encoded together
 * (prompts and negatives): chunk count = min(max, chunks of the longest), at least 1.
 */
export function weightedTokens(
  tokenizer: WeightingTokenizer,
  prompts: readonly string[],
  maxEmbeddingsMultiples = 1,
): WeightedTokens {
  if (!Number.isInteger(maxEmbeddingsMultiples) || maxEmbeddingsMultiples < 1) {
    throw new LorakitError(
      `--max_embeddings_multiples: expected a positive integer, found ${maxEmbeddingsMultiples}`,
    );
  }
  const parsed = prompts.map((p) =>
    promptTokens(tokenizer, p, CHUNK_BODY * maxEmbeddingsMultiples)
  );
  const longest = Math.max(0, ...parsed.map((p) => p.tokens.length));
  const chunks = Math.max(
    1,
    Math.min(maxEmbeddingsMultiples, Math.floor((longest - 1) / CHUNK_BODY) + 1),
  );
  const total = CHUNK_BODY * chunks + 2;
  const ids = new Int32Array(prompts.length * chunks * CHUNK_LENGTH);
  const weights = new Float32Array(prompts.length * chunks * CHUNK_LENGTH).fill(1);
  const { bos, eos, padToken } = tokenizer;
  parsed.forEach((p, b) => {
    const full = [bos, ...p.tokens, eos];
    while (full.length < total) full.push(padToken);
    for (let c = 0; c < chunks; c++) {
      const at = (b * chunks + c) * CHUNK_LENGTH;
      const win = ids.subarray(at, at + CHUNK_LENGTH);
      for (let k = 0; k < CHUNK_LENGTH; k++) win[k] = full[c * CHUNK_BODY + k];
      if (chunks > 1) {
        win[0] = bos;
        if (padToken === eos) win[CHUNK_LENGTH - 1] = full[total - 1];
        else {
          // SD 2.x: a window cut mid-prompt ends in EOS; a window of only padding starts with EOS.
          const last = win[CHUNK_LENGTH - 1];
          if (last !== eos && last !== padToken) win[CHUNK_LENGTH - 1] = eos;
          if (win[1] === padToken) win[1] = eos;
        }
      }
      // Weights: 1 at the window's BOS and last position, the chunk's token weights between.
      const body = p.weights.slice(c * CHUNK_BODY, (c + 1) * CHUNK_BODY);
      weights.set(body, at + 1);
    }
  });
  return {
    ids,
    weights,
    batch: prompts.length,
    chunks,
    truncated: parsed.some((p) => p.truncated),
  };
}

/** kohya's `--emb_normalize_mode`. */
export type EmbNormalizeMode = "original" | "abs" | "none";

/**
 * Weighted embeddings: `embeddings` [B, T, C] times `weights` [B * T] per position, then (modes
 * "original"/"abs") rescaled per prompt so its mean (of values or absolute values, over T and C)
 * is unchanged. Computed in f32 on the GPU and returned in the input's dtype.
 */
export function applyPromptWeights(
  embeddings: Tensor,
  weights: Float32Array,
  mode: EmbNormalizeMode = "original",
): Tensor {
  const [b, t] = embeddings.shape;
  if (embeddings.rank !== 3 || weights.length !== b * t) {
    throw new LorakitError(
      `prompt weights: expected ${b}x${t} weights for embeddings [${embeddings.shape}], found ` +
        `${weights.length}`,
    );
  }
  // Unweighted prompts are left as they are: the rescale would be 1, or 0/0 when the embeddings
  // average to exactly zero (a final LayerNorm without bias).
  if (weights.every((v) => v === 1)) return embeddings.retain();
  return scope(() => {
    const x = embeddings.dtype === "f32" ? embeddings : cast(embeddings, "f32");
    const w = Tensor.fromArray(weights, [b, t, 1]);
    const y = mul(x, w);
    let out = y;
    if (mode !== "none") {
      const level = (v: Tensor): Tensor => mean(mode === "abs" ? sqrt(square(v)) : v, [1, 2], true);
      out = mul(y, div(level(x), level(y)));
    }
    return embeddings.dtype === "f32" ? out : cast(out, embeddings.dtype);
  });
}
