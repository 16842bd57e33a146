/**
 * Aspect-ratio bucketing as kohya's `BucketManager` does it (library/train_util.py and
 * `make_bucket_resolutions` in library/model_util.py): the bucket list, which bucket an image goes
 * to, the size it is resized to before the centre crop, the aspect-ratio error, the crop box kohya
 * records (`crop_ltrb`), the summary it prints, and the batches of image keys per epoch.
 *
 * Randomness: kohya shuffles with Python's `random` (Mersenne Twister) seeded with
 * `seed + epoch`. We cannot reproduce that stream, so lorakit uses {@link seededRandom}
 * (mulberry32) seeded with the same `seed + epoch` and the same Fisher–Yates walk as Python's
 * `random.shuffle` (i from n-1 down to 1, j uniform in 0..i). The rule is the same, the order
 * differs from kohya's; the same seed always gives the same order here.
 *
 * @module
 */
import { uniformRandom } from "../../gpu/random.ts";
import { LorakitError } from "../errors.ts";

/** A bucket or image size, `[width, height]`. */
export type Size = [number, number];

/** A source of uniform numbers in [0, 1). */
export type Random = () => number;

/**
 * kohya's `make_bucket_resolutions`: the square bucket of about `maxReso`'s area, then for each
 * width from `minSize` to `maxSize` in `divisible` steps the tallest height (capped at `maxSize`)
 * that keeps the area, and its transpose; de-duplicated and sorted by (width, height).
 */
export function makeBucketResolutions(
  maxReso: Size,
  minSize = 256,
  maxSize = 1024,
  divisible = 64,
): Size[] {
  if (!(divisible >= 1) || !Number.isInteger(divisible)) {
    throw new LorakitError(`bucket_reso_steps: expected a positive integer, found ${divisible}`);
  }
  const maxArea = maxReso[0] * maxReso[1];
  const set = new Map<string, Size>();
  const add = (w: number, h: number) => set.set(`${w}x${h}`, [w, h]);
  // kohya: int(math.sqrt(max_area) // divisible) * divisible (float floor division).
  const side = Math.floor(Math.sqrt(maxArea) / divisible) * divisible;
  add(side, side);
  for (let width = minSize; width <= maxSize; width += divisible) {
    const height = Math.min(
      maxSize,
      Math.floor(Math.floor(maxArea / width) / divisible) * divisible,
    );
    add(width, height);
    add(height, width);
  }
  return [...set.values()].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
}

/** What {@link BucketManager.selectBucket} decides for one image. */
export interface BucketChoice {
  /** The bucket `[width, height]` the image is trained at. */
  bucket: Size;
  /** The size the image is resized to (keeping its aspect) before the crop to `bucket`. */
  resized: Size;
  /** `bucket_w / bucket_h - image_w / image_h`. */
  arError: number;
}

/** Options of a {@link BucketManager}, named as kohya's dataset settings. */
export interface BucketOptions {
  /** `--bucket_no_upscale`: never enlarge; the bucket follows each image's own size. */
  noUpscale: boolean;
  /** The training resolution `[width, height]`; its area caps the buckets. */
  maxReso: Size;
  minSize: number;
  maxSize: number;
  /** `bucket_reso_steps`. */
  resoSteps: number;
}

/**
 * kohya's `BucketManager`: holds the predefined buckets (default mode) or grows the list as
 * images arrive (no-upscale mode), and collects image keys per bucket.
 */
export class BucketManager {
  readonly noUpscale: boolean;
  readonly maxArea: number;
  readonly resoSteps: number;
  /** Bucket resolutions in the order they were first used (then sorted by {@link sort}). */
  resos: Size[] = [];
  /** Image keys per bucket, parallel to {@link resos}; repeats appear repeatedly. */
  buckets: string[][] = [];
  private readonly ids = new Map<string, number>();
  private predefined: Size[] = [];
  private predefinedSet = new Set<string>();

  constructor(options: BucketOptions | { predefined: Size[] }) {
    if ("predefined" in options) {
      // kohya: BucketManager(False, ..., None, None, None) + set_predefined_resos, used when
      // buckets are off (one bucket of the resolution) or come from fine-tuning metadata.
      this.noUpscale = false;
      this.maxArea = 0;
      this.resoSteps = 1;
      this.setPredefined(options.predefined);
      return;
    }
    const { maxReso, minSize, maxSize } = options;
    // kohya asserts these; they are user settings, so they are user errors here.
    if (maxSize < maxReso[0] || maxSize < maxReso[1]) {
      throw new LorakitError(
        `max_bucket_reso (${maxSize}) must be at least the resolution's width and height (${
          maxReso.join("x")
        })`,
      );
    }
    if (maxSize < minSize) {
      throw new LorakitError(
        `max_bucket_reso (${maxSize}) must be at least min_bucket_reso (${minSize})`,
      );
    }
    this.noUpscale = options.noUpscale;
    this.maxArea = maxReso[0] * maxReso[1];
    this.resoSteps = options.resoSteps;
    if (!this.noUpscale) {
      this.setPredefined(makeBucketResolutions(maxReso, minSize, maxSize, options.resoSteps));
    }
  }

  /** Use a fixed bucket list (kohya: `set_predefined_resos`, e.g. one bucket when disabled). */
  setPredefined(resos: Size[]): void {
    this.predefined = resos.map((r) => [r[0], r[1]]);
    this.predefinedSet = new Set(resos.map((r) => `${r[0]}x${r[1]}`));
  }

  /** The predefined bucket list (empty in no-upscale mode). */
  get predefinedResos(): Size[] {
    return this.predefined.map((r) => [r[0], r[1]]);
  }

  /** kohya's `round_to_steps`: round half up, then floor to the step. */
  roundToSteps(x: number): number {
    const r = Math.floor(x + 0.5);
    return r - (r % this.resoSteps);
  }

  /** kohya's `select_bucket`; registers the bucket if new. */
  selectBucket(imageWidth: number, imageHeight: number): BucketChoice {
    if (!(imageWidth > 0 && imageHeight > 0)) {
      throw new LorakitError(`cannot bucket an image of size ${imageWidth}x${imageHeight}`);
    }
    const aspect = imageWidth / imageHeight;
    let reso: Size;
    let resized: Size;
    if (!this.noUpscale) {
      if (this.predefinedSet.has(`${imageWidth}x${imageHeight}`)) {
        reso = [imageWidth, imageHeight];
      } else {
        // numpy argmin of |ar - aspect|: the first of equal minima wins.
        let best = 0;
        let bestErr = Infinity;
        this.predefined.forEach(([w, h], i) => {
          const err = Math.abs(w / h - aspect);
          if (err < bestErr) {
            bestErr = err;
            best = i;
          }
        });
        if (this.predefined.length === 0) throw new LorakitError("no buckets to choose from");
        reso = [this.predefined[best][0], this.predefined[best][1]];
      }
      const scale = aspect > reso[0] / reso[1] ? reso[1] / imageHeight : reso[0] / imageWidth;
      resized = [Math.floor(imageWidth * scale + 0.5), Math.floor(imageHeight * scale + 0.5)];
    } else {
      if (imageWidth * imageHeight > this.maxArea) {
        const rw = Math.sqrt(this.maxArea * aspect);
        const rh = this.maxArea / rw;
        const bw = this.roundToSteps(rw);
        const bhInW = this.roundToSteps(bw / aspect);
        const arW = bw / bhInW;
        const bh = this.roundToSteps(rh);
        const bwInH = this.roundToSteps(bh * aspect);
        const arH = bwInH / bh;
        resized = Math.abs(arW - aspect) < Math.abs(arH - aspect)
          ? [bw, Math.floor(bw / aspect + 0.5)]
          : [Math.floor(bh * aspect + 0.5), bh];
      } else {
        resized = [imageWidth, imageHeight];
      }
      reso = [
        resized[0] - (resized[0] % this.resoSteps),
        resized[1] - (resized[1] % this.resoSteps),
      ];
      if (reso[0] === 0 || reso[1] === 0) {
        throw new LorakitError(
          `an image of ${imageWidth}x${imageHeight} is smaller than bucket_reso_steps (${this.resoSteps}) ` +
            `in one dimension, so bucket_no_upscale gives it an empty bucket`,
        );
      }
    }
    this.addIfNew(reso);
    return { bucket: reso, resized, arError: reso[0] / reso[1] - aspect };
  }

  /** Register a bucket resolution if it is not known yet. */
  addIfNew(reso: Size): void {
    const key = `${reso[0]}x${reso[1]}`;
    if (!this.ids.has(key)) {
      this.ids.set(key, this.resos.length);
      this.resos.push([reso[0], reso[1]]);
      this.buckets.push([]);
    }
  }

  /** Put an image key into the bucket of `reso` (once per repeat, as kohya does). */
  addImage(reso: Size, key: string): void {
    const id = this.ids.get(`${reso[0]}x${reso[1]}`);
    if (id === undefined) throw new LorakitError(`bucket ${reso.join("x")} was never selected`);
    this.buckets[id].push(key);
  }

  /** Sort buckets by resolution (width, then height), as kohya does before printing. */
  sort(): void {
    const order = this.resos.map((r, i) => ({ r, b: this.buckets[i] }))
      .sort((a, b) => a.r[0] - b.r[0] || a.r[1] - b.r[1]);
    this.resos = order.map((o) => o.r);
    this.buckets = order.map((o) => o.b);
    this.ids.clear();
    this.resos.forEach((r, i) => this.ids.set(`${r[0]}x${r[1]}`, i));
  }
}

/**
 * kohya's `get_crop_ltrb(bucket, image_size)`: the box the image would occupy inside the bucket
 * if scaled to fit it, centred. Python's floor division (`//`) on floats is reproduced, so the
 * values equal kohya's recorded ones (they are what SDXL-style crop conditioning sees).
 */
export function cropLtrb(bucket: Size, imageSize: Size): [number, number, number, number] {
  const bucketAr = bucket[0] / bucket[1];
  const imageAr = imageSize[0] / imageSize[1];
  const [rw, rh] = bucketAr > imageAr
    ? [bucket[1] * imageAr, bucket[1]]
    : [bucket[0], bucket[0] / imageAr];
  const left = Math.floor((bucket[0] - rw) / 2);
  const top = Math.floor((bucket[1] - rh) / 2);
  return [left, top, left + rw, top + rh];
}

/** One line per non-empty bucket, as kohya logs them (bucket index after sorting). */
export function bucketSummary(manager: BucketManager, meanArError?: number): string {
  const lines = ["number of images (including repeats) / 各bucketの画像枚数（繰り返し回数を含む）"];
  manager.resos.forEach((r, i) => {
    const count = manager.buckets[i].length;
    if (count > 0) lines.push(`bucket ${i}: resolution (${r[0]}, ${r[1]}), count: ${count}`);
  });
  if (meanArError !== undefined) lines.push(`mean ar error (without repeats): ${meanArError}`);
  return lines.join("\n");
}

/** One batch: which bucket, and the slice of its keys. */
export interface BucketBatch {
  bucketIndex: number;
  batchIndex: number;
  keys: string[];
}

/**
 * The epoch's batches, as kohya's `make_buckets` + `shuffle_buckets` produce them: every bucket
 * is cut into `ceil(len / batchSize)` batches, the list of (bucket, batch) indices is shuffled,
 * then each bucket's keys are shuffled, both with a generator seeded by `seed + epoch` (see the
 * module note on the generator). Batches never mix buckets; the last batch of a bucket may be
 * short. `manager.buckets` is left shuffled, as in kohya.
 */
export function epochBatches(
  manager: BucketManager,
  batchSize: number,
  seed: number,
  epoch: number,
): BucketBatch[] {
  if (!(Number.isInteger(batchSize) && batchSize >= 1)) {
    throw new LorakitError(`train_batch_size: expected a positive integer, found ${batchSize}`);
  }
  const indices: { bucketIndex: number; batchIndex: number }[] = [];
  manager.buckets.forEach((bucket, bucketIndex) => {
    const n = Math.ceil(bucket.length / batchSize);
    for (let batchIndex = 0; batchIndex < n; batchIndex++) {
      indices.push({ bucketIndex, batchIndex });
    }
  });
  const rng = seededRandom(seed + epoch);
  shuffleInPlace(indices, rng);
  for (const bucket of manager.buckets) shuffleInPlace(bucket, rng);
  return indices.map(({ bucketIndex, batchIndex }) => ({
    bucketIndex,
    batchIndex,
    keys: manager.buckets[bucketIndex].slice(batchIndex * batchSize, (batchIndex + 1) * batchSize),
  }));
}

/**
 * mulberry32: a small, fast 32-bit generator with a full 2^32 period, good enough for shuffles
 * and dropout decisions; uniform in [0, 1). Any integer seed (also negative or above 2^32) is
 * reduced modulo 2^32.
 */
export function seededRandom(seed: number): Random {
  return uniformRandom(Number(BigInt.asUintN(32, BigInt(Math.trunc(seed)))));
}

/** Python's `random.shuffle` walk (Fisher–Yates from the end) with the given generator. */
export function shuffleInPlace<T>(items: T[], rng: Random): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.min(i, Math.floor(rng() * (i + 1)));
    const t = items[i];
    items[i] = items[j];
    items[j] = t;
  }
}
