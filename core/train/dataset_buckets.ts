/**
 * A scanned dataset's buckets, as kohya's `make_buckets`: every image assigned the bucket nearest
 * its aspect ratio (or the fine-tuning metadata's sizes, or one bucket of the resolution with
 * buckets off), and the buckets filled with one key per repeat.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { BucketManager } from "./buckets.ts";
import type { DatasetParams } from "../kohya/dataset_config.ts";
import type { ScannedDataset } from "./dataset_scan.ts";

/** Buckets of a scanned dataset (kohya's `make_buckets`) and the mean |ar error|. */
export interface DatasetBuckets {
  manager: BucketManager;
  /** Whether bucketing is on (also when fine-tuning metadata brings its own sizes). */
  enabled: boolean;
  /** Mean absolute aspect-ratio error without repeats (null with buckets off). */
  meanArError: number | null;
}

/**
 * Assign every image a bucket and fill the buckets (one key per repeat), as kohya's
 * `make_buckets`: with buckets on, sorted by resolution; with them off, one bucket of the
 * resolution. Sets `bucket` and `resized` on each image.
 */
export function makeDatasetBuckets(
  scan: ScannedDataset,
  params: DatasetParams,
): DatasetBuckets {
  let manager: BucketManager;
  let enabled = params.enable_bucket;
  if (scan.metadataBuckets !== null) {
    if (params.bucket_no_upscale) {
      throw new LorakitError(
        "the fine-tuning metadata has bucket sizes (train_resolution), so bucket_no_upscale cannot be used",
      );
    }
    enabled = true;
    manager = new BucketManager({ predefined: scan.metadataBuckets });
  } else {
    const reso = params.resolution;
    if (reso === null) {
      throw new LorakitError("resolution is required when the metadata has no bucket sizes");
    }
    manager = enabled
      ? new BucketManager({
        noUpscale: params.bucket_no_upscale,
        maxReso: reso,
        minSize: params.min_bucket_reso,
        maxSize: params.max_bucket_reso,
        resoSteps: params.bucket_reso_steps,
      })
      : new BucketManager({ predefined: [reso] });
  }
  let errSum = 0;
  for (const im of scan.images) {
    const c = manager.selectBucket(im.size[0], im.size[1]);
    im.bucket = c.bucket;
    im.resized = c.resized;
    errSum += Math.abs(c.arError);
  }
  if (enabled) manager.sort();
  for (const im of scan.images) {
    for (let r = 0; r < im.numRepeats; r++) manager.addImage(im.bucket!, im.key);
  }
  const meanArError = enabled && scan.images.length > 0 ? errSum / scan.images.length : null;
  return { manager, enabled, meanArError };
}
