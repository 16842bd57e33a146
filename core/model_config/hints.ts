/**
 * What the weights cannot say, read from the files that travel with a checkpoint: an A1111-style
 * CompVis inference yaml (`<checkpoint stem>.yaml`) or a diffusers folder's `config.json` files.
 * Parsing only: the values are checked against the weights in `infer.ts` and `check.ts`.
 *
 * @module
 */
import { parse as parseYaml } from "../deps/yaml.ts";
import { LorakitError } from "../errors.ts";

/** The fields of a CompVis `LatentDiffusion` yaml that lorakit uses. */
export interface LdmYamlHints {
  path: string;
  /** `unet_config.params.num_heads` (SD1: a fixed head count). */
  numHeads?: number;
  /** `unet_config.params.num_head_channels` (SD2: a fixed head width); -1 means unset. */
  numHeadChannels?: number;
  useLinearInTransformer?: boolean;
  /** `parameterization`: "eps" (default) or "v". */
  parameterization?: string;
  contextDim?: number;
  modelChannels?: number;
  channelMult?: number[];
  numResBlocks?: number;
  transformerDepth?: number;
  /** `first_stage_config.params.ddconfig`: `ch * ch_mult`, `num_res_blocks`, `z_channels`. */
  vaeChannels?: number;
  vaeChannelMult?: number[];
  vaeNumResBlocks?: number;
  zChannels?: number;
  scaleFactor?: number;
  /** `cond_stage_config.params.num_attention_heads` (the tiny fixtures' text encoder only). */
  textEncoderHeads?: number;
  /** `cond_stage_config.target`, e.g. `...FrozenOpenCLIPEmbedder` for SD2. */
  textEncoderTarget?: string;
}

/** One parsed `config.json` with its path (for messages). */
export interface JsonConfig {
  path: string;
  json: Record<string, unknown>;
}

/** The `config.json` files of a diffusers folder that were present. */
export interface DiffusersHints {
  unet?: JsonConfig;
  vae?: JsonConfig;
  textEncoder?: JsonConfig;
  /** SDXL's `text_encoder_2/config.json`. */
  textEncoder2?: JsonConfig;
  scheduler?: JsonConfig;
}

export function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Follows `a.b.c` through nested objects; undefined when any step is missing. */
export function dig(obj: unknown, path: string): unknown {
  let cur = obj;
  for (const p of path.split(".")) {
    if (!isObject(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

/** Reads an optional typed field, or throws naming the file, the field, expected and found. */
export function field<T>(
  obj: unknown,
  path: string,
  file: string,
  kind: "number" | "boolean" | "string" | "number[]",
): T | undefined {
  const v = dig(obj, path);
  if (v === undefined || v === null) return undefined;
  const ok = kind === "number[]"
    ? Array.isArray(v) && v.every((x) => typeof x === "number")
    : kind === "number"
    ? typeof v === "number"
    : kind === "boolean"
    ? typeof v === "boolean"
    : typeof v === "string";
  if (!ok) {
    throw new LorakitError(
      `${file}: '${path}': expected a ${kind}, found ${JSON.stringify(v)}`,
    );
  }
  return v as T;
}

/** Parses an A1111-style CompVis yaml. Malformed YAML is an error naming the file. */
export function parseLdmYaml(text: string, path: string): LdmYamlHints {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new LorakitError(`${path}: not valid YAML (${(e as Error).message})`);
  }
  const root = dig(doc, "model.params");
  if (!isObject(root)) {
    throw new LorakitError(
      `${path}: expected a CompVis inference config with 'model.params', found ${
        isObject(doc) ? `keys ${Object.keys(doc).join(", ")}` : "no mapping"
      }`,
    );
  }
  const u = "unet_config.params";
  const vae = "first_stage_config.params.ddconfig";
  return {
    path,
    numHeads: field(root, `${u}.num_heads`, path, "number"),
    numHeadChannels: field(root, `${u}.num_head_channels`, path, "number"),
    useLinearInTransformer: field(root, `${u}.use_linear_in_transformer`, path, "boolean"),
    parameterization: field(root, "parameterization", path, "string"),
    contextDim: field(root, `${u}.context_dim`, path, "number"),
    modelChannels: field(root, `${u}.model_channels`, path, "number"),
    channelMult: field(root, `${u}.channel_mult`, path, "number[]"),
    numResBlocks: field(root, `${u}.num_res_blocks`, path, "number"),
    transformerDepth: field(root, `${u}.transformer_depth`, path, "number"),
    vaeChannels: field(root, `${vae}.ch`, path, "number"),
    vaeChannelMult: field(root, `${vae}.ch_mult`, path, "number[]"),
    vaeNumResBlocks: field(root, `${vae}.num_res_blocks`, path, "number"),
    zChannels: field(root, `${vae}.z_channels`, path, "number"),
    scaleFactor: field(root, "scale_factor", path, "number"),
    textEncoderHeads: field(root, "cond_stage_config.params.num_attention_heads", path, "number"),
    textEncoderTarget: field(root, "cond_stage_config.target", path, "string"),
  };
}

/** Parses a `config.json`; anything but a JSON object is an error naming the file. */
export function parseJsonConfig(text: string, path: string): JsonConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LorakitError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(json)) throw new LorakitError(`${path}: expected a JSON object`);
  return { path, json };
}

/** Optional typed field of a parsed `config.json` (see `field`). */
export function jsonField<T>(
  cfg: JsonConfig | undefined,
  name: string,
  kind: "number" | "boolean" | "string" | "number[]",
): T | undefined {
  return cfg === undefined ? undefined : field<T>(cfg.json, name, cfg.path, kind);
}

/** A diffusers field that may be a number or a per-level list (e.g. `attention_head_dim`). */
export function jsonPerLevel(
  cfg: JsonConfig | undefined,
  name: string,
): number | number[] | undefined {
  if (cfg === undefined) return undefined;
  const v = cfg.json[name];
  if (v === undefined || v === null) return undefined;
  if (typeof v === "number") return v;
  if (Array.isArray(v) && v.every((x) => typeof x === "number")) return v as number[];
  throw new LorakitError(
    `${cfg.path}: '${name}': expected a number or a list of numbers, found ${JSON.stringify(v)}`,
  );
}
