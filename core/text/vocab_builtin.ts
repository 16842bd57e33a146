/**
 * The built-in CLIP vocabulary: unpacks `vocab_builtin_data.ts` (base64 of gzip, see
 * scripts/pack_vocab.ts) with web-standard APIs only, so it works without file-system access,
 * in `deno compile` binaries and in a browser.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { type BpeModel, bpeModelFromIdPairs } from "./vocab_bpe.ts";
import {
  PACKED_MERGE_COUNT,
  PACKED_MERGES_GZ_BASE64,
  PACKED_MERGES_SHA256,
} from "./vocab_builtin_data.ts";

/** The built-in merges as token-id pairs: merge `r` joins `first[r]` and `second[r]`. */
export interface MergeIdPairs {
  first: Int32Array;
  second: Int32Array;
}

function corrupt(what: string): LorakitError {
  return new LorakitError(
    `built-in CLIP vocabulary (core/text/vocab_builtin_data.ts): ${what}; the file is corrupt, ` +
      `regenerate it with scripts/pack_vocab.ts`,
  );
}

/** Decode the packed merges into id pairs, checking their length and SHA-256. */
export async function unpackBuiltinMerges(): Promise<MergeIdPairs> {
  const binary = atob(PACKED_MERGES_GZ_BASE64);
  const gz = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) gz[i] = binary.charCodeAt(i);
  const stream = new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"));
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  const n = PACKED_MERGE_COUNT;
  if (bytes.length !== 4 * n) {
    throw corrupt(`expected ${4 * n} bytes after gunzip, found ${bytes.length}`);
  }
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (x) => x.toString(16).padStart(2, "0")).join("");
  if (hex !== PACKED_MERGES_SHA256) throw corrupt("SHA-256 of the unpacked merges does not match");
  const first = new Int32Array(n), second = new Int32Array(n);
  for (let r = 0; r < n; r++) {
    first[r] = bytes[r] | (bytes[n + r] << 8);
    second[r] = bytes[2 * n + r] | (bytes[3 * n + r] << 8);
  }
  return { first, second };
}

// One unpacking per process: the tables are immutable and every tokenizer can share them.
let cached: Promise<BpeModel> | null = null;

/** The BPE tables of the built-in CLIP vocabulary (unpacked once, then shared). */
export function builtinBpeModel(): Promise<BpeModel> {
  if (cached === null) {
    cached = unpackBuiltinMerges().then(({ first, second }) => bpeModelFromIdPairs(first, second));
    cached.catch(() => (cached = null));
  }
  return cached;
}
