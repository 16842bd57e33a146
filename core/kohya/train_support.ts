/**
 * The kohya settings lorakit's trainer cannot honour (flags that parse but whose feature is not
 * implemented here) and kohya's own invalid combinations, each a LorakitError naming the flag.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { TrainArgs } from "./train_args.ts";

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
