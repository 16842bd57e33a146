/**
 * `--dataset_config` in TOML and JSON: `parseDatasetConfig` (TOML or JSON syntax, kohya's schema
 * for [general], [[datasets]] and [[datasets.subsets]]) and `generateBlueprint` (the fallbacks and
 * the bucket checks). JSON is chosen when the text starts with `{` or `[`, as a `.json` file.
 *
 * @module
 */
import { generateBlueprint, parseDatasetConfig } from "../../../core/kohya/dataset_config.ts";
import type { FuzzTarget } from "../target.ts";
import { inputText, TEXT_BOUND_TEXT, textBound, textSeeds } from "./text_input.ts";

const DREAMBOOTH = `[general]
enable_bucket = true
shuffle_caption = true
caption_extension = ".txt"
keep_tokens = 1

[[datasets]]
resolution = 512
batch_size = 2
min_bucket_reso = 256
max_bucket_reso = 1024
bucket_reso_steps = 64

  [[datasets.subsets]]
  image_dir = "img/10_sks dog"
  class_tokens = "sks dog"
  num_repeats = 10
  flip_aug = true

  [[datasets.subsets]]
  is_reg = true
  image_dir = 'reg/dog'
  class_tokens = "dog"
  num_repeats = 1
  caption_dropout_rate = 0.05
  face_crop_aug_range = [2.0, 4.0]
`;

const FINE_TUNING = `# fine-tuning subsets
[[datasets]]
resolution = [768, 512]
enable_bucket = false

[[datasets.subsets]]
image_dir = "train"
metadata_file = "meta_lat.json"
color_aug = false
random_crop = true
keep_tokens_separator = "|||"
caption_prefix = "masterpiece, "
token_warmup_min = 1
token_warmup_step = 0.5
`;

const JSON_CONFIG = JSON.stringify(
  {
    general: { shuffle_caption: false, caption_separator: ";" },
    datasets: [{
      resolution: [640, 640],
      batch_size: 1,
      subsets: [{ image_dir: "a", num_repeats: 3, alpha_mask: true }],
    }],
  },
  null,
  2,
);

/** What the command line would give the fallbacks (kohya's argparse defaults, a resolution). */
const ARGS = {
  resolution: "512,512",
  train_batch_size: 1,
  dataset_repeats: 1,
  enable_bucket: false,
  min_bucket_reso: 256,
  max_bucket_reso: 1024,
  bucket_reso_steps: 64,
  caption_extension: ".caption",
};

const TOKENS = [
  "[general]",
  "[[datasets]]",
  "[[datasets.subsets]]",
  "[datasets]",
  "datasets = 1",
  'image_dir = "x"',
  'metadata_file = "m.json"',
  "resolution = [512, 768]",
  'resolution = "512,x"',
  "batch_size = 0",
  "num_repeats = -3",
  "enable_bucket = true",
  "bucket_reso_steps = 48",
  "min_bucket_reso = 99999999999999999999",
  "max_bucket_reso = 1",
  "bucket_no_upscale = true",
  "is_reg = true",
  'class_tokens = "sks"',
  "face_crop_aug_range = [4.0, 2.0]",
  "caption_dropout_rate = 1e309",
  "keep_tokens = 1.5",
  "validation_split = 0.1",
  "custom_attributes = { a = 1, b = [1, 2] }",
  "x = 1979-05-27T07:32:00Z",
  "a.b.c = 1",
  "'quoted key' = 1",
  'multi = """',
  '"subsets" = []',
  "subsets = [ { image_dir = 'y' } ]",
  "conditioning_data_dir = 'c'",
  '{"datasets": [{"subsets": [{"image_dir": "z"}]}]}',
  '"general": {},',
];

export const target: FuzzTarget = {
  name: "dataset_config",
  what: "parseDatasetConfig (TOML or JSON) and generateBlueprint",
  boundText: TEXT_BOUND_TEXT,
  allocBound: textBound,
  seeds: () => textSeeds([DREAMBOOTH, FINE_TUNING, JSON_CONFIG]),
  text: {
    tokens: TOKENS,
    nesting: [["[", "]"], ["{a=", "}"], ["x = [", "]\n"], ['{"a":', "}"]],
  },
  run(input) {
    const text = inputText(input);
    const file = /^\s*[{[]/.test(text) && !/^\s*\[\[?\w/.test(text) ? "fuzz.json" : "fuzz.toml";
    const user = parseDatasetConfig(text, file);
    const bp = generateBlueprint(user, ARGS);
    for (const d of bp.datasets) {
      if (!(d.params.batch_size >= 1)) throw new Error(`batch_size ${d.params.batch_size} passed`);
    }
    return Promise.resolve();
  },
};
