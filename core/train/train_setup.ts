/**
 * The datasets of a run before a model is loaded: the plan's blueprint (from a dataset config or
 * the folder flags), every subset scanned, buckets made, kohya's warnings collected, and the batch
 * count per epoch that fixes the epoch count.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { bucketSummary } from "./buckets.ts";
import type { DatasetBlueprint } from "../kohya/dataset_config.ts";
import type { DataPlan, DatasetSource } from "../kohya/plan_types.ts";
import { type ImageEntry, scanDataset, type ScannedDataset } from "./dataset_scan.ts";
import { type DatasetBuckets, makeDatasetBuckets } from "./dataset_buckets.ts";
import { type ImageChecker, imageChecker, skippedSummary } from "./image_check.ts";

/** One dataset, scanned and bucketed. */
export interface PreparedDataset {
  blueprint: DatasetBlueprint;
  scan: ScannedDataset;
  buckets: DatasetBuckets;
  /** Images by key. */
  byKey: Map<string, ImageEntry>;
}

/** Every dataset of the run. */
export interface PreparedData {
  datasets: PreparedDataset[];
  /** True when `--dataset_config` was given (kohya records `ss_datasets` then). */
  fromConfigFile: boolean;
  /** How errors name the datasets' source (the config file, or the folder flag). */
  label: string;
  /** kohya's warnings and the bucket summaries, in order. */
  messages: string[];
  /** Files left out (unreadable images), with the reason. */
  skipped: { path: string; reason: string }[];
  numTrainImages: number;
  numRegImages: number;
}

/** Blueprint, scan and buckets of every dataset. */
export async function prepareData(plan: DataPlan): Promise<PreparedData> {
  const source = await plan.source();
  const bp = source.blueprint;
  const messages = [...source.messages, ...bp.warnings];
  if (bp.datasets.length === 0) {
    throw new LorakitError(`${source.label}: no datasets ([[datasets]] with subsets)`);
  }
  const out: PreparedData = {
    datasets: [],
    fromConfigFile: source.fromConfigFile,
    label: source.label,
    messages,
    skipped: [],
    numTrainImages: 0,
    numRegImages: 0,
  };
  // Every image is decoded once here, so a bad one is left out before anything is counted.
  const checker = imageChecker(plan.workers);
  try {
    await scanAll(plan, source, checker, out);
  } finally {
    checker.close();
  }
  const found = out.datasets.reduce((a, d) => a + d.scan.imagesFound, 0);
  if (out.skipped.length > 0) messages.push(skippedSummary(out.skipped, found));
  const total = out.datasets.reduce((a, d) => a + d.scan.images.length, 0);
  if (total === 0) {
    throw new LorakitError(
      `${source.where}: no trainable images found` +
        (out.skipped.length > 0
          ? ` (${out.skipped.length} skipped: ${out.skipped[0].reason})`
          : ""),
    );
  }
  return out;
}

async function scanAll(
  plan: DataPlan,
  source: DatasetSource,
  checker: ImageChecker,
  out: PreparedData,
): Promise<void> {
  const messages = out.messages;
  for (const [i, blueprint] of source.blueprint.datasets.entries()) {
    const reso = blueprint.params.resolution;
    if (reso !== null && (reso[0] % 64 !== 0 || reso[1] % 64 !== 0)) {
      throw new LorakitError(
        `${source.resolutionLabel(i)}: expected width and height divisible by 64 (SD's U-Net ` +
          `halves the 1/8 latents three times), found ${reso[0]}x${reso[1]}`,
      );
    }
    if (plan.cacheLatents) {
      const j = blueprint.subsets.findIndex((s) => s.color_aug || s.random_crop);
      if (j >= 0) {
        throw new LorakitError(
          `${source.label}: datasets[${i}].subsets[${j}]: ` +
            `color_aug and random_crop cannot be used with --cache_latents (kohya's rule: the ` +
            `augmented pixels would be cached)`,
        );
      }
    }
    const scan = await scanDataset(blueprint, checker);
    messages.push(...scan.warnings);
    out.skipped.push(...scan.skipped);
    const buckets = makeDatasetBuckets(scan, blueprint.params);
    if (buckets.enabled) {
      messages.push(bucketSummary(buckets.manager, buckets.meanArError ?? undefined));
    }
    out.numTrainImages += scan.numTrainImages;
    out.numRegImages += scan.numRegImages;
    out.datasets.push({
      blueprint,
      scan,
      buckets,
      byKey: new Map(scan.images.map((im) => [im.key, im])),
    });
  }
}

/** Batches per epoch over all datasets (kohya's `len(train_dataloader)`). */
export function batchesPerEpoch(data: PreparedData): number {
  let n = 0;
  for (const d of data.datasets) {
    const bs = d.blueprint.params.batch_size;
    for (const b of d.buckets.manager.buckets) n += Math.ceil(b.length / bs);
  }
  return n;
}

/** Remove images (e.g. ones that failed to decode) from a dataset's buckets and index. */
export function dropImages(d: PreparedDataset, keys: ReadonlySet<string>): void {
  if (keys.size === 0) return;
  d.buckets.manager.buckets = d.buckets.manager.buckets.map((b) => b.filter((k) => !keys.has(k)));
  d.scan.images = d.scan.images.filter((im) => !keys.has(im.key));
  for (const k of keys) d.byKey.delete(k);
}
