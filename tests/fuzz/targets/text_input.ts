/**
 * How the text targets read their input and bound their allocations: bytes decoded as UTF-8 with
 * U+FFFD for invalid sequences (so byte-level damage still reaches the parser), and buffers of at
 * most 64 x the input plus 1 MiB.
 *
 * @module
 */

const decoder = new TextDecoder();

/** The input as text. */
export function inputText(input: Uint8Array): string {
  return decoder.decode(input);
}

export const TEXT_BOUND_TEXT = "64 x input + 1 MiB per buffer";

export function textBound(n: number): number {
  return 64 * n + (1 << 20);
}

const enc = new TextEncoder();

/** Seeds from texts (no layout: text formats have no binary length fields). */
export function textSeeds(texts: string[]): Promise<{ bytes: Uint8Array }[]> {
  return Promise.resolve(texts.map((t) => ({ bytes: enc.encode(t) })));
}
