/**
 * CLIP's byte-level BPE tokenizer, id for id as openai/CLIP's `SimpleTokenizer` and HF's
 * `CLIPTokenizer` produce for Stable Diffusion 1.x and 2.x prompts.
 *
 * Steps, as in openai/CLIP: clean the text (runs of whitespace become one space, the ends are
 * stripped, then lowercase), split it with CLIP's regex into pre-tokens, map each pre-token's
 * UTF-8 bytes to the byte alphabet, mark its last symbol with `</w>`, and apply the merges lowest
 * rank first until none applies.
 *
 * The cleaning is a pinned rule: openai/CLIP also runs `ftfy.fix_text` (NFC, quote and width
 * repairs) and `html.unescape`, and HF's tokenizer runs ftfy when installed, else BERT's basic
 * tokenizer (NFC, CJK splitting). The golden fixtures were made without any of these (e.g. a
 * decomposed `cafe\u0301` keeps its combining accent as a separate token), so neither do we.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { BOS_TEXT, type BpeModel, BYTE_RANK, decodeTokenText, EOS_TEXT } from "./vocab_bpe.ts";
import { builtinBpeModel } from "./vocab_builtin.ts";
import { type HubCacheOptions, loadVocabulary } from "./vocab_files.ts";

/**
 * What fills a sequence after its EOS: `"eos"` repeats `<|endoftext|>` (49407; SD 1.x, CLIP
 * ViT-L/14), `"zero"` uses token 0, `!` (SD 2.x, OpenCLIP ViT-H/14, as its diffusers tokenizer
 * and kohya do).
 */
export type PadWith = "eos" | "zero";

/** Options of `ClipTokenizer.load`. */
export interface ClipTokenizerOptions extends HubCacheOptions {
  /** Padding after EOS; default: the folder's configured `pad_token`, else `"eos"`. */
  padWith?: PadWith;
}

/** The sequence length of SD 1.x/2.x text encoders: BOS + 75 tokens + EOS. */
export const CLIP_CONTEXT_LENGTH = 77;

// Python's str.isspace() set, which `re`'s \s and str.strip() use; JavaScript's \s differs
// (it includes U+FEFF and lacks U+001C..U+001F and U+0085), so it is spelled out.
const PY_SPACE = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029" +
  "\\u202f\\u205f\\u3000";
const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`, "g");

// CLIP's pre-tokenizer. After cleaning the only whitespace left is " ", so `\s` is written as a
// space: JavaScript's `\s` would otherwise silently drop U+FEFF, which Python keeps.
const PRE_TOKEN =
  /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^ \p{L}\p{N}]+/giu;

/** Bound on the per-vocabulary word cache, so a stream of unique words cannot grow it forever. */
const WORD_CACHE_LIMIT = 200_000;

const encoder = new TextEncoder();

/** The cleaning step: fold whitespace runs to one space, strip the ends, lowercase. */
export function cleanText(text: string): string {
  const folded = text.replace(SPACE_RUN, " ");
  const start = folded.startsWith(" ") ? 1 : 0;
  const end = folded.endsWith(" ") && folded.length > start ? folded.length - 1 : folded.length;
  return folded.slice(start, end).toLowerCase();
}

/** Split cleaned text into CLIP's pre-tokens (words, single digits, punctuation runs, ...). */
export function preTokens(cleaned: string): string[] {
  return cleaned.match(PRE_TOKEN) ?? [];
}

/** Word -> token ids, shared by every tokenizer built on the same tables. */
const wordCaches = new WeakMap<BpeModel, Map<string, readonly number[]>>();

/** A CLIP BPE tokenizer over one vocabulary, with SD 1.x or SD 2.x padding. */
export class ClipTokenizer {
  /** Token id of `<|startoftext|>` (49406). */
  readonly bos: number;
  /** Token id of `<|endoftext|>` (49407). */
  readonly eos: number;
  /** Token id written after EOS up to the sequence length (49407 for SD 1.x, 0 for SD 2.x). */
  readonly padToken: number;
  /** Where the vocabulary came from: a folder, or "built-in". */
  readonly source: string;
  readonly #model: BpeModel;
  readonly #words: Map<string, readonly number[]>;

  /** Wrap loaded BPE tables; most callers want `ClipTokenizer.load`. */
  constructor(model: BpeModel, padWith?: PadWith) {
    this.#model = model;
    this.bos = model.bos;
    this.eos = model.eos;
    this.source = model.source;
    let words = wordCaches.get(model);
    if (words === undefined) {
      words = new Map();
      wordCaches.set(model, words);
    }
    this.#words = words;
    this.padToken = padWith === "zero"
      ? 0
      : padWith === "eos"
      ? model.eos
      : ClipTokenizer.#configuredPad(model);
  }

  static #configuredPad(model: BpeModel): number {
    if (model.padText === undefined || model.padText === EOS_TEXT) return model.eos;
    const id = model.encoder?.get(model.padText);
    if (id === undefined) {
      throw new LorakitError(
        `${model.source}: the tokenizer config names pad_token ${JSON.stringify(model.padText)}, ` +
          `which is not in its vocab.json`,
      );
    }
    return id;
  }

  /**
   * Load a tokenizer. `source` null or omitted: the built-in CLIP vocabulary (no file access).
   * Otherwise a tokenizer folder, a diffusers model folder (its `tokenizer/`), a Hugging Face
   * cache entry, a `merges.txt` path, or a hub repo id such as `openai/clip-vit-large-patch14`
   * found in the local hub cache; a LorakitError lists the places searched when none holds one.
   */
  static async load(
    source?: string | null,
    options: ClipTokenizerOptions = {},
  ): Promise<ClipTokenizer> {
    const model = source === undefined || source === null
      ? await builtinBpeModel()
      : await loadVocabulary(source, options);
    return new ClipTokenizer(model, options.padWith);
  }

  /** The same vocabulary (and word cache) with other padding, e.g. SD 2.x's `"zero"`. */
  withPadding(padWith: PadWith): ClipTokenizer {
    return new ClipTokenizer(this.#model, padWith);
  }

  /** Number of token ids in the vocabulary (49408 for CLIP). */
  get vocabSize(): number {
    return this.#model.vocabSize;
  }

  /** Token ids of `text`, without BOS, EOS or padding. */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const token of preTokens(cleanText(text))) {
      for (const id of this.#word(token)) out.push(id);
    }
    return out;
  }

  /**
   * BOS + `ids` truncated to `length - 2` + EOS, then `padToken` up to `length` (HF's
   * `padding="max_length", truncation=True`): when truncating, EOS stays the last token.
   */
  pad(ids: readonly number[], length: number = CLIP_CONTEXT_LENGTH): number[] {
    if (!Number.isInteger(length) || length < 2) {
      throw new LorakitError(
        `token sequence length must be an integer of at least 2 (BOS and EOS), found ${length}`,
      );
    }
    const out = [this.bos];
    const n = Math.min(ids.length, length - 2);
    for (let i = 0; i < n; i++) out.push(ids[i]);
    out.push(this.eos);
    while (out.length < length) out.push(this.padToken);
    return out;
  }

  /** `pad(encode(text), maxLength)` as an Int32Array, the layout text encoders take. */
  tokenize(text: string, maxLength: number = CLIP_CONTEXT_LENGTH): Int32Array {
    return Int32Array.from(this.pad(this.encode(text), maxLength));
  }

  /** Text of token ids as openai/CLIP decodes it (`</w>` becomes a space). */
  decode(ids: readonly number[]): string {
    const text = this.#model.tokenText();
    return decodeTokenText(ids.map((id) => {
      const t = Number.isInteger(id) ? text[id] : undefined;
      if (t === undefined) {
        throw new LorakitError(`token id ${id} is outside the vocabulary (0..${text.length - 1})`);
      }
      return t;
    }));
  }

  /** Token ids of one pre-token, through the cache. */
  #word(token: string): readonly number[] {
    const hit = this.#words.get(token);
    if (hit !== undefined) return hit;
    const ids = token === BOS_TEXT
      ? [this.bos]
      : token === EOS_TEXT
      ? [this.eos]
      : this.#bpe(token);
    if (this.#words.size >= WORD_CACHE_LIMIT) this.#words.clear();
    this.#words.set(token, ids);
    return ids;
  }

  /**
   * Byte-level BPE of one pre-token: repeatedly find the adjacent pair with the lowest merge
   * rank and merge every non-overlapping occurrence of it, left to right (openai/CLIP's `bpe`).
   */
  #bpe(token: string): number[] {
    const m = this.#model;
    const bytes = encoder.encode(token);
    let word: number[] = Array.from(bytes, (b) => BYTE_RANK[b]);
    word[word.length - 1] += 256; // the `</w>` form of the last byte's symbol
    while (word.length > 1) {
      let best = Infinity, first = -1, second = -1;
      for (let i = 0; i + 1 < word.length; i++) {
        const rank = m.pairRank.get(word[i] * m.stride + word[i + 1]);
        if (rank !== undefined && rank < best) {
          best = rank;
          first = word[i];
          second = word[i + 1];
        }
      }
      if (first < 0) break;
      const merged = m.mergeResult[best];
      const next: number[] = [];
      for (let i = 0; i < word.length; i++) {
        if (i + 1 < word.length && word[i] === first && word[i + 1] === second) {
          next.push(merged);
          i++;
        } else {
          next.push(word[i]);
        }
      }
      word = next;
    }
    return word.map((s) => m.symbolId[s]);
  }
}
