/**
 * The metadata train_network writes into every saved LoRA, as kohya's does: the `ss_*` settings
 * (`trainingMetadata`), the dataset summaries (`ss_datasets` with `--dataset_config`, else the
 * older flat keys with `ss_dataset_dirs` / `ss_reg_dataset_dirs` / `ss_bucket_info`), tag
 * frequencies, the base model's name and legacy hash, the per-save step and epoch, and the
 * `modelspec.*` keys; with `--no_metadata` only kohya's minimum (network and base model keys)
 * plus `modelspec.*`. The `sshs_*` hashes are added when the file is written.
 *
 * @module
 */
import { baseName } from "../io/fs.ts";
import {
  baseModelVersion,
  modelSpecMetadata,
  pyFloatRepr,
  trainingMetadata,
} from "../lora/metadata.ts";
import type { BucketManager } from "./buckets.ts";
import type { MetadataPlan } from "../kohya/plan_types.ts";
import type { PreparedData, PreparedDataset } from "./train_setup.ts";

/** What the run knows beyond the flags. */
export interface RunFacts {
  sessionId: number;
  /** Seconds since the epoch. */
  startedAt: number;
  seed: number;
  numBatchesPerEpoch: number;
  numEpochs: number;
  maxTrainSteps: number;
  lrWarmupSteps: number;
  /** kohya's `ss_optimizer` text: `name(args)`. */
  optimizer: string;
  /** `network.networkArgs` (raw strings), or null when none. */
  networkArgs: Record<string, string> | null;
  modelHash: string | null;
  vaeHash: string | null;
}

/** kohya's `bucket_info`, or null with buckets off. */
function bucketInfo(d: PreparedDataset): unknown {
  if (!d.buckets.enabled) return null;
  const m: BucketManager = d.buckets.manager;
  const buckets: Record<string, unknown> = {};
  m.resos.forEach((r, i) => (buckets[String(i)] = { resolution: r, count: m.buckets[i].length }));
  return { buckets, mean_img_ar_error: d.buckets.meanArError };
}

function datasetsMetadata(data: PreparedData): {
  datasets: unknown[];
  dirs: Record<string, unknown>;
  tags: Record<string, unknown>;
} {
  const dirs: Record<string, unknown> = {};
  const tags: Record<string, unknown> = {};
  const datasets = data.datasets.map((d) => {
    const p = d.blueprint.params;
    const subsets = d.blueprint.subsets.map((s, i) => {
      const sm: Record<string, unknown> = {
        img_count: d.scan.imageCounts[i],
        num_repeats: s.num_repeats,
        color_aug: s.color_aug,
        flip_aug: s.flip_aug,
        random_crop: s.random_crop,
        shuffle_caption: s.shuffle_caption,
        keep_tokens: s.keep_tokens,
        keep_tokens_separator: s.keep_tokens_separator,
        secondary_separator: s.secondary_separator,
        enable_wildcard: s.enable_wildcard,
        caption_prefix: s.caption_prefix,
        caption_suffix: s.caption_suffix,
      };
      let dir: string | null = null;
      if (s.image_dir) dir = sm.image_dir = baseName(s.image_dir);
      if (d.blueprint.isDreambooth) {
        sm.class_tokens = s.class_tokens;
        sm.is_reg = s.is_reg;
        if (s.is_reg) dir = null;
      } else {
        dir = sm.metadata_file = baseName(s.metadata_file ?? "");
      }
      if (dir !== null) {
        let v = dir;
        for (let k = 2; v in dirs; k++) v = `${dir} (${k})`;
        dirs[v] = { n_repeats: s.num_repeats, img_count: d.scan.imageCounts[i] };
      }
      return sm;
    });
    for (const [k, v] of Object.entries(d.scan.tagFrequency)) if (!(k in tags)) tags[k] = v;
    return {
      is_dreambooth: d.blueprint.isDreambooth,
      batch_size_per_device: p.batch_size,
      num_train_images: d.scan.numTrainImages,
      num_reg_images: d.scan.numRegImages,
      resolution: p.resolution,
      enable_bucket: p.enable_bucket,
      min_bucket_reso: p.min_bucket_reso,
      max_bucket_reso: p.max_bucket_reso,
      tag_frequency: d.scan.tagFrequency,
      bucket_info: bucketInfo(d),
      subsets,
    };
  });
  return { datasets, dirs, tags };
}

/** The flat dataset keys kohya writes without a dataset config (one dataset). */
function flatDatasetMetadata(plan: MetadataPlan, d: PreparedDataset): Record<string, unknown> {
  const train: Record<string, unknown> = {};
  const reg: Record<string, unknown> = {};
  d.blueprint.subsets.forEach((s, i) => {
    const into = s.is_reg ? reg : train;
    into[baseName(s.image_dir ?? s.metadata_file ?? "")] = {
      n_repeats: s.num_repeats,
      img_count: d.scan.imageCounts[i],
    };
  });
  const s0 = d.blueprint.subsets[0];
  const p = d.blueprint.params;
  return {
    batch_size_per_device: plan.batchSizePerDevice,
    total_batch_size: plan.totalBatchSize,
    resolution: p.resolution,
    color_aug: s0.color_aug,
    flip_aug: s0.flip_aug,
    random_crop: s0.random_crop,
    shuffle_caption: s0.shuffle_caption,
    enable_bucket: p.enable_bucket,
    bucket_no_upscale: p.bucket_no_upscale,
    min_bucket_reso: p.min_bucket_reso,
    max_bucket_reso: p.max_bucket_reso,
    keep_tokens: s0.keep_tokens,
    dataset_dirs: train,
    reg_dataset_dirs: reg,
    tag_frequency: d.scan.tagFrequency,
    bucket_info: bucketInfo(d),
  };
}

/** The run's metadata, without the per-save keys (see {@link saveMetadata}). */
export function runMetadata(
  plan: MetadataPlan,
  data: PreparedData,
  facts: RunFacts,
): Record<string, string> {
  const input: Record<string, unknown> = {
    ...plan.settings,
    base_model_version: baseModelVersion(plan.v2, plan.vParameterization, plan.sdxl),
    session_id: facts.sessionId,
    training_started_at: facts.startedAt,
    num_train_images: data.numTrainImages,
    num_reg_images: data.numRegImages,
    num_batches_per_epoch: facts.numBatchesPerEpoch,
    num_epochs: facts.numEpochs,
    max_train_steps: facts.maxTrainSteps,
    lr_warmup_steps: facts.lrWarmupSteps,
    seed: facts.seed,
    optimizer: facts.optimizer,
  };
  if (facts.networkArgs && Object.keys(facts.networkArgs).length > 0) {
    input.network_args = facts.networkArgs;
  }
  if (facts.modelHash) input.sd_model_hash = facts.modelHash;
  if (facts.vaeHash) input.vae_hash = facts.vaeHash;
  if (data.fromConfigFile) {
    const { datasets, dirs, tags } = datasetsMetadata(data);
    input.datasets = datasets;
    input.tag_frequency = tags;
    input.dataset_dirs = dirs;
  } else {
    Object.assign(input, flatDatasetMetadata(plan, data.datasets[0]));
  }
  return trainingMetadata(input);
}

const MINIMUM_KEYS = [
  "ss_v2",
  "ss_base_model_version",
  "ss_network_module",
  "ss_network_dim",
  "ss_network_alpha",
  "ss_network_args",
];

/** The metadata of one save: the run's plus step, epoch, finish time and `modelspec.*`. */
export function saveMetadata(
  run: Record<string, string>,
  plan: MetadataPlan,
  s: { step: number; epoch: number; now: number; maxBucket: [number, number] },
): Record<string, string> {
  const md: Record<string, string> = plan.minimal
    ? Object.fromEntries(Object.entries(run).filter(([k]) => MINIMUM_KEYS.includes(k)))
    : {
      ...run,
      ss_training_finished_at: pyFloatRepr(s.now),
      ss_steps: String(s.step),
      ss_epoch: String(s.epoch),
    };
  Object.assign(
    md,
    modelSpecMetadata({
      v2: plan.v2,
      vParameterization: plan.vParameterization,
      sdxl: plan.sdxl,
      timestamp: s.now,
      title: plan.title,
      resolution: s.maxBucket,
      author: plan.author,
      description: plan.description,
      license: plan.license,
      tags: plan.tags,
      clipSkip: plan.clipSkip,
      extra: plan.usageHint ? { usage_hint: plan.usageHint } : undefined,
    }),
  );
  return md;
}
