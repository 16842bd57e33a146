/**
 * Batches for the training loop, as kohya's dataset `__getitem__` builds them: each epoch's order
 * (every dataset's bucket batches shuffled with `seed + epoch`, then the batches of all datasets
 * shuffled together, as kohya's DataLoader does over its ConcatDataset), and each batch's
 * contents: the image decoded, resized to its bucket's cover size, centre- (or randomly) cropped,
 * flipped by `flip_aug`, scaled to [-1, 1] — or its cached latents — plus the processed captions
 * as token-id windows and the loss weights (`prior_loss_weight` for regularization images).
 *
 * Everything here runs on the CPU; the loop starts the next batch's load before it waits for
 * the GPU, so decoding overlaps the step. The image work (decode, resize, crop, flip) runs in a
 * pool of `--max_data_loader_n_workers` Web Workers (at most one per CPU core and per image; 0
 * runs it on the main thread, as kohya's 0 means the main process); the pool lives for one epoch,
 * or for the whole run with `--persistent_data_loader_workers`. Either way the pixels are the
 * same, bit for bit. An image that fails to decode is reported and left out of its batch.
 *
 * @module
 */
import type { Interpolation } from "../image/resample_tables.ts";
import { LorakitError } from "../errors.ts";
import { type WindowedIds, windowIds, type WindowTokenizer } from "../text/token_windows.ts";
import { epochBatches, shuffleInPlace, type Size } from "./buckets.ts";
import { processCaption } from "./captions.ts";
import { type ImageJob, runImageJob } from "./image_job.ts";
import type { PreparedData } from "./train_setup.ts";
import { hashString, STREAM, streamRandom } from "./train_rng.ts";
import { DecodePool } from "./worker_pool.ts";

export { imageToTensorData, loadBucketImage } from "./image_job.ts";

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
  /** The second tokenizer's ids (SDXL's text encoder 2), when the loader has one. */
  ids2: WindowedIds | null;
  lossWeights: number[];
  /** Each image's size before resizing, [width, height]. */
  originalSizes: [number, number][];
  /** Whether each image was mirrored (`flip_aug`). */
  flipped: boolean[];
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
  /** SDXL's second tokenizer (it pads with 0); its ids come in `ids2`. */
  tokenizer2?: WindowTokenizer;
  maxTokenLength: number | null;
  /** kohya's `--resize_interpolation` (lanczos, area, cubic, bicubic), or null for the default. */
  resizeInterpolation: string | null;
  /** Latents by image key when cached. */
  cache: Map<string, CachedLatents> | null;
  /** kohya's `--max_data_loader_n_workers` (0: decode on the main thread). Default 0. */
  workers?: number;
  /** kohya's `--persistent_data_loader_workers`: keep the workers across epochs. */
  persistentWorkers?: boolean;
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

/** Mirror latents [C, h, w] left-right (for flip_aug without a cached flipped copy). */
export function flipLatents(src: Float32Array, c: number, h: number, w: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let k = 0; k < c * h; k++) {
    for (let x = 0; x < w; x++) out[k * w + x] = src[k * w + (w - 1 - x)];
  }
  return out;
}

/** The settled outcome of one image job. */
type Settled = { ok: true; pixels: Float32Array } | { ok: false; error: unknown };

/**
 * Builds {@link HostBatch}es from planned batches. With workers, call {@link endEpoch} after each
 * epoch and {@link close} when training ends, fails or is interrupted.
 */
export class BatchLoader {
  readonly #data: PreparedData;
  readonly #o: LoaderOptions;
  readonly #filter: Interpolation | undefined;
  /** The number of data loader workers (0: the image work runs on the main thread). */
  readonly workerCount: number;
  #pool: DecodePool | null = null;

  constructor(data: PreparedData, options: LoaderOptions) {
    this.#data = data;
    this.#o = options;
    this.#filter = filterOf(options.resizeInterpolation);
    const images = options.cache ? 0 : data.datasets.reduce((n, d) => n + d.byKey.size, 0);
    const workers = options.workers ?? 0;
    if (!Number.isInteger(workers) || workers < 0) {
      throw new LorakitError(
        `--max_data_loader_n_workers: expected 0 or more workers, found ${workers}`,
      );
    }
    const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
    this.workerCount = Math.min(workers, cores, images);
  }

  /** True while data loader workers are started (from the first load until stopped). */
  get workersRunning(): boolean {
    return this.#pool !== null;
  }

  /** The end of an epoch: stop the workers unless they are persistent (the next load restarts). */
  endEpoch(): void {
    if (this.#o.persistentWorkers) return;
    this.#pool?.terminate();
    this.#pool = null;
  }

  /** Stop the workers (jobs in flight reject). Safe to call more than once. */
  close(): void {
    this.#pool?.terminate();
    this.#pool = null;
  }

  #run(job: ImageJob): Promise<Settled> {
    let p: Promise<Float32Array>;
    if (this.workerCount === 0) p = runImageJob(job);
    else {
      this.#pool ??= new DecodePool(this.workerCount);
      p = this.#pool.run(job);
    }
    return p.then((pixels) => ({ ok: true, pixels }), (error) => ({ ok: false, error }));
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
    const originalSizes: [number, number][] = [];
    const flipped: boolean[] = [];
    // Start every image of the batch first (in parallel on the workers), then take them in order.
    const jobs = plan.keys.map((key, i): Promise<Settled> | null => {
      const entry = d.byKey.get(key);
      if (!entry || cache) return null;
      const subset = d.blueprint.subsets[entry.subset];
      return this.#run({
        path: entry.path,
        resized: entry.resized!,
        bucket: plan.bucket,
        interpolation: this.#filter ?? null,
        cropStream: subset.random_crop ? [seed, ctx.micro, i, hashString(key)] : null,
        flip: this.#flip(subset.flip_aug, key, i, ctx),
        colorStream: subset.color_aug ? [seed, ctx.micro, i, hashString(key)] : null,
      });
    });
    for (const [i, key] of plan.keys.entries()) {
      const entry = d.byKey.get(key);
      if (!entry) continue; // dropped after a decode failure
      const subset = d.blueprint.subsets[entry.subset];
      const flip = this.#flip(subset.flip_aug, key, i, ctx);
      if (cache) {
        const c = cache.get(key);
        if (!c) continue;
        latents.push(
          flip ? (c.flipped ?? flipLatents(c.latents, 4, bh / 8, bw / 8)) : c.latents,
        );
      } else {
        const r = await jobs[i]!;
        if (!r.ok) {
          if (!(r.error instanceof LorakitError)) throw r.error;
          failed.push({ key, reason: r.error.message });
          continue;
        }
        pixels.push(r.pixels);
      }
      const rng = streamRandom(seed, STREAM.caption, ctx.micro, i, hashString(key));
      captions.push(processCaption(subset, entry.caption, ctx, rng));
      lossWeights.push(entry.isReg ? d.blueprint.params.prior_loss_weight : 1);
      originalSizes.push([entry.size[0], entry.size[1]]);
      flipped.push(flip);
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
      ids2: this.#o.tokenizer2 ? windowIds(this.#o.tokenizer2, captions, maxLen) : null,
      lossWeights,
      originalSizes,
      flipped,
      failed,
    };
  }

  /** The `flip_aug` draw of image `i` of the batch `ctx.micro`. */
  #flip(flipAug: boolean, key: string, i: number, ctx: LoadContext): boolean {
    return flipAug &&
      streamRandom(this.#o.seed, STREAM.flip, ctx.micro, i, hashString(key))() < 0.5;
  }
}
