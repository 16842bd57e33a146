/**
 * The architecture of an SD 1.x/2.x checkpoint, inferred from tensor names and shapes in the
 * internal naming (no tensor data is read). Widths, depths and layer counts come from the
 * weights; what weights cannot tell (attention heads, v-prediction) comes from an explicit
 * option, else an A1111-style yaml or the diffusers `config.json` files, else the SD defaults
 * (SD1: 8 heads; SD2: head width 64; text encoder: width / 64). A yaml or `config.json` that
 * contradicts the weights is an error naming both.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { SDConfig, TextEncoderConfig, UNetConfig, VAEConfig } from "./config.ts";
import type { DiffusersHints, LdmYamlHints } from "./hints.ts";
import { jsonField, jsonPerLevel } from "./hints.ts";
import { crossCheckDiffusers, crossCheckYaml } from "./check.ts";

/** A tensor's internal name and shape (`core/io`'s `TensorInfo` is one). */
export interface NamedShape {
  name: string;
  shape: number[];
}

/** Inputs beside the weights, strongest first: options, then yaml, then diffusers configs. */
export interface ConfigHints {
  /** Explicit `--v2`; must agree with the text encoder's layout when that layout is known. */
  v2?: boolean;
  /** Explicit `--v_parameterization`. */
  vPrediction?: boolean;
  /** SD version the stored layout shows (OpenCLIP keys => true); undefined when it cannot. */
  layoutV2?: boolean;
  yaml?: LdmYamlHints;
  diffusers?: DiffusersHints;
  /**
   * For tools that only read weights by name (extraction, merging): a head count no source can
   * give (a width no default head width divides) becomes one head instead of an error.
   */
  headsOptional?: boolean;
}

const SD_DEFAULT_HEADS = 8;
const SD2_DEFAULT_HEAD_DIM = 64;
const TEXT_DEFAULT_HEAD_DIM = 64;

/** Shape lookup over internal names that turns a missing tensor into a clear error. */
export class Shapes {
  readonly map = new Map<string, number[]>();
  constructor(infos: readonly NamedShape[], readonly where: string) {
    for (const t of infos) this.map.set(t.name, t.shape);
  }
  has(name: string): boolean {
    return this.map.has(name);
  }
  get(name: string, rank?: number): number[] {
    const s = this.map.get(name);
    if (s === undefined) {
      throw new LorakitError(`${this.where}: expected tensor '${name}' (internal name), missing`);
    }
    if (rank !== undefined && s.length !== rank) {
      throw new LorakitError(
        `${this.where}: '${name}': expected ${rank} dimensions, found [${s.join(",")}]`,
      );
    }
    return s;
  }
  /** How many consecutive indices `i` from 0 have `make(i)` present. */
  count(make: (i: number) => string): number {
    let i = 0;
    while (this.map.has(make(i))) i++;
    return i;
  }
}

export function exactDiv(
  a: number,
  b: number,
  what: string,
  where: string,
  lenient = false,
): number {
  if (!(b > 0) || a % b !== 0) {
    if (lenient) return 1;
    throw new LorakitError(`${where}: ${what}: ${a} channels do not split into heads of ${b}`);
  }
  return a / b;
}

/** Heads per level from the strongest source that says (see module doc). */
function unetHeads(channels: number[], v2: boolean, hints: ConfigHints, where: string): number[] {
  const y = hints.yaml;
  if (y?.numHeadChannels !== undefined && y.numHeadChannels > 0) {
    const nhc = y.numHeadChannels;
    return channels.map((c) =>
      exactDiv(c, nhc, `${y.path} num_head_channels`, where, hints.headsOptional)
    );
  }
  if (y?.numHeads !== undefined && y.numHeads > 0) return channels.map(() => y.numHeads!);
  const cfg = hints.diffusers?.unet;
  // diffusers' `attention_head_dim` is really the head count for SD (a known misnomer).
  const given = jsonPerLevel(cfg, "num_attention_heads") ?? jsonPerLevel(cfg, "attention_head_dim");
  if (given !== undefined) {
    if (Array.isArray(given) && given.length !== channels.length) {
      throw new LorakitError(
        `${cfg!.path}: attention heads: expected ${channels.length} per-level values, found ${
          JSON.stringify(given)
        }`,
      );
    }
    return channels.map((_, i) => (Array.isArray(given) ? given[i] : given));
  }
  if (v2) {
    return channels.map((c) =>
      exactDiv(c, SD2_DEFAULT_HEAD_DIM, "SD2 head width 64", where, hints.headsOptional)
    );
  }
  return channels.map(() => SD_DEFAULT_HEADS);
}

/**
 * The U-Net's architecture from `unet.*` shapes. `v2`: without a head count or width in the
 * hints, heads are 64 channels wide (SD 2.x and SDXL) rather than 8 per level (SD 1.x).
 */
export function inferUnet(s: Shapes, v2: boolean, hints: ConfigHints): UNetConfig {
  const where = s.where;
  const levels = s.count((i) => `unet.down_blocks.${i}.resnets.0.conv1.weight`);
  if (levels === 0) s.get("unet.down_blocks.0.resnets.0.conv1.weight");
  const blockOutChannels = Array.from(
    { length: levels },
    (_, i) => s.get(`unet.down_blocks.${i}.resnets.0.conv1.weight`, 4)[0],
  );
  const layersPerBlock = s.count((j) => `unet.down_blocks.0.resnets.${j}.conv1.weight`);
  const hasAttn = (p: string) => s.has(`${p}.attentions.0.proj_in.weight`);
  const depth = (p: string) => s.count((d) => `${p}.transformer_blocks.${d}.norm1.weight`);
  const downAttn = blockOutChannels.map((_, i) => hasAttn(`unet.down_blocks.${i}`));
  const upAttn = blockOutChannels.map((_, i) => hasAttn(`unet.up_blocks.${i}`));
  const transformerDepth = downAttn.map((a, i) =>
    a ? depth(`unet.down_blocks.${i}.attentions.0`) : 0
  );
  const projIns = [...s.map.entries()].filter(([n]) => n.endsWith(".proj_in.weight"));
  if (projIns.length === 0) s.get("unet.mid_block.attentions.0.proj_in.weight");
  const linear = projIns[0][1].length === 2;
  const odd = projIns.find(([, shape]) => (shape.length === 2) !== linear);
  if (odd !== undefined) {
    throw new LorakitError(
      `${where}: '${odd[0]}': expected ${linear ? "a linear [C,C]" : "a 1x1 conv [C,C,1,1]"} ` +
        `weight like '${projIns[0][0]}', found [${odd[1].join(",")}]`,
    );
  }
  const ctx = s.get("unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight", 2)[1];
  const numHeads = unetHeads(blockOutChannels, v2, hints, where);
  const cfg = hints.diffusers?.unet;
  return {
    inChannels: s.get("unet.conv_in.weight", 4)[1],
    outChannels: s.get("unet.conv_out.weight", 4)[0],
    blockOutChannels,
    layersPerBlock,
    downBlockTypes: downAttn.map((a) => (a ? "CrossAttnDownBlock2D" : "DownBlock2D")),
    upBlockTypes: upAttn.map((a) => (a ? "CrossAttnUpBlock2D" : "UpBlock2D")),
    numHeads,
    headDim: blockOutChannels.map((c, i) => exactDiv(c, numHeads[i], `level ${i} heads`, where)),
    transformerDepth,
    midTransformerDepth: depth("unet.mid_block.attentions.0"),
    crossAttentionDim: ctx,
    useLinearProjection: linear,
    timeEmbedDim: s.get("unet.time_embedding.linear_1.weight", 2)[0],
    normGroups: jsonField<number>(cfg, "norm_num_groups", "number") ?? 32,
    normEps: jsonField<number>(cfg, "norm_eps", "number") ?? 1e-5,
    transformerNormEps: 1e-6,
    layerNormEps: 1e-5,
  };
}

/** The VAE's architecture from `vae.*` shapes. */
export function inferVae(s: Shapes, hints: ConfigHints): VAEConfig {
  const levels = s.count((i) => `vae.encoder.down_blocks.${i}.resnets.0.conv1.weight`);
  if (levels === 0) s.get("vae.encoder.down_blocks.0.resnets.0.conv1.weight");
  const cfg = hints.diffusers?.vae;
  return {
    inChannels: s.get("vae.encoder.conv_in.weight", 4)[1],
    outChannels: s.get("vae.decoder.conv_out.weight", 4)[0],
    latentChannels: s.get("vae.decoder.conv_in.weight", 4)[1],
    blockOutChannels: Array.from(
      { length: levels },
      (_, i) => s.get(`vae.encoder.down_blocks.${i}.resnets.0.conv1.weight`, 4)[0],
    ),
    layersPerBlock: s.count((j) => `vae.encoder.down_blocks.0.resnets.${j}.conv1.weight`),
    normGroups: jsonField<number>(cfg, "norm_num_groups", "number") ?? 32,
    normEps: 1e-6,
    scalingFactor: hints.yaml?.scaleFactor ?? jsonField<number>(cfg, "scaling_factor", "number") ??
      0.18215,
  };
}

function inferText(s: Shapes, v2: boolean, hints: ConfigHints): TextEncoderConfig {
  const [vocabSize, hiddenSize] = s.get(
    "text_encoder.text_model.embeddings.token_embedding.weight",
    2,
  );
  const cfg = hints.diffusers?.textEncoder;
  const heads = hints.yaml?.textEncoderHeads ??
    jsonField<number>(cfg, "num_attention_heads", "number") ??
    exactDiv(
      hiddenSize,
      TEXT_DEFAULT_HEAD_DIM,
      "text encoder default head width 64",
      s.where,
      hints.headsOptional,
    );
  exactDiv(hiddenSize, heads, "text encoder heads", s.where);
  const act = jsonField<string>(cfg, "hidden_act", "string") ?? (v2 ? "gelu" : "quick_gelu");
  if (act !== "gelu" && act !== "quick_gelu") {
    throw new LorakitError(
      `${cfg!.path}: 'hidden_act': expected "quick_gelu" (SD1) or "gelu" (SD2), found "${act}"`,
    );
  }
  return {
    vocabSize,
    hiddenSize,
    numLayers: s.count((l) => `text_encoder.text_model.encoder.layers.${l}.layer_norm1.weight`),
    numHeads: heads,
    intermediateSize: s.get("text_encoder.text_model.encoder.layers.0.mlp.fc1.weight", 2)[0],
    maxPositions: s.get("text_encoder.text_model.embeddings.position_embedding.weight", 2)[0],
    hiddenAct: act,
    layerNormEps: jsonField<number>(cfg, "layer_norm_eps", "number") ?? 1e-5,
  };
}

/** SD version: explicit option, else what the stored layout or configs show. */
function decideV2(hints: ConfigHints, where: string): boolean {
  const fromLayout = hints.layoutV2 ??
    (hints.diffusers?.textEncoder !== undefined
      ? jsonField<string>(hints.diffusers.textEncoder, "hidden_act", "string") === "gelu"
      : undefined);
  if (hints.v2 !== undefined && fromLayout !== undefined && hints.v2 !== fromLayout) {
    throw new LorakitError(
      `${where}: v2 was set to ${hints.v2}, but the text encoder is ${
        fromLayout ? "SD 2.x's OpenCLIP" : "SD 1.x's CLIP"
      } (expected ${fromLayout}); drop the flag or use a matching checkpoint`,
    );
  }
  return hints.v2 ?? fromLayout ?? false;
}

/**
 * Infers the architecture from tensor infos in the internal naming (`unet.*`, `vae.*`,
 * `text_encoder.*`) plus hints. `where` names the checkpoint in errors.
 */
export function inferConfig(
  infos: readonly NamedShape[],
  hints: ConfigHints,
  where: string,
): SDConfig {
  const s = new Shapes(infos, where);
  const v2 = decideV2(hints, where);
  const unet = inferUnet(s, v2, hints);
  const vae = inferVae(s, hints);
  const textEncoder = inferText(s, v2, hints);
  const pred = jsonField<string>(hints.diffusers?.scheduler, "prediction_type", "string");
  const vPrediction = hints.vPrediction ??
    (hints.yaml?.parameterization !== undefined
      ? hints.yaml.parameterization === "v"
      : pred === "v_prediction");
  const config: SDConfig = { v2, vPrediction, unet, vae, textEncoder };
  if (hints.yaml !== undefined) crossCheckYaml(config, hints.yaml);
  if (hints.diffusers !== undefined) crossCheckDiffusers(config, hints.diffusers);
  return config;
}
