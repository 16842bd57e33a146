/**
 * What train_network decides before it loads a model: which kohya settings lorakit cannot honour
 * (each a LorakitError naming the flag), and the datasets — the blueprint from `--dataset_config`
 * or the folder flags, every subset scanned, buckets made, kohya's warnings collected, and the
 * batch count per epoch that fixes `--max_train_epochs`.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { bucketSummary } from "./buckets.ts";
import {
  type DatasetBlueprint,
  generateBlueprint,
  loadDatasetConfig,
  type UserConfig,
  userConfigFromArgs,
} from "../kohya/dataset_config.ts";
import {
  type DatasetBuckets,
  type ImageEntry,
  makeDatasetBuckets,
  scanDataset,
  type ScannedDataset,
} from "./dataset_scan.ts";
import { type ImageChecker, imageChecker, skippedSummary } from "./image_check.ts";
import type { TrainArgs } from "../kohya/train_args.ts";

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
  /** kohya's warnings and the bucket summaries, in order. */
  messages: string[];
  /** Files left out (unreadable images), with the reason. */
  skipped: { path: string; reason: string }[];
  numTrainImages: number;
  numRegImages: number;
}

/** Non-default settings lorakit's trainer does not implement, with the reason. */
const NOT_IMPLEMENTED: [flag: keyof TrainArgs, reason: string][] = [
  ["multires_noise_iterations", "multi-resolution (pyramid) noise is not implemented"],
  ["ip_noise_gamma", "input perturbation noise is not implemented"],
  ["ip_noise_gamma_random_strength", "input perturbation noise is not implemented"],
  ["adaptive_noise_scale", "adaptive noise scale is not implemented"],
  ["zero_terminal_snr", "zero-terminal-SNR beta rescaling is not implemented"],
  ["weighted_captions", "weighted captions ((token:1.3) in captions) are not implemented"],
  ["alpha_mask", "alpha-mask loss is not implemented"],
  ["face_crop_aug_range", "face-centred crop augmentation is not implemented"],
  ["debug_dataset", "the dataset viewer is not implemented"],
  ["initial_epoch", "starting at a later epoch is not implemented; use --resume"],
  ["initial_step", "starting at a later step is not implemented; use --resume"],
  ["skip_until_initial_step", "skipping to an initial step is not implemented; use --resume"],
  ["validate_every_n_steps", "validation is not implemented"],
  ["validate_every_n_epochs", "validation is not implemented"],
  ["max_validation_steps", "validation is not implemented"],
  ["lr_scheduler_args", "scheduler arguments are not implemented"],
  ["lr_scheduler_timescale", "the inverse-sqrt scheduler is not implemented"],
  ["lr_scheduler_min_lr_ratio", "minimum-lr schedulers are not implemented"],
];

const DEFAULTS: Partial<Record<keyof TrainArgs, unknown>> = {
  ip_noise_gamma_random_strength: false,
  zero_terminal_snr: false,
  weighted_captions: false,
  alpha_mask: false,
  debug_dataset: false,
  skip_until_initial_step: false,
};

/**
 * Reject the settings lorakit's trainer cannot honour (kohya flags that parse but whose feature
 * is not implemented here), and kohya's own invalid combinations. Each error names the flag.
 */
export function checkTrainSupport(args: TrainArgs): void {
  const fail = (flag: string, what: string): never => {
    throw new LorakitError(`--${flag}: ${what}`);
  };
  for (const [flag, reason] of NOT_IMPLEMENTED) {
    const v = args[flag];
    const def = flag in DEFAULTS ? DEFAULTS[flag] : null;
    if (v !== def && v !== undefined) fail(flag, `${reason} in lorakit (found ${String(v)})`);
  }
  if (args.loss_type !== "l2") {
    fail("loss_type", `lorakit trains with the l2 loss only, found ${args.loss_type}`);
  }
  if (args.lr_decay_steps !== 0) {
    fail("lr_decay_steps", "warmup-stable-decay schedules are not implemented in lorakit");
  }
  if (args.validation_split !== 0) {
    fail("validation_split", "validation is not implemented in lorakit");
  }
  if ((args.log_with === "tensorboard" || args.log_with === "all") && args.logging_dir === null) {
    fail("log_with", `${args.log_with} needs --logging_dir (as in kohya)`);
  }
  if (args.pretrained_model_name_or_path === null) {
    fail("pretrained_model_name_or_path", "required: the base model (.safetensors/.ckpt/folder)");
  }
  if (args.output_dir === null) fail("output_dir", "required: the folder for the trained LoRA");
  if (args.full_fp16 && args.mixed_precision !== "fp16") {
    fail("full_fp16", "requires --mixed_precision fp16 (as in kohya)");
  }
  if (args.cache_latents && args.random_crop) {
    fail("random_crop", "cannot be used with --cache_latents (the crop would be cached)");
  }
  if (args.cache_latents && args.color_aug) {
    fail("color_aug", "cannot be used with --cache_latents (the colours would be cached)");
  }
  if (args.cache_latents_to_disk && !args.cache_latents) {
    // kohya turns cache_latents on implicitly.
    args.cache_latents = true;
  }
  const interp = args.resize_interpolation;
  if (interp !== null && !["lanczos", "area", "cubic", "bicubic"].includes(interp)) {
    fail(
      "resize_interpolation",
      `lorakit resizes with area, cubic or lanczos, found ${interp}`,
    );
  }
  if (args.sample_prompts !== null && !args.sample_prompts.toLowerCase().endsWith(".txt")) {
    fail("sample_prompts", `lorakit reads .txt prompt files only, found ${args.sample_prompts}`);
  }
  if ((args.base_weights_multiplier?.length ?? 0) > (args.base_weights?.length ?? 0)) {
    fail("base_weights_multiplier", "has more values than --base_weights has files");
  }
}

/** The user config: `--dataset_config`, else the folder flags. */
async function userConfig(
  args: TrainArgs,
  messages: string[],
): Promise<{ config: UserConfig; fromFile: boolean }> {
  if (args.dataset_config !== null) {
    const ignored = ["train_data_dir", "reg_data_dir", "in_json"].filter(
      (k) => (args as unknown as Record<string, unknown>)[k] !== null,
    );
    if (ignored.length > 0) {
      messages.push(
        `ignoring the following options because config file is found: ${ignored.join(", ")}`,
      );
    }
    return { config: await loadDatasetConfig(args.dataset_config), fromFile: true };
  }
  const { config, warnings } = await userConfigFromArgs(args as unknown as Record<string, unknown>);
  messages.push(...warnings);
  return { config, fromFile: false };
}

/** Blueprint, scan and buckets of every dataset. */
export async function prepareData(args: TrainArgs): Promise<PreparedData> {
  const messages: string[] = [];
  const { config, fromFile } = await userConfig(args, messages);
  const bp = generateBlueprint(config, args as unknown as Record<string, unknown>);
  messages.push(...bp.warnings);
  if (bp.datasets.length === 0) {
    throw new LorakitError(
      `${args.dataset_config ?? "--train_data_dir"}: no datasets ([[datasets]] with subsets)`,
    );
  }
  const out: PreparedData = {
    datasets: [],
    fromConfigFile: fromFile,
    messages,
    skipped: [],
    numTrainImages: 0,
    numRegImages: 0,
  };
  // Every image is decoded once here, so a bad one is left out before anything is counted.
  const checker = imageChecker(args.max_data_loader_n_workers);
  try {
    await scanAll(args, bp.datasets, fromFile, checker, out);
  } finally {
    checker.close();
  }
  const found = out.datasets.reduce((a, d) => a + d.scan.imagesFound, 0);
  if (out.skipped.length > 0) messages.push(skippedSummary(out.skipped, found));
  const total = out.datasets.reduce((a, d) => a + d.scan.images.length, 0);
  if (total === 0) {
    const where = args.dataset_config ?? args.train_data_dir ?? args.in_json ?? "the dataset";
    throw new LorakitError(
      `${where}: no trainable images found` +
        (out.skipped.length > 0
          ? ` (${out.skipped.length} skipped: ${out.skipped[0].reason})`
          : ""),
    );
  }
  return out;
}

async function scanAll(
  args: TrainArgs,
  blueprints: DatasetBlueprint[],
  fromFile: boolean,
  checker: ImageChecker,
  out: PreparedData,
): Promise<void> {
  const messages = out.messages;
  for (const [i, blueprint] of blueprints.entries()) {
    const reso = blueprint.params.resolution;
    if (reso !== null && (reso[0] % 64 !== 0 || reso[1] % 64 !== 0)) {
      throw new LorakitError(
        `${
          fromFile ? `${args.dataset_config}: datasets[${i}].resolution` : "--resolution"
        }: expected width and height divisible by 64 (SD's U-Net halves the 1/8 latents three ` +
          `times), found ${reso[0]}x${reso[1]}`,
      );
    }
    if (args.cache_latents) {
      const j = blueprint.subsets.findIndex((s) => s.color_aug || s.random_crop);
      if (j >= 0) {
        throw new LorakitError(
          `${args.dataset_config ?? "--train_data_dir"}: datasets[${i}].subsets[${j}]: ` +
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
