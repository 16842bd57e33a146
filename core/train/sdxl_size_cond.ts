/**
 * SDXL's size conditioning of a training image, as kohya computes it (train_util's
 * `get_crop_ltrb`, following Stability AI's preprocessing): the original size is the image's
 * size before resizing; the crop is where the image, scaled to fit *inside* the bucket, would
 * sit centred in it (so an image wider than its bucket has a top offset, a taller one a left
 * offset), whatever crop the loader actually made; a mirrored image's left is measured from its
 * right edge; the target size is the bucket. All as [height, width] / [top, left].
 *
 * @module
 */
import type { SdxlSizeCond } from "../models/sdxl_conditioning.ts";

/** kohya's `get_crop_ltrb` for a bucket [w, h] and an image [w, h]: [left, top, right, bottom]. */
export function cropLtrb(
  bucket: readonly [number, number],
  image: readonly [number, number],
): [number, number, number, number] {
  const bucketAr = bucket[0] / bucket[1];
  const imageAr = image[0] / image[1];
  let w: number, h: number;
  if (bucketAr > imageAr) {
    w = bucket[1] * imageAr;
    h = bucket[1];
  } else {
    w = bucket[0];
    h = bucket[0] / imageAr;
  }
  // Python's float `//` floors.
  const left = Math.floor((bucket[0] - w) / 2);
  const top = Math.floor((bucket[1] - h) / 2);
  return [left, top, left + w, top + h];
}

/** One image's SDXL size conditioning in its bucket (`flipped`: mirrored by `flip_aug`). */
export function sdxlSizeCond(
  original: readonly [number, number],
  bucket: readonly [number, number],
  flipped: boolean,
): SdxlSizeCond {
  const [left, top, right] = cropLtrb(bucket, original);
  // Python's int() truncates towards zero.
  const cropLeft = Math.trunc(flipped ? bucket[0] - right : left);
  return {
    originalSize: [Math.trunc(original[1]), Math.trunc(original[0])],
    cropTopLeft: [Math.trunc(top), cropLeft],
    targetSize: [bucket[1], bucket[0]],
  };
}
