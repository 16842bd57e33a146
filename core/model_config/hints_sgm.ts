/**
 * The SDXL inference yaml (Stability's generative-models `sd_xl_base.yaml`, "SGM" style) read as
 * hints: `model.params.network_config.params` for the U-Net, `conditioner_config.params.emb_models`
 * for the two text embedders and the size embedders, `first_stage_config.params.ddconfig` for the
 * VAE, `scale_factor`. Parsing only: `infer_sdxl.ts` checks the values against the weights.
 *
 * Real SGM text embedders take their widths from the architecture name (`ViT-bigG-14`); the
 * tiny test models add `width`/`layers`/`heads`/`mlp_width`/`embed_dim` under an embedder's
 * params, which are read when present.
 *
 * @module
 */
import { parse as parseYaml } from "../deps/yaml.ts";
import { LorakitError } from "../errors.ts";
import { dig, field, isObject } from "./hints.ts";

/** What one SGM text embedder's params say (all optional). */
export interface SgmTextEmbedderHints {
  target: string;
  /** `layer`: "hidden", "penultimate", "last", ... */
  layer?: string;
  layerIdx?: number;
  width?: number;
  layers?: number;
  heads?: number;
  mlpWidth?: number;
  embedDim?: number;
}

/** The fields of an SGM (SDXL) yaml that lorakit uses. */
export interface SgmYamlHints {
  path: string;
  numHeads?: number;
  /** Head width (64 in SDXL); -1 means unset. */
  numHeadChannels?: number;
  useLinearInTransformer?: boolean;
  contextDim?: number;
  modelChannels?: number;
  channelMult?: number[];
  numResBlocks?: number;
  /** Per level, or one value for all. */
  transformerDepth?: number | number[];
  admInChannels?: number;
  /** `DiscreteDenoiser` scaling: "v" for `VScaling`, "eps" for `EpsScaling`. */
  parameterization?: string;
  vaeChannels?: number;
  vaeChannelMult?: number[];
  vaeNumResBlocks?: number;
  zChannels?: number;
  scaleFactor?: number;
  /** CLIP-L (`FrozenCLIPEmbedder`) then OpenCLIP bigG (`FrozenOpenCLIPEmbedder2`), as present. */
  textEmbedders: SgmTextEmbedderHints[];
  /** `ConcatTimestepEmbedderND` `outdim` of each size embedder. */
  timeIdOutDims: number[];
}

/** True when a parsed yaml document is an SGM `DiffusionEngine` config (vs CompVis LDM). */
export function isSgmYamlDoc(doc: unknown): boolean {
  return isObject(dig(doc, "model.params.network_config"));
}

/** Parses an SGM (SDXL) yaml. Malformed YAML or another layout is an error naming the file. */
export function parseSgmYaml(text: string, path: string): SgmYamlHints {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new LorakitError(`${path}: not valid YAML (${(e as Error).message})`);
  }
  const root = dig(doc, "model.params");
  if (!isObject(root) || !isObject(root["network_config"])) {
    throw new LorakitError(
      `${path}: expected an SGM (SDXL) inference config with 'model.params.network_config', ` +
        `found ${isObject(root) ? `keys ${Object.keys(root).join(", ")}` : "no 'model.params'"}`,
    );
  }
  const u = "network_config.params";
  const vae = "first_stage_config.params.ddconfig";
  const depth = dig(root, `${u}.transformer_depth`);
  const models = dig(root, "conditioner_config.params.emb_models") ?? [];
  if (!Array.isArray(models)) {
    throw new LorakitError(
      `${path}: 'model.params.conditioner_config.params.emb_models': expected a list, found ` +
        JSON.stringify(models),
    );
  }
  const textEmbedders: SgmTextEmbedderHints[] = [];
  const timeIdOutDims: number[] = [];
  models.forEach((m, i) => {
    const where = `conditioner_config.params.emb_models[${i}]`;
    const target = field<string>(m, "target", path, "string") ?? "";
    const p = (name: string, kind: "number" | "string") =>
      field<never>(m, `params.${name}`, `${path} (${where})`, kind);
    if (/ConcatTimestepEmbedderND$/.test(target)) {
      const d = p("outdim", "number");
      if (d !== undefined) timeIdOutDims.push(d);
    } else if (/CLIP/i.test(target)) {
      textEmbedders.push({
        target,
        layer: p("layer", "string"),
        layerIdx: p("layer_idx", "number"),
        width: p("width", "number"),
        layers: p("layers", "number"),
        heads: p("heads", "number"),
        mlpWidth: p("mlp_width", "number"),
        embedDim: p("embed_dim", "number"),
      });
    }
  });
  const scaling = field<string>(
    root,
    "denoiser_config.params.scaling_config.target",
    path,
    "string",
  );
  return {
    path,
    numHeads: field(root, `${u}.num_heads`, path, "number"),
    numHeadChannels: field(root, `${u}.num_head_channels`, path, "number"),
    useLinearInTransformer: field(root, `${u}.use_linear_in_transformer`, path, "boolean"),
    contextDim: field(root, `${u}.context_dim`, path, "number"),
    modelChannels: field(root, `${u}.model_channels`, path, "number"),
    channelMult: field(root, `${u}.channel_mult`, path, "number[]"),
    numResBlocks: field(root, `${u}.num_res_blocks`, path, "number"),
    transformerDepth: typeof depth === "number"
      ? depth
      : field(root, `${u}.transformer_depth`, path, "number[]"),
    admInChannels: field(root, `${u}.adm_in_channels`, path, "number"),
    parameterization: scaling === undefined ? undefined : /VScaling/.test(scaling) ? "v" : "eps",
    vaeChannels: field(root, `${vae}.ch`, path, "number"),
    vaeChannelMult: field(root, `${vae}.ch_mult`, path, "number[]"),
    vaeNumResBlocks: field(root, `${vae}.num_res_blocks`, path, "number"),
    zChannels: field(root, `${vae}.z_channels`, path, "number"),
    scaleFactor: field(root, "scale_factor", path, "number"),
    textEmbedders,
    timeIdOutDims,
  };
}
