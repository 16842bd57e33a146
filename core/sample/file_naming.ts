/**
 * kohya gen_img's output file names:
 * - a prompt's `--f name.png` (with `_<i>` before the extension when a prompt makes several
 *   images), made unique in the output folder with `_1`, `_2`, ... (kohya's
 *   `first_available_filename`);
 * - `--use_original_file_name` with img2img: the init image's stem + `.png`;
 * - `--sequential_file_name`: `im_<prefix><n:06d>.png`, n counted from 1;
 * - else `im_<YYYYMMDDHHMMSS>_<prefix><i:03d>_<seed>.png`, i the image's index in its batch.
 * The prefix is `0` (first stage) or `1` (second stage) with the highres fix, else empty.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** The highres-fix stage prefix: "" without the fix, "0" first stage, "1" final stage. */
export type HighresPrefix = "" | "0" | "1";

/** kohya's `time.strftime("%Y%m%d%H%M%S", time.localtime())`. */
export function timestampString(d: Date = new Date()): string {
  const p = (n: number, w = 2): string => String(n).padStart(w, "0");
  return `${p(d.getFullYear(), 4)}${p(d.getMonth() + 1)}${p(d.getDate())}` +
    `${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** What decides one image's file name. */
export interface FileNameInput {
  /** A prompt's `--f` value (already suffixed by {@link promptFileName}), or null. */
  promptFileName: string | null;
  /** The img2img source's file name when `--use_original_file_name` applies, else null. */
  originalFileName: string | null;
  /** `--sequential_file_name`. */
  sequential: boolean;
  /** `timestampString()` of the batch. */
  timestamp: string;
  highresPrefix: HighresPrefix;
  /** Index of the image in its batch (from 0). */
  indexInBatch: number;
  /** The image's number for sequential names (from 1). */
  sequenceNumber: number;
  /** The recorded seed. */
  seed: number;
}

/** The stem of a file name (`a/b/c.png` -> `c`). */
export function fileStem(path: string): string {
  const base = path.slice(Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/**
 * Check a prompt's `--f` value: a plain `.png` file name (no folders; lorakit writes PNG only).
 * Returns the name; a LorakitError naming `where` otherwise.
 */
export function checkPromptFileName(name: string, where: string): string {
  if (/[/\\]/.test(name) || name === "." || name === ".." || name.trim() === "") {
    throw new LorakitError(
      `${where}: --f: expected a plain file name inside --outdir, found '${name}'`,
    );
  }
  if (!name.toLowerCase().endsWith(".png")) {
    throw new LorakitError(
      `${where}: --f: expected a .png file name (lorakit writes PNG only), found '${name}'`,
    );
  }
  return name;
}

/** kohya: `stem_<i>.ext` for the i-th image of a prompt making several images. */
export function promptFileName(name: string, index: number, several: boolean): string {
  if (!several) return name;
  const dot = name.lastIndexOf(".");
  return dot > 0 ? `${name.slice(0, dot)}_${index}${name.slice(dot)}` : `${name}_${index}`;
}

/** The file name kohya gives an image (before making a `--f` name unique). */
export function outputFileName(x: FileNameInput): string {
  if (x.promptFileName !== null) return x.promptFileName;
  if (x.originalFileName !== null) return `${fileStem(x.originalFileName)}.png`;
  if (x.sequential) {
    return `im_${x.highresPrefix}${String(x.sequenceNumber).padStart(6, "0")}.png`;
  }
  return `im_${x.timestamp}_${x.highresPrefix}${
    String(x.indexInBatch).padStart(3, "0")
  }_${x.seed}.png`;
}

/**
 * kohya's `first_available_filename`: `name` when free, else `stem_<n>.ext` with the smallest
 * n >= 1 that is free (found, like kohya, by exponential then binary search, which assumes the
 * taken numbers are contiguous from 1).
 */
export async function firstAvailableFileName(
  name: string,
  taken: (candidate: string) => Promise<boolean>,
): Promise<string> {
  if (!(await taken(name))) return name;
  const dot = name.lastIndexOf(".");
  const at = (n: number): string =>
    dot > 0 ? `${name.slice(0, dot)}_${n}${name.slice(dot)}` : `${name}_${n}`;
  let i = 1;
  while (await taken(at(i))) i *= 2;
  let a = Math.floor(i / 2), b = i;
  while (a + 1 < b) {
    const c = Math.floor((a + b) / 2);
    if (await taken(at(c))) a = c;
    else b = c;
  }
  return at(b);
}
