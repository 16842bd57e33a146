/**
 * Batches for the training loop, as kohya's dataset `__getitem__` builds them: each epoch's order
 * (every dataset's bucket batches shuffled with `seed + epoch`, then the batches of all datasets
 * shuffled together, as kohya's DataLoader does over its ConcatDataset), and each batch's
 * contents: the image decoded, resized to its bucket's cover size, centre- (or randomly) cropped,
 * flipped by `flip_aug`, scaled to [-1, 1] — or its cached latents — plus the processed captions
 * as token-id windows and the loss weights (`prior_loss_weight` for regularization images).
 *
 * Everything here runs on the CPU; the loop starts the next batch's load before it waits for
 * the GPU, so decoding overlaps the step. An image that fails to decode is reported and left out
 * of its batch.
 *
 * @module
 */
import { centerCrop, randomCrop } from "../image/bucket.ts";
import { readImage } from "../image/decode.ts";
import { toRGB } from "../image/image.ts";
import type { RasterImage } from "../image/image.ts";
import { resize } from "../image/resample.ts";
import type { Interpolation } from "../image/resample_tables.ts";
import { LorakitError } from "../errors.ts";
import { type WindowedIds, windowIds, type WindowTokenizer } from "../text/token_windows.ts";
import { epochBatches, shuffleInPlace, type Size } from "./buckets.ts";
import { processCaption } from "./captions.ts";
import type { PreparedData } from "./train_setup.ts";
import { hashString, STREAM, streamRandom } from "./train_rng.ts";

/** One batch of an epoch's plan. */
export interface PlannedBatch {
  datasetIndex: number;
  bucket: Size;
  keys: string[];
}

/** A batch ready for the GPU (host arrays). */
export interface HostBatch extends PlannedBatch {
  /** Images [B, 3, H, W] in [-1, 1] (null when latents are cached). */
  images: Float32Array | null;
  /** Cached latents [B, 4, H/8, W/8], already scaled (null when images are given). */
  latents: Float32Array | null;
  captions: string[];
  ids: WindowedIds;
  lossWeights: number[];
  /** Keys whose image failed to decode (left out of this batch), with the reason. */
  failed: { key: string; reason: string }[];
}

/** Cached latents of one image. */
export interface CachedLatents {
  latents: Float32Array;
  flipped: Float32Array | null;
}

/** Where training is, for captions (token warmup, dropout every N epochs) and the streams. */
export interface LoadContext {
  /** 1-based epoch. */
  epoch: number;
  /** 0-based global (optimizer) step of this batch. */
  step: number;
  maxTrainSteps: number;
  /** 0-based index of this batch in the whole run (keys the random streams). */
  micro: number;
}

/** Options of {@link BatchLoader}. */
export interface LoaderOptions {
  seed: number;
  tokenizer: WindowTokenizer;
  maxTokenLength: number | null;
  /** kohya's `--resize_interpolation` (lanczos, area, cubic, bicubic), or null for the default. */
  resizeInterpolation: string | null;
  /** Latents by image key when cached. */
  cache: Map<string, CachedLatents> | null;
}

/**
 * The epoch's batches: each dataset's bucket batches (`epochBatches`, which also reshuffles the
 * buckets in place, so epochs must be planned in order), then all of them shuffled together.
 */
export function planEpoch(data: PreparedData, seed: number, epoch: number): PlannedBatch[] {
  const all: PlannedBatch[] = [];
  data.datasets.forEach((d, datasetIndex) => {
    const m = d.buckets.manager;
    for (const b of epochBatches(m, d.blueprint.params.batch_size, seed, epoch)) {
      if (b.keys.length === 0) continue;
      all.push({ datasetIndex, bucket: m.resos[b.bucketIndex], keys: b.keys });
    }
  });
  if (data.datasets.length > 1) shuffleInPlace(all, streamRandom(seed, STREAM.batchOrder, epoch));
  return all;
}

function filterOf(name: string | null): Interpolation | undefined {
  if (name === null) return undefined;
  if (name === "lanczos") return "lanczos4";
  if (name === "cubic" || name === "bicubic") return "cubic";
  if (name === "area") return "area";
  throw new LorakitError(`--resize_interpolation: lorakit cannot resize with ${name}`);
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

/** Mirror latents [C, h, w] left-right (for flip_aug without a cached flipped copy). */
export function flipLatents(src: Float32Array, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let k = 0; k < c * h; k++) {
    for (let x = 0; x < w; x++) out[k * w + x] = src[k * w + (w - 1 - x)];
  }
  return out;
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

/** Builds {@link HostBatch}es from planned batches. */
export class BatchLoader {
  readonly #data: PreparedData;
  readonly #o: LoaderOptions;
  readonly #filter: Interpolation | undefined;

  constructor(data: PreparedData, options: LoaderOptions) {
    this.#data = data;
    this.#o = options;
    this.#filter = filterOf(options.resizeInterpolation);
  }

  /** Load one batch (decode or look up latents, captions, token ids, loss weights). */
  async load(plan: PlannedBatch, ctx: LoadContext): Promise<HostBatch> {
    const d = this.#data.datasets[plan.datasetIndex];
    const { seed, cache } = this.#o;
    const [bw, bh] = plan.bucket;
    const keys: string[] = [];
    const captions: string[] = [];
    const lossWeights: number[] = [];
    const failed: { key: string; reason: string }[] = [];
    const pixels: Float32Array[] = [];
    const latents: Float32Array[] = [];
    for (const [i, key] of plan.keys.entries()) {
      const entry = d.byKey.get(key);
      if (!entry) continue; // dropped after a decode failure
      const subset = d.blueprint.subsets[entry.subset];
      const flip = subset.flip_aug &&
        streamRandom(seed, STREAM.flip, ctx.micro, i, hashString(key))() < 0.5;
      if (cache) {
        const c = cache.get(key);
        if (!c) continue;
        latents.push(
          flip ? (c.flipped ?? flipLatents(c.latents, 4, bh / 8, bw / 8)) : c.latents,
        );
      } else {
        try {
          const img = await loadBucketImage(entry.path, entry.resized!, plan.bucket, {
            interpolation: this.#filter,
            random: subset.random_crop
              ? streamRandom(seed, STREAM.crop, ctx.micro, i, hashString(key))
              : undefined,
          });
          const buf = new Float32Array(3 * bw * bh);
          imageToTensorData(img, flip, buf, 0);
          pixels.push(buf);
        } catch (e) {
          if (!(e instanceof LorakitError)) throw e;
          failed.push({ key, reason: e.message });
          continue;
        }
      }
      const rng = streamRandom(seed, STREAM.caption, ctx.micro, i, hashString(key));
      captions.push(processCaption(subset, entry.caption, ctx, rng));
      lossWeights.push(entry.isReg ? d.blueprint.params.prior_loss_weight : 1);
      keys.push(key);
    }
    const concat = (parts: Float32Array[]): Float32Array | null => {
      if (parts.length === 0) return null;
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    };
    const maxLen = this.#o.maxTokenLength ?? d.blueprint.params.max_token_length;
    return {
      datasetIndex: plan.datasetIndex,
      bucket: plan.bucket,
      keys,
      images: cache ? null : concat(pixels),
      latents: cache ? concat(latents) : null,
      captions,
      ids: windowIds(this.#o.tokenizer, captions, maxLen),
      lossWeights,
      failed,
    };
  }
}
