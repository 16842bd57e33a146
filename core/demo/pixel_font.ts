/**
 * A 3x5 pixel font for labelling plots drawn into RGBA buffers: digits, `.`, `-`, `+`, `e`, a
 * space and the lowercase letters the demo's plot labels use. Unknown characters draw as blanks.
 *
 * @module
 */

/** Rows of 3 pixels, top to bottom, `#` set. */
const GLYPHS: Readonly<Record<string, readonly string[]>> = {
  "0": ["###", "#.#", "#.#", "#.#", "###"],
  "1": [".#.", "##.", ".#.", ".#.", "###"],
  "2": ["###", "..#", "###", "#..", "###"],
  "3": ["###", "..#", ".##", "..#", "###"],
  "4": ["#.#", "#.#", "###", "..#", "..#"],
  "5": ["###", "#..", "###", "..#", "###"],
  "6": ["###", "#..", "###", "#.#", "###"],
  "7": ["###", "..#", ".#.", ".#.", ".#."],
  "8": ["###", "#.#", "###", "#.#", "###"],
  "9": ["###", "#.#", "###", "..#", "###"],
  ".": ["...", "...", "...", "...", ".#."],
  "-": ["...", "...", "###", "...", "..."],
  "+": ["...", ".#.", "###", ".#.", "..."],
  "(": [".#.", "#..", "#..", "#..", ".#."],
  ")": [".#.", "..#", "..#", "..#", ".#."],
  " ": ["...", "...", "...", "...", "..."],
  a: ["...", "##.", "..#", "###", "###"],
  c: ["...", "###", "#..", "#..", "###"],
  d: ["..#", "..#", "###", "#.#", "###"],
  e: ["...", "###", "###", "#..", "###"],
  g: ["...", "###", "#.#", "###", "..#"],
  h: ["#..", "#..", "###", "#.#", "#.#"],
  i: [".#.", "...", ".#.", ".#.", ".#."],
  l: ["#..", "#..", "#..", "#..", ".##"],
  m: ["...", "###", "###", "#.#", "#.#"],
  n: ["...", "##.", "#.#", "#.#", "#.#"],
  o: ["...", "###", "#.#", "#.#", "###"],
  p: ["...", "###", "#.#", "###", "#.."],
  r: ["...", "###", "#..", "#..", "#.."],
  s: ["...", ".##", ".#.", "..#", "##."],
  t: [".#.", "###", ".#.", ".#.", ".##"],
  v: ["...", "#.#", "#.#", "#.#", ".#."],
  w: ["...", "#.#", "#.#", "###", "###"],
};

/** Width in pixels of `text` drawn at `scale` (3 pixels and 1 of spacing per character). */
export function textWidth(text: string, scale: number): number {
  return text.length === 0 ? 0 : (text.length * 4 - 1) * scale;
}

/** Height in pixels of one line at `scale`. */
export function textHeight(scale: number): number {
  return 5 * scale;
}

/** Something that can set one pixel. */
export type PixelSink = (x: number, y: number) => void;

/** Draw `text` with its top-left corner at (x, y), each font pixel a `scale` x `scale` block. */
export function drawText(text: string, x: number, y: number, scale: number, put: PixelSink): void {
  let cx = x;
  for (const ch of text) {
    const g = GLYPHS[ch] ?? GLYPHS[ch.toLowerCase()];
    if (g !== undefined) {
      for (let r = 0; r < 5; r++) {
        for (let c = 0; c < 3; c++) {
          if (g[r][c] !== "#") continue;
          for (let dy = 0; dy < scale; dy++) {
            for (let dx = 0; dx < scale; dx++) put(cx + c * scale + dx, y + r * scale + dy);
          }
        }
      }
    }
    cx += 4 * scale;
  }
}
