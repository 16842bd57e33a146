/**
 * Fitting an image to a training bucket the way kohya's dataset code does: scale it (keeping the
 * aspect ratio) until it covers the bucket, then crop the overhang from the centre or at a
 * random offset. The random source is passed in so a seeded run is reproducible.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { crop, type RasterImage } from "./image.ts";
import { resize } from "./resample.ts";
import type { Interpolation } from "./resample_tables.ts";

/** A source of uniform numbers in [0, 1), e.g. a seeded generator. */
export type Rng = () => number;

/**
 * The smallest aspect-preserving size that covers `width` x `height`: the side that binds is set
 * exactly and the other is `int(side * scale + 0.5)`, as kohya's bucket manager computes it.
 */
export function coverSize(
  imgW: number,
  imgH: number,
  width: number,
  height: number,
): [number, number] {
  if (imgW < 1 || imgH < 1 || width < 1 || height < 1) {
    throw new LorakitError(`cannot cover ${width}x${height} with a ${imgW}x${imgH} image`);
  }
  if (width / height > imgW / imgH) {
    return [width, Math.max(height, Math.floor(imgH * (width / imgW) + 0.5))];
  }
  return [Math.max(width, Math.floor(imgW * (height / imgH) + 0.5)), height];
}

/**
 * Resize so the image covers `width` x `height` without distortion. Without an explicit filter it
 * uses INTER_AREA when shrinking and Lanczos-4 when enlarging, kohya's defaults.
 */
export function resizeToCover(
  img: RasterImage,
  width: number,
  height: number,
  interpolation?: Interpolation,
): RasterImage {
  const [w, h] = coverSize(img.width, img.height, width, height);
  const filter = interpolation ?? (w <= img.width && h <= img.height ? "area" : "lanczos4");
  return resize(img, w, h, filter);
}

/** The centred `width` x `height` crop (offsets `floor((size - target) / 2)`). */
export function centerCrop(img: RasterImage, width: number, height: number): RasterImage {
  checkFits(img, width, height);
  const x = Math.floor((img.width - width) / 2);
  const y = Math.floor((img.height - height) / 2);
  return crop(img, x, y, width, height);
}

/**
 * A `width` x `height` crop at a uniformly random offset (each offset 0..overhang equally likely,
 * like Python's `random.randint(0, overhang)`); returns the image and the offsets used.
 */
export function randomCrop(
  img: RasterImage,
  width: number,
  height: number,
  rng: Rng,
): { image: RasterImage; x: number; y: number } {
  checkFits(img, width, height);
  const x = Math.min(img.width - width, Math.floor(rng() * (img.width - width + 1)));
  const y = Math.min(img.height - height, Math.floor(rng() * (img.height - height + 1)));
  return { image: crop(img, x, y, width, height), x, y };
}

function checkFits(img: RasterImage, width: number, height: number): void {
  if (width < 1 || height < 1 || width > img.width || height > img.height) {
    throw new LorakitError(
      `cannot crop ${width}x${height} out of a ${img.width}x${img.height} image`,
    );
  }
}
