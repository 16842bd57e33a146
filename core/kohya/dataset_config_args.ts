/**
 * The command-line side of the dataset config: kohya's `prepare_dataset_args` normalization of
 * the argparse values the blueprint falls back to, and the user config train_network builds from
 * `--train_data_dir` / `--reg_data_dir` (DreamBooth folders) or `--in_json` (fine-tuning) when no
 * `--dataset_config` is given.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { isDirectory, joinPath, listDir } from "../io/fs.ts";

/** A checked user config: `general` and `datasets`, values normalized (pairs as arrays). */
export interface UserConfig {
  general: Record<string, unknown>;
  datasets: { table: Record<string, unknown>; subsets: Record<string, unknown>[] }[];
}

/**
 * The command-line values the fallbacks may use, under kohya's argparse names
 * (`train_batch_size`, `dataset_repeats`, `resolution` as "512" or "512,768", ...). Unknown keys
 * are ignored, so a whole parsed-arguments object can be passed.
 */
export type DatasetArgs = Record<string, unknown>;

/**
 * The command-line values as kohya's `prepare_dataset_args` leaves them: `--caption_extention`
 * (kohya's old spelling) overrides `--caption_extension`, `resolution` "512" or "512,768" becomes
 * `[w, h]`, `face_crop_aug_range` "2.0,4.0" becomes a pair; argparse names are mapped to config
 * names (`train_batch_size` -> `batch_size`, `dataset_repeats` -> `num_repeats`).
 */
export function datasetArgsToConfig(args: DatasetArgs): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const rename: Record<string, string> = {
    train_batch_size: "batch_size",
    dataset_repeats: "num_repeats",
  };
  for (const [k, v] of Object.entries(args)) out[rename[k] ?? k] = v;
  if (typeof args.caption_extention === "string") out.caption_extension = args.caption_extention;
  out.resolution = parseResolution(args.resolution);
  const face = args.face_crop_aug_range;
  if (typeof face === "string") {
    const parts = face.split(",").map((p) => Number(p.trim()));
    if (parts.length !== 2 || parts.some((p) => !Number.isFinite(p)) || parts[0] > parts[1]) {
      throw new LorakitError(
        `--face_crop_aug_range: expected "min,max" with min <= max (e.g. 2.0,4.0), found ${
          JSON.stringify(face)
        }`,
      );
    }
    out.face_crop_aug_range = parts;
  }
  return out;
}

/** `--resolution` "512" or "512,768" (also a number or a pair) as `[w, h]`; null when unset. */
export function parseResolution(value: unknown): [number, number] | null {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value) && value.length === 2 && value.every(Number.isInteger)) {
    return [value[0], value[1]];
  }
  if (typeof value === "number" && Number.isInteger(value)) return [value, value];
  if (typeof value === "string") {
    const parts = value.split(",").map((p) => p.trim());
    if (parts.every((p) => /^\d+$/.test(p)) && (parts.length === 1 || parts.length === 2)) {
      const n = parts.map(Number);
      return [n[0], n[n.length - 1]];
    }
  }
  throw new LorakitError(
    `--resolution: expected 'size' or 'width,height' (e.g. 512 or 512,768), found ${
      JSON.stringify(value)
    }`,
  );
}

/**
 * The user config train_network builds without `--dataset_config`: with `--in_json`, one
 * fine-tuning subset; otherwise one DreamBooth subset per `<repeats>_<class tokens>` folder of
 * `--train_data_dir` and (as regularization) `--reg_data_dir`. Folders without a leading integer
 * are skipped with a warning, as kohya does; a missing `--train_data_dir` is an error.
 */
export async function userConfigFromArgs(
  args: DatasetArgs,
): Promise<{ config: UserConfig; warnings: string[] }> {
  const warnings: string[] = [];
  const trainDir = typeof args.train_data_dir === "string" ? args.train_data_dir : null;
  if (typeof args.in_json === "string") {
    const subset: Record<string, unknown> = { metadata_file: args.in_json };
    if (trainDir !== null) subset.image_dir = trainDir;
    return { config: { general: {}, datasets: [{ table: {}, subsets: [subset] }] }, warnings };
  }
  if (trainDir === null) {
    throw new LorakitError(
      "no dataset given: pass --train_data_dir (DreamBooth folders <repeats>_<class tokens>), " +
        "--in_json (fine-tuning metadata) or --dataset_config",
    );
  }
  if (!(await isDirectory(trainDir))) {
    throw new LorakitError(`--train_data_dir ${trainDir}: not a directory`);
  }
  const subsets: Record<string, unknown>[] = [];
  const scan = async (base: string, isReg: boolean) => {
    for (const e of await listDir(base)) {
      if (!e.isDirectory) continue;
      const tokens = e.name.split("_");
      // Python int(): optional sign, digits, surrounding whitespace.
      if (!/^\s*[+-]?\d+\s*$/.test(tokens[0])) {
        warnings.push(`ignore directory without repeats: ${joinPath(base, e.name)}`);
        continue;
      }
      const repeats = parseInt(tokens[0], 10);
      if (repeats < 1) continue;
      subsets.push({
        image_dir: joinPath(base, e.name),
        num_repeats: repeats,
        is_reg: isReg,
        class_tokens: tokens.slice(1).join("_"),
      });
    }
  };
  await scan(trainDir, false);
  const regDir = typeof args.reg_data_dir === "string" ? args.reg_data_dir : null;
  if (regDir !== null) {
    if (!(await isDirectory(regDir))) {
      throw new LorakitError(`--reg_data_dir ${regDir}: not a directory`);
    }
    await scan(regDir, true);
  }
  if (subsets.length === 0) {
    throw new LorakitError(
      `--train_data_dir ${trainDir}: no <repeats>_<class tokens> sub-folders (e.g. 10_sks dog) found`,
    );
  }
  return { config: { general: {}, datasets: [{ table: {}, subsets }] }, warnings };
}
