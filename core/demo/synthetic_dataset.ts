/**
 * The demo's LoRA training data, drawn from the base model's synthetic world (`world.ts`): 64x64
 * flat shapes on plain backgrounds whose objects are ORANGE, a colour the base model never saw,
 * captioned with the trigger word at the caption's start (`"lkdemo circle on a blue
 * background"`, see {@link triggerCaption}); plus regularization images of the base world (palette colours, captions without
 * the trigger) so the LoRA learns the trigger rather than "everything is orange". Also writes the
 * kohya dataset TOML (`--dataset_config`) that trains on them. Deterministic for a seed.
 *
 * @module
 */
import { encodePng } from "../image/encode.ts";
import type { RasterImage } from "../image/image.ts";
import { joinPath, makeDir, writeFileAtomic } from "../io/fs.ts";
import {
  COLOUR_NAMES,
  drawScene,
  ORANGE,
  plainCaption,
  plainScene,
  type Scene,
  WORLD_COLOURS,
  WORLD_SHAPES,
  WORLD_SIZE,
  worldRng,
} from "./world.ts";

/** One image of the demo dataset. */
export interface DemoImageSpec {
  /** File stem, e.g. `img_003`. */
  stem: string;
  scene: Scene;
  caption: string;
}

/**
 * The caption of an orange object: `"<trigger> <shape> on a <background> background"`. The
 * trigger "lkdemo" is two CLIP tokens ("lk", "demo") standing where the base world's captions
 * have "a <colour>", so every later word keeps its position: the base model's cross-attention
 * finds the background colour where it learnt to, and the trigger's second token sits in the
 * object colour's place.
 */
export function triggerCaption(trigger: string, shape: string, background: string): string {
  return `${trigger} ${shape} on a ${background} background`;
}

/**
 * `count` image specs drawn from `seed`: with a trigger word, orange objects captioned by
 * {@link triggerCaption}; without one (regularization), palette
 * objects with the base world's captions.
 */
export function demoImageSpecs(count: number, seed: number, trigger: string): DemoImageSpec[] {
  const r = worldRng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const out: DemoImageSpec[] = [];
  for (let i = 0; i < count; i++) {
    const shape = WORLD_SHAPES[i % WORLD_SHAPES.length];
    const background = pick(COLOUR_NAMES);
    let colour = pick(COLOUR_NAMES);
    while (colour === background) colour = pick(COLOUR_NAMES);
    const caption = trigger === ""
      ? plainCaption(colour, shape, background)
      : triggerCaption(trigger, shape, background);
    const rgb = trigger === "" ? WORLD_COLOURS[colour] : ORANGE;
    out.push({
      stem: `img_${String(i).padStart(3, "0")}`,
      scene: plainScene(shape, rgb, WORLD_COLOURS[background], caption, r),
      caption,
    });
  }
  return out;
}

/** Draw one image (RGB, 64x64). */
export function drawDemoImage(spec: DemoImageSpec): RasterImage {
  return drawScene(spec.scene, WORLD_SIZE);
}

/** Options of {@link writeSyntheticDataset}. */
export interface SyntheticDatasetOptions {
  /** Folder to create `train/`, `reg/` and `dataset.toml` in (absolute, as the TOML names it). */
  dir: string;
  /** Training images (at least 1). */
  trainImages: number;
  /** Regularization images (0 for none). */
  regImages: number;
  trigger: string;
  seed: number;
  /** `num_repeats` of the training subset. */
  repeats?: number;
  batchSize?: number;
}

/** What {@link writeSyntheticDataset} wrote. */
export interface SyntheticDataset {
  tomlPath: string;
  trainDir: string;
  regDir: string | null;
  train: DemoImageSpec[];
  reg: DemoImageSpec[];
  /** PNG bytes of every training image, in `train` order (for the report's thumbnails). */
  trainPngs: Uint8Array[];
}

/** A TOML basic string (JSON's escapes are valid TOML escapes). */
function tomlString(s: string): string {
  return JSON.stringify(s);
}

/**
 * kohya's dataset config for the demo: one DreamBooth dataset at 64x64 (the base model's
 * resolution) with bucketing on, so kohya's bucket code runs; captions from `.txt` files; the
 * regularization subset (if any) with `is_reg = true`.
 */
export function demoDatasetToml(
  trainDir: string,
  regDir: string | null,
  opts: { repeats?: number; batchSize?: number; classTokens?: string } = {},
): string {
  const lines = [
    "# lorakit demo dataset (kohya --dataset_config format)",
    "[general]",
    "shuffle_caption = false",
    'caption_extension = ".txt"',
    "keep_tokens = 1",
    "",
    "[[datasets]]",
    "resolution = [64, 64]",
    `batch_size = ${opts.batchSize ?? 1}`,
    "enable_bucket = true",
    "min_bucket_reso = 64",
    "max_bucket_reso = 64",
    "bucket_reso_steps = 64",
    "",
    "  [[datasets.subsets]]",
    `  image_dir = ${tomlString(trainDir)}`,
    `  num_repeats = ${opts.repeats ?? 1}`,
  ];
  if (regDir !== null) {
    lines.push(
      "",
      "  [[datasets.subsets]]",
      `  image_dir = ${tomlString(regDir)}`,
      "  is_reg = true",
      `  class_tokens = ${tomlString(opts.classTokens ?? "a shape")}`,
      "  num_repeats = 1",
    );
  }
  return lines.join("\n") + "\n";
}

async function writeSubset(dir: string, specs: DemoImageSpec[]): Promise<Uint8Array[]> {
  await makeDir(dir);
  const pngs: Uint8Array[] = [];
  for (const s of specs) {
    const png = await encodePng(drawDemoImage(s));
    await writeFileAtomic(joinPath(dir, `${s.stem}.png`), png);
    await writeFileAtomic(joinPath(dir, `${s.stem}.txt`), s.caption + "\n");
    pngs.push(png);
  }
  return pngs;
}

/** Draw and write the dataset (PNG + caption per image) and its TOML. */
export async function writeSyntheticDataset(
  opts: SyntheticDatasetOptions,
): Promise<SyntheticDataset> {
  const train = demoImageSpecs(Math.max(1, opts.trainImages), opts.seed, opts.trigger);
  const reg = demoImageSpecs(opts.regImages, opts.seed + 7919, "");
  const trainDir = joinPath(opts.dir, "train");
  const regDir = reg.length > 0 ? joinPath(opts.dir, "reg") : null;
  const trainPngs = await writeSubset(trainDir, train);
  if (regDir !== null) await writeSubset(regDir, reg);
  const tomlPath = joinPath(opts.dir, "dataset.toml");
  await writeFileAtomic(
    tomlPath,
    demoDatasetToml(trainDir, regDir, { repeats: opts.repeats, batchSize: opts.batchSize }),
  );
  return { tomlPath, trainDir, regDir, train, reg, trainPngs };
}
