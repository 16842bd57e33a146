/**
 * The `--dataset_config` schema, key for key as kohya's `ConfigSanitizer` (library/config_util.py)
 * builds it for train_network (DreamBooth and fine-tuning subsets, caption dropout on), and the
 * type checks voluptuous applies to each key.
 *
 * One difference is forced by the TOML reader: it does not tell `1` from `1.0`, so an integer key
 * accepts `1.0` and a float key accepts `1` (voluptuous rejects `network_multiplier = 1`; we
 * take it as 1.0). A fractional value for an integer key is still an error.
 *
 * @module
 */

/** How a key's value is checked. */
export type KeyType =
  | "bool"
  | "int"
  | "float"
  | "str"
  | "dict"
  | "float_pair"
  | "int_or_pair";

/** Keys a subset, its dataset and [general] may all set (kohya: SUBSET_ASCENDABLE_SCHEMA). */
export const SUBSET_ASCENDABLE: Record<string, KeyType> = {
  color_aug: "bool",
  face_crop_aug_range: "float_pair",
  flip_aug: "bool",
  num_repeats: "int",
  random_crop: "bool",
  shuffle_caption: "bool",
  keep_tokens: "int",
  keep_tokens_separator: "str",
  secondary_separator: "str",
  caption_separator: "str",
  enable_wildcard: "bool",
  token_warmup_min: "int",
  token_warmup_step: "float",
  caption_prefix: "str",
  caption_suffix: "str",
  custom_attributes: "dict",
  resize_interpolation: "str",
};

/** Caption dropout keys (kohya: DO_SUBSET_ASCENDABLE_SCHEMA; train_network supports dropout). */
export const DROPOUT_ASCENDABLE: Record<string, KeyType> = {
  caption_dropout_every_n_epochs: "int",
  caption_dropout_rate: "float",
  caption_tag_dropout_rate: "float",
};

/** DreamBooth keys that ascend (kohya: DB_SUBSET_ASCENDABLE_SCHEMA). */
export const DREAMBOOTH_ASCENDABLE: Record<string, KeyType> = {
  caption_extension: "str",
  class_tokens: "str",
  cache_info: "bool",
};

/** Keys only a DreamBooth subset may set (`image_dir` required). */
export const DREAMBOOTH_SUBSET_ONLY: Record<string, KeyType> = {
  image_dir: "str",
  is_reg: "bool",
  alpha_mask: "bool",
};

/** Keys only a fine-tuning subset may set (`metadata_file` required). */
export const FINETUNING_SUBSET_ONLY: Record<string, KeyType> = {
  metadata_file: "str",
  image_dir: "str",
  alpha_mask: "bool",
};

/** Dataset-level keys (kohya: DATASET_ASCENDABLE_SCHEMA). */
export const DATASET_ASCENDABLE: Record<string, KeyType> = {
  batch_size: "int",
  bucket_no_upscale: "bool",
  bucket_reso_steps: "int",
  enable_bucket: "bool",
  max_bucket_reso: "int",
  min_bucket_reso: "int",
  validation_seed: "int",
  validation_split: "float",
  resolution: "int_or_pair",
  network_multiplier: "float",
};

/** Keys kohya accepts but lorakit cannot honour, with the reason given in the error. */
export const UNSUPPORTED_KEYS: Record<string, string> = {
  conditioning_data_dir:
    "ControlNet-style conditioning subsets (used by --masked_loss) are not supported by lorakit",
};

/** The keys of [general]. */
export const GENERAL_KEYS: Record<string, KeyType> = {
  ...DATASET_ASCENDABLE,
  ...SUBSET_ASCENDABLE,
  ...DREAMBOOTH_ASCENDABLE,
  ...DROPOUT_ASCENDABLE,
};

/** The keys of a [[datasets]] table whose subsets are DreamBooth subsets. */
export const DREAMBOOTH_DATASET_KEYS: Record<string, KeyType> = {
  ...DATASET_ASCENDABLE,
  ...SUBSET_ASCENDABLE,
  ...DREAMBOOTH_ASCENDABLE,
  ...DROPOUT_ASCENDABLE,
};

/** The keys of a [[datasets]] table whose subsets are fine-tuning subsets. */
export const FINETUNING_DATASET_KEYS: Record<string, KeyType> = {
  ...DATASET_ASCENDABLE,
  ...SUBSET_ASCENDABLE,
  ...DROPOUT_ASCENDABLE,
};

/** The keys of a DreamBooth [[datasets.subsets]] table. */
export const DREAMBOOTH_SUBSET_KEYS: Record<string, KeyType> = {
  ...SUBSET_ASCENDABLE,
  ...DREAMBOOTH_SUBSET_ONLY,
  ...DREAMBOOTH_ASCENDABLE,
  ...DROPOUT_ASCENDABLE,
};

/** The keys of a fine-tuning [[datasets.subsets]] table. */
export const FINETUNING_SUBSET_KEYS: Record<string, KeyType> = {
  ...SUBSET_ASCENDABLE,
  ...FINETUNING_SUBSET_ONLY,
  ...DROPOUT_ASCENDABLE,
};

/** What a value of each type looks like, for error messages. */
export const TYPE_WORDS: Record<KeyType, string> = {
  bool: "true or false",
  int: "an integer",
  float: "a number",
  str: "a string",
  dict: "a table",
  float_pair: "an array of two numbers",
  int_or_pair: "an integer or an array of two integers [width, height]",
};

/** How a found value is described in an error. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "nothing";
  if (Array.isArray(value)) return `an array of ${value.length} (${JSON.stringify(value)})`;
  if (value instanceof Date) return `a date (${value.toISOString()})`;
  if (typeof value === "object") return "a table";
  if (typeof value === "string") return `the string ${JSON.stringify(value)}`;
  if (typeof value === "bigint") return `the integer ${value}`;
  return `${typeof value === "boolean" ? "the boolean" : "the number"} ${String(value)}`;
}

/**
 * Check one value against its type; returns the normalized value (pairs as `[a, b]`, an integer
 * resolution as `[r, r]`) or `undefined` when it does not fit.
 */
export function checkValue(type: KeyType, value: unknown): unknown {
  const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
  const isInt = (v: unknown): v is number => isNum(v) && Number.isInteger(v);
  switch (type) {
    case "bool":
      return typeof value === "boolean" ? value : undefined;
    case "int":
      return isInt(value) ? value : undefined;
    case "float":
      return isNum(value) ? value : undefined;
    case "str":
      return typeof value === "string" ? value : undefined;
    case "dict":
      return value !== null && typeof value === "object" && !Array.isArray(value) &&
          !(value instanceof Date)
        ? value
        : undefined;
    case "float_pair":
      return Array.isArray(value) && value.length === 2 && value.every(isNum)
        ? [value[0], value[1]]
        : undefined;
    case "int_or_pair":
      if (isInt(value)) return [value, value];
      return Array.isArray(value) && value.length === 2 && value.every(isInt)
        ? [value[0], value[1]]
        : undefined;
  }
}

/** The nearest of `candidates` to `name` by edit distance, if it is plausibly a typo. */
export function nearestName(name: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.max(2, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    // The distance is at least the difference in length: a candidate too far by length alone is
    // skipped, so a 100 KB key costs nothing instead of length x candidates steps each.
    if (Math.abs(name.length - c.length) > limit) continue;
    const d = editDistance(name, c);
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= limit ? best : undefined;
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
