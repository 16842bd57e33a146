/**
 * The inputs of `lorakit gen_img` read before any model is loaded: the network flags, the
 * img2img sources (kohya's `load_images` and `--W`/`--H` resize) and the prompt lines
 * (`--from_file`, `--prompt`, or the sources' own PNG text as kohya reads it).
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { readImage } from "../core/image/decode.ts";
import { type RasterImage, toRGB } from "../core/image/image.ts";
import { readTextChunks } from "../core/image/png_chunks.ts";
import { resize } from "../core/image/resample.ts";
import { exists, isDirectory, joinPath, listDir, readBytes, readText } from "../core/io/fs.ts";
import { fileStem } from "../core/sample/file_naming.ts";
import type { PromptLine } from "../core/sample/gen_plan.ts";
import type { GenImgArgs } from "./gen_img_args.ts";

/** A `--network_weights` entry. */
export interface NetworkSpec {
  path: string;
  multiplier: number;
  merged: boolean;
  /** File stem (A1111's `<lora:name:...>`). */
  name: string;
  /** First 12 hex digits of `sshs_model_hash`, when recorded. */
  hash?: string;
}

/** img2img sources as loaded (one entry per image, repeated per prompt when prompts came from them). */
export interface InitImages {
  paths: string[];
  images: RasterImage[];
}

const IMAGE_EXTS = [".png", ".jpg", ".jpeg", ".webp"];

/** A LorakitError naming `flag` when `path` does not exist. */
export async function mustExist(path: string, flag: string): Promise<void> {
  if (!(await exists(path))) throw new LorakitError(`${flag}: '${path}' not found`);
}

/** kohya's network flags: one module and one weights file per network. */
export function networkSpecs(a: GenImgArgs): NetworkSpec[] {
  const modules = a.network_module ?? [];
  const weights = a.network_weights ?? [];
  if (modules.length === 0 && weights.length > 0) {
    throw new LorakitError(
      `--network_module: expected one per --network_weights file (networks.lora), found none`,
    );
  }
  const merging = a.network_merge ? modules.length : (a.network_merge_n_models ?? 0);
  return modules.map((m, i) => {
    if (m !== "networks.lora") {
      throw new LorakitError(
        `--network_module: expected networks.lora (the only network lorakit loads), found '${m}'`,
      );
    }
    const path = weights[i];
    if (path === undefined) {
      throw new LorakitError(
        `--network_weights: expected a file for network ${i + 1} (${m}), found none`,
      );
    }
    return {
      path,
      multiplier: a.network_mul?.[i] ?? 1,
      merged: i < merging,
      name: fileStem(path),
    };
  });
}

/** kohya's `load_images`: a file, or a folder's *.png/*.jpg/*.jpeg/*.webp sorted. */
export async function loadInitImages(a: GenImgArgs, highres: boolean): Promise<InitImages> {
  const path = a.image_path!;
  await mustExist(path, "--image_path");
  let paths = [path];
  if (await isDirectory(path)) {
    paths = (await listDir(path))
      .filter((e) => !e.isDirectory && IMAGE_EXTS.some((x) => e.name.endsWith(x)))
      .map((e) => joinPath(path, e.name))
      .sort();
  }
  if (paths.length === 0) throw new LorakitError(`--image_path: no images in '${path}'`);
  const images: RasterImage[] = [];
  for (const p of paths) {
    let img: RasterImage = toRGB(await readImage(p));
    if (a.W !== null && a.H !== null) {
      const s = highres ? a.highres_fix_scale! : 1;
      const w = Math.floor(a.W * s + (highres ? 0.5 : 0));
      const h = Math.floor(a.H * s + (highres ? 0.5 : 0));
      img = resize(img, w, h, "lanczos4");
    }
    images.push(img);
  }
  return { paths, images };
}

/**
 * kohya's `--from_file` rule: every line that is not blank and does not start with `#`, each
 * named `<file> line <n>` for messages.
 */
export function promptFileLines(text: string, file: string): PromptLine[] {
  return text.split(/\r\n|\r|\n/)
    .map((line, i) => ({ text: line, where: `${file} line ${i + 1}` }))
    .filter((l) => l.text.trim().length > 0 && l.text[0] !== "#");
}

/** The prompt lines: `--from_file`, `--prompt`, or (img2img) the sources' PNG text. */
export async function promptLines(a: GenImgArgs, inits: InitImages | null): Promise<PromptLine[]> {
  if (a.from_file !== null) {
    if (a.prompt !== null) {
      console.error("warning: --prompt is ignored with --from_file (as kohya)");
    }
    await mustExist(a.from_file, "--from_file");
    return promptFileLines(await readText(a.from_file), a.from_file);
  }
  if (a.prompt !== null) return [{ text: a.prompt, where: "--prompt" }];
  if (inits === null) {
    throw new LorakitError(
      "no prompt: expected --prompt or --from_file (kohya's interactive mode is not supported)",
    );
  }
  // kohya: prompts from the sources' metadata, each source repeated per image of its prompt.
  const lines: PromptLine[] = [];
  const paths: string[] = [], images: RasterImage[] = [];
  for (const [i, p] of inits.paths.entries()) {
    const bytes = await readBytes(p);
    const text = p.toLowerCase().endsWith(".png") ? readTextChunks(bytes, p) : {};
    if (text.prompt === undefined) {
      throw new LorakitError(
        `${p}: no prompt given and the image has no 'prompt' text to take it from; ` +
          `expected --prompt or --from_file`,
      );
    }
    const neg = text["negative-prompt"];
    lines.push({ text: text.prompt + (neg !== undefined ? ` --n ${neg}` : ""), where: p });
    for (let k = 0; k < a.images_per_prompt; k++) {
      paths.push(p);
      images.push(inits.images[i]);
    }
  }
  inits.paths = paths;
  inits.images = images;
  return lines;
}
