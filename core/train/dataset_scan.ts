/**
 * Scanning a blueprint's subsets the way kohya's DreamBoothDataset and FineTuningDataset load
 * them: image files, captions (with the class-token fallback), repeats, regularization balancing,
 * tag frequencies for `ss_tag_frequency`; then the buckets (`make_buckets`). Image sizes come from
 * file headers, and with an {@link ImageChecker} every image is also decoded once; an image that
 * cannot be read is reported in `skipped` and left out of the counts and buckets, never fatal. A
 * missing image folder or metadata file is an error naming it.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { baseName, exists, isDirectory, joinPath, listDir, readText } from "../io/fs.ts";
import type { Size } from "./buckets.ts";
import { countTagFrequency } from "./captions.ts";
import type { ImageChecker } from "./image_check.ts";
import type { DatasetBlueprint, SubsetParams } from "../kohya/dataset_config.ts";
import { readImageSize } from "./image_size.ts";

/** kohya's IMAGE_EXTENSIONS (without the optional AVIF/JPEG-XL plug-ins); matched exactly. */
export const IMAGE_EXTENSIONS = [
  ".png",
  ".jpg",
  ".jpeg",
  ".webp",
  ".bmp",
  ".PNG",
  ".JPG",
  ".JPEG",
  ".WEBP",
  ".BMP",
];

/** One training image (kohya's ImageInfo). */
export interface ImageEntry {
  /** kohya's image_key: the path (DreamBooth) or the metadata key (fine-tuning). */
  key: string;
  path: string;
  caption: string;
  /** Repeats per epoch; for regularization images, after balancing. */
  numRepeats: number;
  isReg: boolean;
  /** Index into the dataset's `subsets`. */
  subset: number;
  size: Size;
  bucket?: Size;
  resized?: Size;
}

/** The result of {@link scanDataset}. */
export interface ScannedDataset {
  images: ImageEntry[];
  /** Files left out, with the reason (unreadable header, missing image, ...). */
  skipped: { path: string; reason: string }[];
  /** Image files found (listed or named by metadata), usable or not. */
  imagesFound: number;
  warnings: string[];
  /** `ss_tag_frequency`: folder or metadata file name -> tag -> count. */
  tagFrequency: Record<string, Record<string, number>>;
  /** Images in each subset (kohya's `img_count`; 0 for ignored subsets). */
  imageCounts: number[];
  numTrainImages: number;
  numRegImages: number;
  /** Fine-tuning metadata with `train_resolution` on every image: the buckets are those sizes. */
  metadataBuckets: Size[] | null;
}

/**
 * Load every subset of one dataset. With `checker`, every image that has a readable header is
 * also decoded, and one that does not decode is skipped like one whose header is bad.
 */
export async function scanDataset(
  dataset: DatasetBlueprint,
  checker?: ImageChecker,
): Promise<ScannedDataset> {
  const out: ScannedDataset = {
    images: [],
    skipped: [],
    imagesFound: 0,
    warnings: [],
    tagFrequency: {},
    imageCounts: dataset.subsets.map(() => 0),
    numTrainImages: 0,
    numRegImages: 0,
    metadataBuckets: null,
  };
  if (dataset.isDreambooth) await scanDreambooth(dataset.subsets, out, checker);
  else await scanFineTuning(dataset.subsets, out, checker);
  return out;
}

/** Decode `entries`' images with `checker`; those that fail go to `out.skipped`, the rest back. */
async function keepDecodable(
  entries: ImageEntry[],
  out: ScannedDataset,
  checker: ImageChecker | undefined,
): Promise<ImageEntry[]> {
  if (!checker || entries.length === 0) return entries;
  const bad = await checker.check(entries.map((e) => e.path));
  for (const e of entries) {
    const reason = bad.get(e.path);
    if (reason !== undefined) out.skipped.push({ path: e.path, reason });
  }
  return bad.size === 0 ? entries : entries.filter((e) => !bad.has(e.path));
}

/** Image files of a folder as kohya's `glob_images(dir, "*")`: no hidden files, sorted. */
export async function listImages(dir: string): Promise<string[]> {
  if (!(await isDirectory(dir))) throw new LorakitError(`${dir}: image folder not found`);
  return (await listDir(dir))
    .filter((e) => !e.isDirectory && !e.name.startsWith("."))
    .filter((e) => IMAGE_EXTENSIONS.some((x) => e.name.endsWith(x) && e.name.length > x.length))
    .map((e) => joinPath(dir, e.name))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * kohya's `read_caption`: `<image stem><ext>`, else the same with a face-crop suffix
 * `_cx_cy_w_h` removed; the first line (or, with wildcards, all non-empty lines). Null when no
 * caption file exists; an empty file or one that is not UTF-8 is an error naming it.
 */
export async function readCaption(
  imagePath: string,
  extension: string,
  enableWildcard: boolean,
): Promise<string | null> {
  const dot = imagePath.lastIndexOf(".");
  const base = dot > imagePath.lastIndexOf("/") ? imagePath.slice(0, dot) : imagePath;
  const tokens = base.split("_");
  const faceBase = tokens.length >= 5 ? tokens.slice(0, -4).join("_") : base;
  for (const candidate of [base + extension, faceBase + extension]) {
    if (!(await exists(candidate)) || (await isDirectory(candidate))) continue;
    const text = (await readText(candidate)).replace(/\r\n?/g, "\n");
    if (text.length === 0) throw new LorakitError(`${candidate}: caption file is empty`);
    const lines = text.split("\n");
    if (lines[lines.length - 1] === "") lines.pop();
    if (enableWildcard) return lines.map((l) => l.trim()).filter((l) => l !== "").join("\n");
    return lines[0].trim();
  }
  return null;
}

async function sizeOrSkip(path: string, out: ScannedDataset): Promise<Size | null> {
  try {
    const s = await readImageSize(path);
    return [s.width, s.height];
  } catch (e) {
    if (!(e instanceof LorakitError)) throw e;
    out.skipped.push({ path, reason: e.message });
    return null;
  }
}

/** kohya's subset skips: no repeats, or a folder or file already used (the first one wins). */
function skippedSubset(
  key: "image_dir" | "metadata_file",
  name: string,
  repeats: number,
  seen: Set<string>,
  warnings: string[],
): boolean {
  if (repeats < 1) {
    warnings.push(`ignore subset with ${key}='${name}': num_repeats is less than 1`);
    return true;
  }
  if (seen.has(name)) {
    warnings.push(`ignore duplicated subset with ${key}='${name}': use the first one`);
    return true;
  }
  seen.add(name);
  return false;
}

async function scanDreambooth(
  subsets: SubsetParams[],
  out: ScannedDataset,
  checker: ImageChecker | undefined,
): Promise<void> {
  const seen = new Set<string>();
  const reg: ImageEntry[] = [];
  let numTrain = 0;
  let numReg = 0;
  for (const [index, s] of subsets.entries()) {
    const dir = s.image_dir ?? "";
    if (skippedSubset("image_dir", dir, s.num_repeats, seen, out.warnings)) continue;
    if (s.cache_info) {
      out.warnings.push(`${dir}: cache_info ignored; lorakit reads sizes from image headers`);
    }
    let entries: ImageEntry[] = [];
    const captions: string[] = [];
    const missing: string[] = [];
    for (const path of await listImages(dir)) {
      out.imagesFound++;
      let caption = await readCaption(path, s.caption_extension, s.enable_wildcard);
      if (caption === null) {
        missing.push(path);
        caption = s.class_tokens ?? "";
      }
      // kohya counts tags over every caption it found, readable image or not.
      captions.push(caption);
      const size = await sizeOrSkip(path, out);
      if (size === null) continue;
      entries.push({
        key: path,
        path,
        caption,
        numRepeats: s.num_repeats,
        isReg: s.is_reg,
        subset: index,
        size,
      });
    }
    entries = await keepDecodable(entries, out, checker);
    const tf = (out.tagFrequency[baseName(dir)] ??= Object.create(null));
    countTagFrequency(captions, tf);
    if (missing.length > 0) {
      out.warnings.push(
        `No caption file found for ${missing.length} images in ${dir}; ` +
          (s.class_tokens !== null
            ? `using class tokens "${s.class_tokens}"`
            : "using empty captions") +
          `: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ", ..." : ""}`,
      );
    }
    if (entries.length < 1) {
      out.warnings.push(`ignore subset with image_dir='${dir}': no images found`);
      continue;
    }
    if (s.is_reg) {
      numReg += s.num_repeats * entries.length;
      reg.push(...entries);
    } else {
      numTrain += s.num_repeats * entries.length;
      out.images.push(...entries);
    }
    out.imageCounts[index] = entries.length;
  }
  out.numTrainImages = numTrain;
  out.numRegImages = numReg;
  if (numTrain < numReg) out.warnings.push("some of reg images are not used");
  if (numReg === 0) {
    out.warnings.push("no regularization images");
    return;
  }
  // kohya's balancing: register reg images in order until their repeats reach the train count,
  // then keep adding one repeat per image, round-robin, until they do.
  let n = 0;
  let first = true;
  while (n < numTrain) {
    for (const info of reg) {
      if (first) {
        out.images.push(info);
        n += info.numRepeats;
      } else {
        info.numRepeats += 1;
        n += 1;
      }
      if (n >= numTrain) break;
    }
    first = false;
  }
}

async function scanFineTuning(
  subsets: SubsetParams[],
  out: ScannedDataset,
  checker: ImageChecker | undefined,
): Promise<void> {
  const seen = new Set<string>();
  const recorded = new Map<string, Size>();
  let allRecorded = true;
  for (const [index, s] of subsets.entries()) {
    const file = s.metadata_file ?? "";
    if (skippedSubset("metadata_file", file, s.num_repeats, seen, out.warnings)) continue;
    if (!(await exists(file))) throw new LorakitError(`${file}: metadata file not found`);
    let metadata: unknown;
    try {
      metadata = JSON.parse(await readText(file));
    } catch (e) {
      if (e instanceof LorakitError) throw e;
      throw new LorakitError(`${file}: not valid JSON metadata (${(e as Error).message})`);
    }
    if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
      throw new LorakitError(`${file}: expected a JSON object mapping image keys to metadata`);
    }
    const records = Object.entries(metadata as Record<string, Record<string, unknown>>);
    if (records.length < 1) {
      out.warnings.push(`ignore subset with '${file}': no image entries found`);
      continue;
    }
    const tags: string[] = [];
    let entries: ImageEntry[] = [];
    for (const [key, md] of records) {
      out.imagesFound++;
      const path = await findImage(key, s.image_dir);
      if (path === null) {
        out.skipped.push({
          path: key,
          reason: `${file}: no image found for key ${JSON.stringify(key)}`,
        });
        continue;
      }
      const caption = metadataCaption(md ?? {}, s, tags);
      const res = md?.train_resolution;
      let size: Size | null;
      if (hasTrainResolution(res)) size = [res[0], res[1]];
      else {
        size = await sizeOrSkip(path, out);
        if (size === null) continue;
      }
      entries.push({
        key,
        path,
        caption,
        numRepeats: s.num_repeats,
        isReg: false,
        subset: index,
        size,
      });
    }
    entries = await keepDecodable(entries, out, checker);
    for (const e of entries) {
      const res = (metadata as Record<string, Record<string, unknown>>)[e.key]?.train_resolution;
      if (hasTrainResolution(res)) recorded.set(`${res[0]}x${res[1]}`, [res[0], res[1]]);
      else allRecorded = false;
    }
    out.images.push(...entries);
    // kohya counts every metadata record (a missing image stops it); the images left out here
    // are not counted.
    out.numTrainImages += entries.length * s.num_repeats;
    countTagFrequency(tags, out.tagFrequency[baseName(file)] ??= Object.create(null));
    out.imageCounts[index] = entries.length;
  }
  // kohya uses the metadata's sizes as the bucket list only when every image has one.
  out.metadataBuckets = allRecorded && out.images.length > 0 ? [...recorded.values()] : null;
}

/** A fine-tuning record's `train_resolution`: two positive integers (the bucket size). */
function hasTrainResolution(res: unknown): res is [number, number] {
  return Array.isArray(res) && res.length === 2 && res.every((v) => Number.isInteger(v) && v > 0);
}

/** kohya: the key itself if it is a file, else `<image_dir>/<key><ext>` for each extension. */
async function findImage(key: string, imageDir: string | null): Promise<string | null> {
  if ((await exists(key)) && !(await isDirectory(key))) return key;
  if (imageDir === null) return null;
  const found: string[] = [];
  for (const ext of IMAGE_EXTENSIONS) {
    const p = joinPath(imageDir, key + ext);
    if (await exists(p)) found.push(p);
  }
  found.sort();
  return found[0] ?? null;
}

/** kohya's caption/tags combination for one metadata entry; records tags for the frequency. */
function metadataCaption(md: Record<string, unknown>, s: SubsetParams, tagsOut: string[]): string {
  let caption = typeof md.caption === "string" ? md.caption : null;
  let tags = typeof md.tags === "string" ? md.tags : null;
  if (caption === null) {
    caption = tags;
    tags = null;
  }
  if (s.enable_wildcard) {
    if (tags !== null) tags = tags.split("\n").join(s.caption_separator);
    if (caption !== null && tags !== null) {
      caption = caption.split("\n").filter((l) => l.trim() !== "")
        .map((l) => `${l}${s.caption_separator}${tags}`).join("\n");
    }
  } else if (tags !== null && tags.length > 0) {
    caption = caption + s.caption_separator + tags;
    tagsOut.push(tags);
  }
  return caption ?? "";
}
