/**
 * The CLIP byte-level BPE vocabulary model: the byte alphabet, the vocabulary derived from the
 * merge list, and the integer tables the tokenizer runs on.
 *
 * CLIP's vocabulary is not independent data: openai/CLIP builds it as the 256 byte symbols, the
 * same 256 with `</w>` appended, one entry per merge (the two parts concatenated), then
 * `<|startoftext|>` and `<|endoftext|>`. That is why the built-in copy only ships the merges.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** Marks the last symbol of a pre-token, so "er" inside a word and "er" at its end differ. */
export const END_OF_WORD = "</w>";
/** Begin-of-text token string (id 49406 in CLIP's vocabulary). */
export const BOS_TEXT = "<|startoftext|>";
/** End-of-text token string (id 49407 in CLIP's vocabulary); also CLIP's unknown token. */
export const EOS_TEXT = "<|endoftext|>";
/** openai/CLIP and HF's CLIPTokenizer read exactly this many merges, whatever the file holds. */
export const CLIP_MERGE_COUNT = 49152 - 256 - 2;

/**
 * The bytes in vocabulary order: printable Latin-1 bytes keep their own code point and come
 * first, then the rest (controls, space, 0x7F-0xA0, 0xAD), which GPT-2's scheme maps to
 * U+0100 onwards so every byte has a visible, non-whitespace character.
 */
function byteOrder(): { bytes: number[]; chars: number[] } {
  const bytes: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bytes.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bytes.push(b);
  for (let b = 0xae; b <= 0xff; b++) bytes.push(b);
  const chars = bytes.slice();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + extra++);
    }
  }
  return { bytes, chars };
}

const ORDER = byteOrder();

/** `BYTE_CHAR[b]`: the one-character string standing for byte `b` in BPE symbols. */
export const BYTE_CHAR: readonly string[] = (() => {
  const out = new Array<string>(256);
  ORDER.bytes.forEach((b, i) => (out[b] = String.fromCharCode(ORDER.chars[i])));
  return out;
})();

/** `BYTE_RANK[b]`: the vocabulary id of byte `b`'s bare symbol (`+ 256` for its `</w>` form). */
export const BYTE_RANK: Int32Array = (() => {
  const out = new Int32Array(256);
  ORDER.bytes.forEach((b, i) => (out[b] = i));
  return out;
})();

/** Inverse of `BYTE_CHAR`: character code -> byte, -1 for characters that stand for no byte. */
const CHAR_BYTE: Int32Array = (() => {
  const out = new Int32Array(512).fill(-1);
  BYTE_CHAR.forEach((c, b) => (out[c.charCodeAt(0)] = b));
  return out;
})();

/** The 512 base symbols in vocabulary order: the byte characters, then each with `</w>`. */
export function baseSymbols(): string[] {
  const bare = ORDER.chars.map((c) => String.fromCharCode(c));
  return [...bare, ...bare.map((s) => s + END_OF_WORD)];
}

/**
 * CLIP's vocabulary (index = token id) derived from its merges, exactly as openai/CLIP's
 * `SimpleTokenizer.__init__` builds it: base symbols, merged pairs, then BOS and EOS.
 */
export function deriveClipVocab(merges: readonly (readonly [string, string])[]): string[] {
  const vocab = baseSymbols();
  for (const [a, b] of merges) vocab.push(a + b);
  vocab.push(BOS_TEXT, EOS_TEXT);
  return vocab;
}

/**
 * Parse a `merges.txt` the way HF's CLIPTokenizer does: strip, split on newlines, skip the first
 * line (the `#version` header) and keep at most `CLIP_MERGE_COUNT` merges of two parts each.
 * `name` is used in error messages.
 */
export function parseMerges(text: string, name: string): [string, string][] {
  const lines = text.trim().split("\n").slice(1, 1 + CLIP_MERGE_COUNT);
  const merges: [string, string][] = [];
  for (let i = 0; i < lines.length; i++) {
    const parts = lines[i].trim().split(/\s+/);
    if (parts.length !== 2 || parts[0] === "") {
      throw new LorakitError(
        `${name}: line ${i + 2} should hold two BPE symbols separated by a space, found ` +
          JSON.stringify(lines[i].slice(0, 80)),
      );
    }
    merges.push([parts[0], parts[1]]);
  }
  return merges;
}

/**
 * The tables the tokenizer runs on. BPE works on integer "symbols" (base symbols 0..511, one
 * per merge after that); `symbolId` maps a symbol to its token id. For CLIP's own vocabulary the
 * two numberings coincide, but a vocabulary read from files is free to number tokens otherwise.
 */
export interface BpeModel {
  /** Where the vocabulary came from (a folder, or "built-in"), for messages. */
  readonly source: string;
  /** Pair key `first * stride + second` -> merge rank (lower merges first). */
  readonly pairRank: Map<number, number>;
  /** Multiplier of the first symbol in a pair key (a power of two above every symbol). */
  readonly stride: number;
  /** Merge rank -> the symbol it produces. */
  readonly mergeResult: Int32Array;
  /** Symbol -> token id; symbols missing from the vocabulary map to the unknown id (EOS). */
  readonly symbolId: Int32Array;
  /** Token id of `<|startoftext|>`. */
  readonly bos: number;
  /** Token id of `<|endoftext|>`. */
  readonly eos: number;
  /** Number of token ids (49408 for CLIP). */
  readonly vocabSize: number;
  /** Token id -> token string (byte characters, `</w>`), built on first use. */
  tokenText(): readonly string[];
  /** Pad token string named by the folder's tokenizer config, if any. */
  readonly padText?: string;
  /** Token string -> id, when the vocabulary came from a file; null for the derived one. */
  readonly encoder: ReadonlyMap<string, number> | null;
}

function strideFor(symbols: number): number {
  let s = 1;
  while (s < symbols) s *= 2;
  return s;
}

/**
 * Tables for CLIP's derived vocabulary from merges given as id pairs (each part an earlier
 * token id), the compact form the built-in copy is shipped in. Needs no strings at all.
 */
export function bpeModelFromIdPairs(first: Int32Array, second: Int32Array): BpeModel {
  const n = first.length;
  const symbols = 512 + n;
  const stride = strideFor(symbols);
  const pairRank = new Map<number, number>();
  const mergeResult = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    const a = first[r], b = second[r];
    if (a < 0 || b < 0 || a >= 512 + r || b >= 512 + r) {
      throw new LorakitError(
        `built-in CLIP vocabulary: merge ${r} joins tokens ${a} and ${b}, which do not exist ` +
          `before it; the packed data is corrupt (regenerate it with scripts/pack_vocab.ts)`,
      );
    }
    // Python's dict keeps the last rank for a repeated pair; CLIP has none, but stay faithful.
    pairRank.set(a * stride + b, r);
    mergeResult[r] = 512 + r;
  }
  const symbolId = new Int32Array(symbols);
  for (let s = 0; s < symbols; s++) symbolId[s] = s;
  let text: string[] | null = null;
  return {
    source: "built-in",
    pairRank,
    stride,
    mergeResult,
    symbolId,
    bos: symbols,
    eos: symbols + 1,
    vocabSize: symbols + 2,
    encoder: null,
    tokenText(): readonly string[] {
      if (text === null) {
        const t = baseSymbols();
        for (let r = 0; r < n; r++) t.push(t[first[r]] + t[second[r]]);
        t.push(BOS_TEXT, EOS_TEXT);
        text = t;
      }
      return text;
    },
  };
}

/**
 * Tables from string merges and a token -> id encoder (a `vocab.json`); with `encoder` null the
 * vocabulary is derived from the merges. `source` names it in errors.
 */
export function bpeModelFromMerges(
  merges: readonly (readonly [string, string])[],
  encoder: ReadonlyMap<string, number> | null,
  source: string,
  padText?: string,
): BpeModel {
  const enc = encoder ?? new Map(deriveClipVocab(merges).map((t, i) => [t, i] as [string, number]));
  const bos = enc.get(BOS_TEXT), eos = enc.get(EOS_TEXT);
  if (bos === undefined || eos === undefined) {
    throw new LorakitError(
      `${source}: expected a CLIP vocabulary with ${BOS_TEXT} and ${EOS_TEXT} tokens, ` +
        `found a vocabulary without them`,
    );
  }
  const symbolOf = new Map<string, number>();
  const symbolText = baseSymbols();
  symbolText.forEach((s, i) => symbolOf.set(s, i));
  const intern = (s: string): number => {
    let id = symbolOf.get(s);
    if (id === undefined) {
      id = symbolText.length;
      symbolText.push(s);
      symbolOf.set(s, id);
    }
    return id;
  };
  const pairs: number[] = [];
  for (const [a, b] of merges) pairs.push(intern(a), intern(b), intern(a + b));
  const stride = strideFor(symbolText.length);
  const pairRank = new Map<number, number>();
  const mergeResult = new Int32Array(merges.length);
  for (let r = 0; r < merges.length; r++) {
    pairRank.set(pairs[3 * r] * stride + pairs[3 * r + 1], r);
    mergeResult[r] = pairs[3 * r + 2];
  }
  // HF's CLIPTokenizer maps a symbol missing from vocab.json to its unknown token, <|endoftext|>.
  const symbolId = Int32Array.from(symbolText, (s) => enc.get(s) ?? eos);
  let vocabSize = 0;
  for (const id of enc.values()) vocabSize = Math.max(vocabSize, id + 1);
  let text: string[] | null = null;
  return {
    source,
    pairRank,
    stride,
    mergeResult,
    symbolId,
    bos,
    eos,
    vocabSize,
    encoder: enc,
    padText,
    tokenText(): readonly string[] {
      if (text === null) {
        text = new Array<string>(vocabSize).fill("");
        for (const [t, i] of enc) text[i] = t;
      }
      return text;
    },
  };
}

/**
 * Undo the byte-to-character mapping of a token string sequence: `</w>` becomes a space and the
 * bytes are decoded as UTF-8 with replacement, as openai/CLIP's `decode` does.
 */
export function decodeTokenText(tokens: readonly string[]): string {
  const joined = tokens.join("");
  const bytes: number[] = [];
  for (let i = 0; i < joined.length; i++) {
    if (joined.startsWith(END_OF_WORD, i)) {
      bytes.push(0x20);
      i += END_OF_WORD.length - 1;
      continue;
    }
    const b = CHAR_BYTE[joined.charCodeAt(i)] ?? -1;
    if (b >= 0) {
      bytes.push(b);
    } else {
      // Special tokens and characters outside the byte alphabet pass through as UTF-8.
      for (const x of new TextEncoder().encode(joined[i])) bytes.push(x);
    }
  }
  return new TextDecoder("utf-8").decode(new Uint8Array(bytes));
}
