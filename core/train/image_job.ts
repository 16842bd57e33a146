/**
 * One training image's CPU work, as kohya's dataset `__getitem__` does it: decode the file, fit it
 * to its bucket (`trim_and_resize_if_required`: resize to the bucket manager's size, crop the
 * overhang centred or at random), mirror it for `flip_aug`, and scale it to CHW floats in
 * [-1, 1]. An {@link ImageJob} is plain data (structured-cloneable), so the same
 * {@link runImageJob} runs in-process or in a data loader worker with bit-identical results.
 *
 * @module
 */
import { centerCrop, randomCrop } from "../image/bucket.ts";
import { readImage } from "../image/decode.ts";
import { type RasterImage, toRGB } from "../image/image.ts";
import { resize } from "../image/resample.ts";
import type { Interpolation } from "../image/resample_tables.ts";
import type { Size } from "./buckets.ts";
import { colorAug } from "./color_aug.ts";
import { STREAM, streamRandom } from "./train_rng.ts";

/** One image to load for a batch. */
export interface ImageJob {
  path: string;
  /** The size the bucket manager resizes the image to before cropping. */
  resized: Size;
  bucket: Size;
  /** The resize filter, or null for kohya's default (area when shrinking, else Lanczos-4). */
  interpolation: Interpolation | null;
  /**
   * Random crop: the parts of its `STREAM.crop` stream (`seed`, then the stream's parts), or null
   * for the centred crop.
   */
  cropStream: [number, ...number[]] | null;
  /** Mirror left-right (`flip_aug`). */
  flip: boolean;
  /** `color_aug`: the parts of its `STREAM.colorAug` stream, or null when off. */
  colorStream?: [number, ...number[]] | null;
}

/** `img` (RGB, 8-bit) as CHW floats in [-1, 1], optionally mirrored, written at `out[offset]`. */
export function imageToTensorData(
  img: RasterImage,
  flip: boolean,
  out: Float32Array,
  offset: number,
): void {
  const { width: w, height: h, data } = img;
  const plane = w * h;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const sx = flip ? w - 1 - x : x;
      const s = (y * w + sx) * 3;
      const d = offset + y * w + x;
      out[d] = data[s] / 127.5 - 1;
      out[d + plane] = data[s + 1] / 127.5 - 1;
      out[d + 2 * plane] = data[s + 2] / 127.5 - 1;
    }
  }
}

/**
 * Decode `path` and fit it to `bucket` as kohya's `trim_and_resize_if_required` does: resize to
 * the size the bucket manager chose, then crop the overhang (centred, or at random).
 */
export async function loadBucketImage(
  path: string,
  resized: Size,
  bucket: Size,
  opts: { interpolation?: Interpolation; random?: () => number },
): Promise<RasterImage> {
  let img: RasterImage = toRGB(await readImage(path, { applyOrientation: false }));
  if (img.width !== resized[0] || img.height !== resized[1]) {
    const shrink = resized[0] <= img.width && resized[1] <= img.height;
    img = resize(img, resized[0], resized[1], opts.interpolation ?? (shrink ? "area" : "lanczos4"));
  }
  if (img.width === bucket[0] && img.height === bucket[1]) return img;
  return opts.random
    ? randomCrop(img, bucket[0], bucket[1], opts.random).image
    : centerCrop(img, bucket[0], bucket[1]);
}

/**
 * Run `job`: the image as [3, H, W] floats in [-1, 1]. A file that cannot be read or decoded is a
 * LorakitError naming it.
 */
export async function runImageJob(job: ImageJob): Promise<Float32Array<ArrayBuffer>> {
  const [bw, bh] = job.bucket;
  const stream = job.cropStream;
  const img = await loadBucketImage(job.path, job.resized, job.bucket, {
    interpolation: job.interpolation ?? undefined,
    random: stream ? streamRandom(stream[0], STREAM.crop, ...stream.slice(1)) : undefined,
  });
  const cs = job.colorStream;
  const final = cs ? colorAug(img, streamRandom(cs[0], STREAM.colorAug, ...cs.slice(1))) : img;
  const out = new Float32Array(3 * bw * bh);
  imageToTensorData(final, job.flip, out, 0);
  return out;
}
