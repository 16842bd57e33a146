// deno-fmt-ignore-file -- one flag per line keeps this table readable and comparable with kohya.
/**
 * train_network flags from kohya's `add_logging_arguments`, `add_sd_models_arguments`,
 * `sai_model_spec.add_model_spec_arguments`, `add_dataset_arguments(parser, True, True, True)`
 * and `config_util.add_config_arguments`: names, types, nargs, defaults and choices as kohya
 * declares them (library/train_util.py, main branch), with lorakit's support class.
 *
 * @module
 */
import type { FlagSpec } from "./train_args_types.ts";

/** Logging, model, model-spec metadata, dataset and config flags. */
export const DATA_FLAGS = [
  // add_logging_arguments (library/utils.py)
  { name: "console_log_level", type: "str", default: null, choices: ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help: "console log level", support: "noop", note: "lorakit's console output has one level" },
  { name: "console_log_file", type: "str", default: null, help: "log to this file", support: "noop", note: "redirect the console output instead" },
  { name: "console_log_simple", type: "bool", default: false, help: "simple log output", support: "noop", note: "lorakit's console output is always simple" },
  // add_sd_models_arguments
  { name: "v2", type: "bool", default: false, help: "load a Stable Diffusion 2.x model" },
  { name: "v_parameterization", type: "bool", default: false, help: "v-prediction training (SD 2.x 768-v)" },
  { name: "pretrained_model_name_or_path", type: "str", default: null, help: "base model: .safetensors/.ckpt file or diffusers folder" },
  { name: "tokenizer_cache_dir", type: "str", default: null, help: "tokenizer cache directory", support: "noop", note: "lorakit's CLIP tokenizer is built in" },
  // sai_model_spec.add_model_spec_arguments
  { name: "metadata_title", type: "str", default: null, help: "model title for metadata (default: output_name)" },
  { name: "metadata_author", type: "str", default: null, help: "author for metadata" },
  { name: "metadata_description", type: "str", default: null, help: "description for metadata" },
  { name: "metadata_license", type: "str", default: null, help: "license for metadata" },
  { name: "metadata_tags", type: "str", default: null, help: "comma-separated tags for metadata" },
  { name: "metadata_usage_hint", type: "str", default: null, help: "usage hint for metadata" },
  { name: "metadata_thumbnail", type: "str", default: null, help: "thumbnail for metadata" },
  // add_dataset_arguments
  { name: "train_data_dir", type: "str", default: null, help: "folder of <repeats>_<class tokens> image folders (or images for --in_json)" },
  { name: "cache_info", type: "bool", default: false, help: "cache captions and sizes per folder", support: "noop", note: "lorakit reads image sizes from headers, which is already fast" },
  { name: "shuffle_caption", type: "bool", default: false, help: "shuffle the caption's separated tags" },
  { name: "caption_separator", type: "str", default: ",", help: "tag separator in captions" },
  { name: "caption_extension", type: "str", default: ".caption", help: "extension of caption files" },
  { name: "caption_extention", type: "str", default: null, help: "old spelling of --caption_extension (overrides it)" },
  { name: "keep_tokens", type: "int", default: 0, help: "keep the first N tags in place when shuffling" },
  { name: "keep_tokens_separator", type: "str", default: "", help: "separator ending the fixed part of a caption" },
  { name: "secondary_separator", type: "str", default: null, help: "separator replaced by caption_separator after shuffling" },
  { name: "enable_wildcard", type: "bool", default: false, help: "captions with {a|b} wildcards and multiple lines" },
  { name: "caption_prefix", type: "str", default: null, help: "text put before every caption" },
  { name: "caption_suffix", type: "str", default: null, help: "text put after every caption" },
  { name: "color_aug", type: "bool", default: false, help: "weak color augmentation" },
  { name: "flip_aug", type: "bool", default: false, help: "horizontal flip augmentation" },
  { name: "face_crop_aug_range", type: "str", default: null, help: "face-centred crop range, e.g. 2.0,4.0" },
  { name: "random_crop", type: "bool", default: false, help: "random crop instead of centre crop" },
  { name: "debug_dataset", type: "bool", default: false, help: "show the dataset instead of training" },
  { name: "resolution", type: "str", default: null, help: "training resolution: 'size' or 'width,height'" },
  { name: "cache_latents", type: "bool", default: false, help: "cache VAE latents in memory (no color_aug/random_crop)" },
  { name: "vae_batch_size", type: "int", default: 1, help: "batch size when caching latents" },
  { name: "cache_latents_to_disk", type: "bool", default: false, help: "cache latents to .npz beside the images" },
  { name: "skip_cache_check", type: "bool", default: false, help: "do not validate cached latents" },
  { name: "enable_bucket", type: "bool", default: false, help: "aspect-ratio buckets" },
  { name: "min_bucket_reso", type: "int", default: 256, help: "smallest bucket side" },
  { name: "max_bucket_reso", type: "int", default: 1024, help: "largest bucket side" },
  { name: "bucket_reso_steps", type: "int", default: 64, help: "bucket side step (must be divisible by 64 for SD 1.x/2.x)" },
  { name: "bucket_no_upscale", type: "bool", default: false, help: "buckets follow image sizes; never enlarge" },
  { name: "resize_interpolation", type: "str", default: null, choices: ["lanczos", "nearest", "bilinear", "linear", "bicubic", "cubic", "area"], help: "resize filter (default: area when shrinking, lanczos when enlarging)" },
  { name: "token_warmup_min", type: "int", default: 1, help: "start with N tags" },
  { name: "token_warmup_step", type: "float", default: 0, help: "reach all tags at step N (N<1: share of max_train_steps)" },
  { name: "alpha_mask", type: "bool", default: false, help: "use the alpha channel as loss mask" },
  { name: "dataset_class", type: "str", default: null, help: "Python dataset class", support: "reject", note: "lorakit cannot import Python classes; use --dataset_config" },
  { name: "caption_dropout_rate", type: "float", default: 0.0, help: "drop whole captions with this probability" },
  { name: "caption_dropout_every_n_epochs", type: "int", default: 0, help: "drop all captions every N epochs" },
  { name: "caption_tag_dropout_rate", type: "float", default: 0.0, help: "drop each tag with this probability" },
  { name: "reg_data_dir", type: "str", default: null, help: "folder of regularization <repeats>_<class> folders" },
  { name: "in_json", type: "str", default: null, help: "fine-tuning metadata JSON" },
  { name: "dataset_repeats", type: "int", default: 1, help: "repeats for --in_json datasets" },
  // config_util.add_config_arguments
  { name: "dataset_config", type: "str", default: null, help: "dataset config (.toml or .json)" },
] as const satisfies readonly FlagSpec[];
