/**
 * The size rule of kohya's `tools/resize_images_to_resolution.py`: shrink an image to at most the
 * pixel area of a target resolution (keeping its aspect ratio, never enlarging), then floor each
 * side to a multiple of `divisibleBy` by a centred crop.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { crop, type RasterImage } from "./image.ts";
import { resize } from "./resample.ts";
import type { Interpolation } from "./resample_tables.ts";

/** One entry of `--max_resolution`: its text as given (used in file names) and its area. */
export interface MaxResolution {
  readonly text: string;
  readonly width: number;
  readonly height: number;
}

/** Parse `"512x512,384x384"` (entries trimmed, as kohya does); `flag` names the option in errors. */
export function parseMaxResolutions(value: string, flag = "--max_resolution"): MaxResolution[] {
  const out: MaxResolution[] = [];
  for (const raw of value.split(",")) {
    const text = raw.trim();
    const m = /^\s*\+?(\d+)\s*x\s*\+?(\d+)\s*$/.exec(text);
    const width = m ? Number(m[1]) : NaN;
    const height = m ? Number(m[2]) : NaN;
    if (!m || width < 1 || height < 1) {
      throw new LorakitError(
        `${flag}: expected comma-separated WIDTHxHEIGHT entries such as 512x512,384x384, found "${text}"`,
      );
    }
    out.push({ text, width, height });
  }
  return out;
}

/** The size an image of `w` x `h` takes for `res` before cropping (kohya's integer truncation). */
export function scaledSize(w: number, h: number, res: MaxResolution): [number, number] {
  const maxPixels = res.width * res.height;
  if (w * h <= maxPixels) return [w, h];
  const s = Math.sqrt(maxPixels / (w * h));
  return [Math.trunc(w * s), Math.trunc(h * s)];
}

/**
 * Fit `img` to `res`: resize (if larger in area) with `interpolation`, then centre-crop each side
 * down to a multiple of `divisibleBy`. `name` (the source file) goes into errors.
 */
export function fitToResolution(
  img: RasterImage,
  res: MaxResolution,
  divisibleBy: number,
  interpolation: Interpolation,
  name: string,
): { image: RasterImage; resized: boolean } {
  const [sw, sh] = scaledSize(img.width, img.height, res);
  const w = sw - (sw % divisibleBy);
  const h = sh - (sh % divisibleBy);
  if (w < 1 || h < 1) {
    throw new LorakitError(
      `${name}: a ${img.width}x${img.height} image becomes ${w}x${h} for ${res.text} with --divisible_by ${divisibleBy}; nothing is left to save`,
    );
  }
  const resized = sw !== img.width || sh !== img.height;
  const scaled = resized ? resize(img, sw, sh, interpolation) : img;
  const x = Math.trunc((scaled.width - w) / 2);
  const y = Math.trunc((scaled.height - h) / 2);
  return { image: crop(scaled, x, y, w, h), resized };
}
