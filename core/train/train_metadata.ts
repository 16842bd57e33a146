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
import type { TrainArgs } from "../kohya/train_args.ts";
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
function flatDatasetMetadata(args: TrainArgs, d: PreparedDataset): Record<string, unknown> {
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
    batch_size_per_device: args.train_batch_size,
    total_batch_size: args.train_batch_size * args.gradient_accumulation_steps,
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
  args: TrainArgs,
  data: PreparedData,
  facts: RunFacts,
): Record<string, string> {
  const a = args;
  const input: Record<string, unknown> = {
    session_id: facts.sessionId,
    training_started_at: facts.startedAt,
    output_name: a.output_name,
    learning_rate: a.learning_rate,
    text_encoder_lr: a.text_encoder_lr?.[0] ?? null,
    unet_lr: a.unet_lr,
    num_train_images: data.numTrainImages,
    num_reg_images: data.numRegImages,
    num_batches_per_epoch: facts.numBatchesPerEpoch,
    num_epochs: facts.numEpochs,
    gradient_checkpointing: a.gradient_checkpointing,
    gradient_accumulation_steps: a.gradient_accumulation_steps,
    max_train_steps: facts.maxTrainSteps,
    lr_warmup_steps: facts.lrWarmupSteps,
    lr_scheduler: a.lr_scheduler,
    network_module: a.network_module,
    network_dim: a.network_dim ?? 4,
    network_alpha: a.network_alpha,
    network_dropout: a.network_dropout,
    mixed_precision: a.mixed_precision,
    full_fp16: a.full_fp16,
    v2: a.v2,
    base_model_version: baseModelVersion(a.v2, a.v_parameterization),
    clip_skip: a.clip_skip,
    max_token_length: a.max_token_length,
    cache_latents: a.cache_latents,
    seed: facts.seed,
    lowram: a.lowram,
    noise_offset: a.noise_offset,
    training_comment: a.training_comment,
    optimizer: facts.optimizer,
    max_grad_norm: a.max_grad_norm,
    caption_dropout_rate: a.caption_dropout_rate,
    caption_dropout_every_n_epochs: a.caption_dropout_every_n_epochs,
    caption_tag_dropout_rate: a.caption_tag_dropout_rate,
    prior_loss_weight: a.prior_loss_weight,
    min_snr_gamma: a.min_snr_gamma,
    scale_weight_norms: a.scale_weight_norms,
    debiased_estimation: a.debiased_estimation_loss,
    noise_offset_random_strength: a.noise_offset_random_strength,
    resize_interpolation: a.resize_interpolation,
    sd_model_name: baseName(a.pretrained_model_name_or_path ?? ""),
  };
  if (facts.networkArgs && Object.keys(facts.networkArgs).length > 0) {
    input.network_args = facts.networkArgs;
  }
  if (facts.modelHash) input.sd_model_hash = facts.modelHash;
  if (a.vae !== null) {
    input.vae_name = baseName(a.vae);
    if (facts.vaeHash) input.vae_hash = facts.vaeHash;
  }
  if (data.fromConfigFile) {
    const { datasets, dirs, tags } = datasetsMetadata(data);
    input.datasets = datasets;
    input.tag_frequency = tags;
    input.dataset_dirs = dirs;
  } else {
    Object.assign(input, flatDatasetMetadata(args, data.datasets[0]));
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
  args: TrainArgs,
  s: { step: number; epoch: number; now: number; maxBucket: [number, number] },
): Record<string, string> {
  const md: Record<string, string> = args.no_metadata
    ? Object.fromEntries(Object.entries(run).filter(([k]) => MINIMUM_KEYS.includes(k)))
    : {
      ...run,
      ss_training_finished_at: pyFloatRepr(s.now),
      ss_steps: String(s.step),
      ss_epoch: String(s.epoch),
    };
  const title = args.metadata_title ?? args.output_name ?? "last";
  Object.assign(
    md,
    modelSpecMetadata({
      v2: args.v2,
      vParameterization: args.v_parameterization,
      timestamp: s.now,
      title,
      resolution: s.maxBucket,
      author: args.metadata_author ?? undefined,
      description: args.metadata_description ?? undefined,
      license: args.metadata_license ?? undefined,
      tags: args.metadata_tags ?? undefined,
      clipSkip: args.clip_skip ?? undefined,
      extra: args.metadata_usage_hint ? { usage_hint: args.metadata_usage_hint } : undefined,
    }),
  );
  return md;
}
