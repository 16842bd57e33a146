/**
 * The demo's training data, drawn by our own code: flat-coloured shapes (circle, square,
 * triangle, ring) on a plain background, square 64x64 and wide 128x64 images so two aspect
 * buckets appear, each with a caption file `"<trigger>, a red circle on blue"`; plus
 * regularization images of the same kind captioned without the trigger word. Also writes the
 * kohya dataset TOML (`--dataset_config`) that trains on them. Deterministic for a seed.
 *
 * @module
 */
import { encodePng } from "../image/encode.ts";
import { makeImage, type RasterImage } from "../image/image.ts";
import { joinPath, makeDir, writeFileAtomic } from "../io/fs.ts";

/** Colours by caption word. */
export const DEMO_COLOURS: Readonly<Record<string, readonly [number, number, number]>> = {
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 210],
  yellow: [235, 205, 40],
  white: [245, 245, 245],
  black: [20, 20, 20],
  purple: [140, 60, 180],
  orange: [240, 140, 30],
};

/** Shapes by caption word. */
export const DEMO_SHAPES = ["circle", "square", "triangle", "ring"] as const;

/** One shape's name. */
export type DemoShape = typeof DEMO_SHAPES[number];

/** One image of the synthetic dataset. */
export interface DemoImageSpec {
  /** File stem, e.g. `img_003`. */
  stem: string;
  width: number;
  height: number;
  shape: DemoShape;
  colour: string;
  background: string;
  /** Centre and size as fractions of the image height. */
  cx: number;
  cy: number;
  size: number;
  caption: string;
}

/** mulberry32 in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` image specs: alternately square (64x64) and wide (128x64), shapes and colour pairs
 * drawn from `seed`, captions `"<trigger>, a <colour> <shape> on <background>"` (no trigger
 * when `trigger` is empty, as for regularization images).
 */
export function demoImageSpecs(count: number, seed: number, trigger: string): DemoImageSpec[] {
  const r = rng(seed);
  const colours = Object.keys(DEMO_COLOURS);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const out: DemoImageSpec[] = [];
  for (let i = 0; i < count; i++) {
    const wide = i % 2 === 1;
    const shape = pick(DEMO_SHAPES);
    const colour = pick(colours);
    let background = pick(colours);
    while (background === colour) background = pick(colours);
    const width = wide ? 128 : 64, height = 64;
    const size = 0.45 + 0.25 * r();
    const cx = (width / height) * (0.35 + 0.3 * r());
    const cy = 0.35 + 0.3 * r();
    const words = `a ${colour} ${shape} on ${background}`;
    out.push({
      stem: `img_${String(i).padStart(3, "0")}`,
      width,
      height,
      shape,
      colour,
      background,
      cx,
      cy,
      size,
      caption: trigger === "" ? words : `${trigger}, ${words}`,
    });
  }
  return out;
}

/** Whether the point (x, y), in units of the image height, lies inside the shape. */
function inside(spec: DemoImageSpec, x: number, y: number): boolean {
  const dx = x - spec.cx, dy = y - spec.cy, h = spec.size / 2;
  switch (spec.shape) {
    case "circle":
      return dx * dx + dy * dy <= h * h;
    case "ring": {
      const d2 = dx * dx + dy * dy;
      return d2 <= h * h && d2 >= (0.55 * h) ** 2;
    }
    case "square":
      return Math.abs(dx) <= h * 0.85 && Math.abs(dy) <= h * 0.85;
    case "triangle": {
      // Apex up; base at cy + h/2 ... apex at cy - h.
      const t = (dy + h) / (1.5 * h);
      return t >= 0 && t <= 1 && Math.abs(dx) <= t * h;
    }
  }
}

/** Draw one image (RGB, 4x4 supersampled edges). */
export function drawDemoImage(spec: DemoImageSpec): RasterImage {
  const img = makeImage(spec.width, spec.height, 3);
  const fg = DEMO_COLOURS[spec.colour], bg = DEMO_COLOURS[spec.background];
  const ss = 4;
  for (let py = 0; py < spec.height; py++) {
    for (let px = 0; px < spec.width; px++) {
      let hits = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const x = (px + (sx + 0.5) / ss) / spec.height;
          const y = (py + (sy + 0.5) / ss) / spec.height;
          if (inside(spec, x, y)) hits++;
        }
      }
      const a = hits / (ss * ss);
      const o = (py * spec.width + px) * 3;
      for (let c = 0; c < 3; c++) img.data[o + c] = Math.round(fg[c] * a + bg[c] * (1 - a));
    }
  }
  return img;
}

/** Options of {@link writeSyntheticDataset}. */
export interface SyntheticDatasetOptions {
  /** Folder to create `train/`, `reg/` and `dataset.toml` in (absolute, as the TOML names it). */
  dir: string;
  /** Training images (at least 1; half square, half wide). */
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
 * kohya's dataset config for the demo: one DreamBooth dataset with bucketing from 64 to 128
 * pixels in steps of 64 at the area of 128x64, so 64x64 and 128x64 images land in two buckets;
 * captions from `.txt` files; the regularization subset (if any) with `is_reg = true`.
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
    "resolution = [128, 64]",
    `batch_size = ${opts.batchSize ?? 1}`,
    "enable_bucket = true",
    "min_bucket_reso = 64",
    "max_bucket_reso = 128",
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
