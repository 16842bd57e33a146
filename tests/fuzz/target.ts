/**
 * What a fuzz target is (a parser of untrusted input, its valid seed inputs, its mutations and
 * its allocation bound) and how one case's input is made from the seeds: one to three stacked
 * mutations, byte-level, layout-aware (length fields, whole chunks), structural (edits of the
 * format's own data model) or text-level, picked by the case's own generator.
 *
 * @module
 */
import {
  type Layout,
  MAX_INPUT_BYTES,
  mutateBytes,
  mutateChunk,
  setField,
} from "./mutate_bytes.ts";
import { mutateText, type TextOptions } from "./mutate_text.ts";
import type { Rng } from "./rng.ts";

/** A valid input to start mutating from. */
export interface Seed {
  bytes: Uint8Array;
  /** Its length fields and chunks (none when omitted). */
  layout?: Layout;
}

/** A structural mutation: an edit made in the format's terms (may rebuild the container). */
export type Structural = (seed: Seed, r: Rng) => Uint8Array | Promise<Uint8Array>;

/** One parser under test. */
export interface FuzzTarget {
  /** Short name used by `--only` and in reports. */
  readonly name: string;
  /** The entry points exercised. */
  readonly what: string;
  /** The allocation bound in words, e.g. "4 x input + 64 KiB per buffer". */
  readonly boundText: string;
  /** Largest single buffer (bytes) a case with `inputBytes` of input may ask for. */
  allocBound(inputBytes: number): number;
  /** Valid inputs, built in code (deterministic: every worker builds the same list). */
  seeds(): Promise<Seed[]>;
  /** Format-specific edits (each picked as often as one generic mutation). */
  readonly structural?: readonly Structural[];
  /** Present for text formats: text mutations are used, on the UTF-8 decoded input. */
  readonly text?: TextOptions;
  /** Repairs checksums after a mutation (applied to about half the cases), so data goes deeper. */
  fixup?(bytes: Uint8Array): Uint8Array;
  /**
   * Parse `input` fully (read every tensor, decode every pixel) and check what it returns. A
   * rejection is a LorakitError; any other exception is a crash.
   */
  run(input: Uint8Array): Promise<void>;
}

const utf8 = new TextEncoder();
const lossy = new TextDecoder();

/** The input of one case, made from `seeds` with the case's generator. */
export async function makeInput(t: FuzzTarget, seeds: Seed[], r: Rng): Promise<Uint8Array> {
  const seed = r.pick(seeds);
  const other = r.pick(seeds).bytes;
  const layout = seed.layout;
  let bytes = seed.bytes;
  const steps = r.chance(0.7) ? 1 : 2 + r.int(2);
  // The layout's offsets hold until a mutation moves bytes: field edits are in place, so a
  // length can be set and then its chunk repeated, which is what reaches the slow paths.
  let layoutValid = layout !== undefined;
  for (let k = 0; k < steps; k++) {
    const kinds: string[] = ["bytes"];
    if (t.text) kinds.push("text", "text", "text");
    if (t.structural && t.structural.length > 0) kinds.push("structural", "structural");
    if (layoutValid && layout!.fields.length > 0) kinds.push("field", "field");
    if (layoutValid && layout!.chunks.length > 0) kinds.push("chunk", "chunk");
    const kind = r.pick(kinds);
    if (kind === "text") {
      bytes = utf8.encode(mutateText(lossy.decode(bytes), r, t.text!));
    } else if (kind === "structural") {
      bytes = await r.pick(t.structural!)({ bytes, layout: layoutValid ? layout : undefined }, r);
    } else if (kind === "field") bytes = setField(bytes, r.pick(layout!.fields), r);
    else if (kind === "chunk") bytes = mutateChunk(bytes, r.pick(layout!.chunks), r);
    else bytes = mutateBytes(bytes, r, other);
    if (kind !== "field") layoutValid = false;
  }
  if (t.fixup && r.chance(0.5)) bytes = t.fixup(bytes);
  return bytes.length > MAX_INPUT_BYTES ? bytes.slice(0, MAX_INPUT_BYTES) : bytes;
}

/** `n` bytes as "12.3 MiB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}
