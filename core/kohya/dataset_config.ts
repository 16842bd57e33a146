/**
 * `--dataset_config` (TOML or JSON, as kohya's `load_user_config`) checked against kohya's schema
 * and turned into a blueprint by kohya's fallback rule: each setting comes from the subset, else
 * its dataset, else [general], else the command line (whose defaults always exist), else the
 * dataclass default (library/config_util.py, `BlueprintGenerator`). The command-line forms
 * (`--train_data_dir` folders, `--in_json`) are in dataset_config_args.ts.
 *
 * @module
 */
import { parse as parseToml } from "../deps/smol_toml.ts";
import { LorakitError, oneLineReason } from "../errors.ts";
import { readText } from "../io/fs.ts";
import { type DatasetArgs, datasetArgsToConfig, type UserConfig } from "./dataset_config_args.ts";
import {
  checkValue,
  describeValue,
  DREAMBOOTH_DATASET_KEYS,
  DREAMBOOTH_SUBSET_KEYS,
  FINETUNING_DATASET_KEYS,
  FINETUNING_SUBSET_KEYS,
  GENERAL_KEYS,
  type KeyType,
  nearestName,
  TYPE_WORDS,
  UNSUPPORTED_KEYS,
} from "./dataset_schema.ts";

/** The per-subset caption settings, named as kohya's dataset-config keys. */
export interface CaptionSettings {
  shuffle_caption: boolean;
  caption_separator: string;
  keep_tokens: number;
  keep_tokens_separator: string | null;
  secondary_separator: string | null;
  enable_wildcard: boolean;
  caption_prefix: string | null;
  caption_suffix: string | null;
  caption_dropout_rate: number;
  caption_dropout_every_n_epochs: number;
  caption_tag_dropout_rate: number;
  token_warmup_min: number;
  token_warmup_step: number;
}

/** One subset's settings after the fallbacks (kohya's `DreamBoothSubsetParams` / `FineTuning…`). */
export interface SubsetParams extends CaptionSettings {
  image_dir: string | null;
  num_repeats: number;
  color_aug: boolean;
  flip_aug: boolean;
  face_crop_aug_range: [number, number] | null;
  random_crop: boolean;
  custom_attributes: Record<string, unknown> | null;
  resize_interpolation: string | null;
  alpha_mask: boolean;
  /** DreamBooth only. */
  is_reg: boolean;
  class_tokens: string | null;
  caption_extension: string;
  cache_info: boolean;
  /** Fine-tuning only. */
  metadata_file: string | null;
}

/** One dataset's settings after the fallbacks. */
export interface DatasetParams {
  resolution: [number, number] | null;
  network_multiplier: number;
  debug_dataset: boolean;
  validation_seed: number | null;
  validation_split: number;
  batch_size: number;
  enable_bucket: boolean;
  min_bucket_reso: number;
  max_bucket_reso: number;
  bucket_reso_steps: number;
  bucket_no_upscale: boolean;
  prior_loss_weight: number;
  max_token_length: number | null;
}

/** kohya's `DatasetBlueprint`. */
export interface DatasetBlueprint {
  isDreambooth: boolean;
  params: DatasetParams;
  subsets: SubsetParams[];
}

/** The blueprint, plus warnings kohya would log while building it. */
export interface Blueprint {
  datasets: DatasetBlueprint[];
  warnings: string[];
}

const SUBSET_DEFAULTS: SubsetParams = {
  image_dir: null,
  num_repeats: 1,
  shuffle_caption: false,
  caption_separator: ",",
  keep_tokens: 0,
  keep_tokens_separator: null,
  secondary_separator: null,
  enable_wildcard: false,
  color_aug: false,
  flip_aug: false,
  face_crop_aug_range: null,
  random_crop: false,
  caption_prefix: null,
  caption_suffix: null,
  caption_dropout_rate: 0,
  caption_dropout_every_n_epochs: 0,
  caption_tag_dropout_rate: 0,
  token_warmup_min: 1,
  token_warmup_step: 0,
  custom_attributes: null,
  resize_interpolation: null,
  alpha_mask: false,
  is_reg: false,
  class_tokens: null,
  caption_extension: ".caption",
  cache_info: false,
  metadata_file: null,
};

const DATASET_DEFAULTS: DatasetParams = {
  resolution: null,
  network_multiplier: 1,
  debug_dataset: false,
  validation_seed: null,
  validation_split: 0,
  batch_size: 1,
  enable_bucket: false,
  min_bucket_reso: 256,
  max_bucket_reso: 1024,
  bucket_reso_steps: 64,
  bucket_no_upscale: false,
  prior_loss_weight: 1,
  max_token_length: null,
};

/** Read and check a dataset config file (`.toml` or `.json`, chosen by extension as kohya does). */
export async function loadDatasetConfig(path: string): Promise<UserConfig> {
  const lower = path.toLowerCase();
  if (!lower.endsWith(".toml") && !lower.endsWith(".json")) {
    throw new LorakitError(
      `--dataset_config ${path}: expected a .toml or .json file (kohya picks the format by extension)`,
    );
  }
  return parseDatasetConfig(await readText(path), path);
}

/** Parse and check dataset config text; `file` names it in errors and picks TOML or JSON. */
export function parseDatasetConfig(text: string, file: string): UserConfig {
  let raw: unknown;
  try {
    raw = file.toLowerCase().endsWith(".json") ? JSON.parse(text) : parseToml(text);
  } catch (e) {
    throw new LorakitError(
      `${file}: not valid ${file.endsWith(".json") ? "JSON" : "TOML"}: ${oneLineReason(e)}`,
    );
  }
  return checkUserConfig(raw, file);
}

/** Check a parsed config object against kohya's schema. */
export function checkUserConfig(raw: unknown, file: string): UserConfig {
  const fail = (where: string, what: string): never => {
    throw new LorakitError(`${file}: ${where}: ${what}`);
  };
  if (!isTable(raw)) fail("top level", "expected a table");
  const top = raw as Record<string, unknown>;
  for (const key of Object.keys(top)) {
    if (key !== "general" && key !== "datasets") {
      fail(key, unknownKeyText(key, ["general", "datasets"], "the top level"));
    }
  }
  const general = top.general === undefined
    ? {}
    : checkTable(top.general, GENERAL_KEYS, "general", file);
  const datasetsRaw = top.datasets ?? [];
  if (!Array.isArray(datasetsRaw)) fail("datasets", "expected an array of tables ([[datasets]])");
  const datasets = (datasetsRaw as unknown[]).map((d, i) => {
    const where = `datasets[${i}]`;
    if (!isTable(d)) fail(where, `expected a table, found ${describeValue(d)}`);
    const table = d as Record<string, unknown>;
    const subsetsRaw = table.subsets ?? [];
    if (!Array.isArray(subsetsRaw)) {
      fail(`${where}.subsets`, "expected an array of tables ([[datasets.subsets]])");
    }
    const subs = subsetsRaw as unknown[];
    subs.forEach((s, j) => {
      if (!isTable(s)) {
        fail(`${where}.subsets[${j}]`, `expected a table, found ${describeValue(s)}`);
      }
    });
    const withMeta = subs.filter((s) => "metadata_file" in (s as object)).length;
    if (withMeta > 0 && withMeta < subs.length) {
      fail(
        where,
        "DreamBooth subsets (no metadata_file) and fine-tuning subsets (with metadata_file) " +
          "cannot be mixed in the same dataset; split them into separate [[datasets]]",
      );
    }
    const fineTuning = subs.length > 0 && withMeta === subs.length;
    const { subsets: _, ...rest } = table;
    const checked = checkTable(
      rest,
      fineTuning ? FINETUNING_DATASET_KEYS : DREAMBOOTH_DATASET_KEYS,
      where,
      file,
    );
    const subsets = subs.map((s, j) => {
      const sw = `${where}.subsets[${j}]`;
      const t = checkTable(
        s,
        fineTuning ? FINETUNING_SUBSET_KEYS : DREAMBOOTH_SUBSET_KEYS,
        sw,
        file,
      );
      const required = fineTuning ? "metadata_file" : "image_dir";
      if (t[required] === undefined) {
        fail(
          sw,
          `required key ${required} is missing (a ${
            fineTuning ? "fine-tuning" : "DreamBooth"
          } subset needs it)`,
        );
      }
      return t;
    });
    return { table: checked, subsets };
  });
  return { general, datasets };
}

function checkTable(
  value: unknown,
  schema: Record<string, KeyType>,
  where: string,
  file: string,
): Record<string, unknown> {
  if (!isTable(value)) {
    throw new LorakitError(`${file}: ${where}: expected a table, found ${describeValue(value)}`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const type = schema[key];
    if (type === undefined) {
      if (key in UNSUPPORTED_KEYS) {
        throw new LorakitError(`${file}: ${where}.${key}: ${UNSUPPORTED_KEYS[key]}`);
      }
      throw new LorakitError(
        `${file}: ${where}.${key}: ${unknownKeyText(key, Object.keys(schema), where)}`,
      );
    }
    const checked = checkValue(type, v);
    if (checked === undefined) {
      throw new LorakitError(
        `${file}: ${where}.${key}: expected ${TYPE_WORDS[type]}, found ${describeValue(v)}`,
      );
    }
    out[key] = checked;
  }
  return out;
}

function unknownKeyText(key: string, known: string[], where: string): string {
  const near = nearestName(key, known);
  return `unknown key ${JSON.stringify(key)} in ${where}` +
    (near ? ` (did you mean ${JSON.stringify(near)}?)` : "") +
    `; kohya's schema does not allow it there`;
}

function isTable(v: unknown): boolean {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

/** kohya's `BlueprintGenerator.generate` plus the dataset checks of DreamBoothDataset. */
export function generateBlueprint(user: UserConfig, args: DatasetArgs): Blueprint {
  const argConfig = datasetArgsToConfig(args);
  const warnings: string[] = [];
  const datasets = user.datasets.map((d, i) => {
    const isDreambooth = d.subsets.every((s) => !("metadata_file" in s));
    const subsets = d.subsets.map((s) => {
      const p = fallback(SUBSET_DEFAULTS, [s, d.table, user.general, argConfig]);
      if (p.caption_extension && !p.caption_extension.startsWith(".")) {
        p.caption_extension = "." + p.caption_extension;
      }
      if (!isDreambooth) {
        p.is_reg = false;
        p.class_tokens = null;
      }
      return p;
    });
    const params = fallback(DATASET_DEFAULTS, [d.table, user.general, argConfig]);
    checkDataset(params, isDreambooth, `datasets[${i}]`, warnings);
    return { isDreambooth, params, subsets };
  });
  return { datasets, warnings };
}

function fallback<T extends object>(defaults: T, sources: Record<string, unknown>[]): T {
  const out = { ...defaults } as Record<string, unknown>;
  for (const key of Object.keys(defaults)) {
    for (const src of sources) {
      const v = src[key];
      if (v !== null && v !== undefined) {
        out[key] = Array.isArray(v) ? [...v] : v;
        break;
      }
    }
  }
  return out as T;
}

function checkDataset(p: DatasetParams, dreambooth: boolean, where: string, warnings: string[]) {
  if (dreambooth && p.resolution === null) {
    throw new LorakitError(
      `${where}: resolution is required (set --resolution or resolution in the dataset config)`,
    );
  }
  if (p.batch_size < 1) {
    throw new LorakitError(`${where}: batch_size must be at least 1, found ${p.batch_size}`);
  }
  if (!p.enable_bucket || p.resolution === null) return;
  const steps = p.bucket_reso_steps;
  // train_network (SD 1.x/2.x) calls verify_bucket_reso_steps(64).
  if (!(steps >= 1) || steps % 64 !== 0) {
    throw new LorakitError(
      `${where}: bucket_reso_steps is ${steps}; for SD 1.x/2.x it must be divisible by 64 (kohya's verify_bucket_reso_steps)`,
    );
  }
  // kohya's adjust_min_max_bucket_reso_by_steps: floor the minimum, ceil the maximum.
  if (p.min_bucket_reso % steps !== 0) {
    const v = p.min_bucket_reso - (p.min_bucket_reso % steps);
    warnings.push(
      `${where}: min_bucket_reso adjusted to a multiple of bucket_reso_steps: ${p.min_bucket_reso} -> ${v}`,
    );
    p.min_bucket_reso = v;
  }
  if (p.max_bucket_reso % steps !== 0) {
    const v = p.max_bucket_reso + steps - (p.max_bucket_reso % steps);
    warnings.push(
      `${where}: max_bucket_reso adjusted to a multiple of bucket_reso_steps: ${p.max_bucket_reso} -> ${v}`,
    );
    p.max_bucket_reso = v;
  }
  const [w, h] = p.resolution;
  if (Math.min(w, h) < p.min_bucket_reso) {
    throw new LorakitError(
      `${where}: min_bucket_reso (${p.min_bucket_reso}) must be at most the resolution's smaller side (${
        Math.min(w, h)
      }); lower min_bucket_reso or raise resolution`,
    );
  }
  if (Math.max(w, h) > p.max_bucket_reso) {
    throw new LorakitError(
      `${where}: max_bucket_reso (${p.max_bucket_reso}) must be at least the resolution's larger side (${
        Math.max(w, h)
      }); raise max_bucket_reso or lower resolution`,
    );
  }
  if (p.bucket_no_upscale) {
    warnings.push(
      `${where}: min_bucket_reso and max_bucket_reso are ignored with bucket_no_upscale (buckets follow each image's size)`,
    );
  }
}

export {
  type DatasetArgs,
  datasetArgsToConfig,
  parseResolution,
  type UserConfig,
  userConfigFromArgs,
} from "./dataset_config_args.ts";
