/**
 * The architecture of an SDXL checkpoint, inferred from tensor names and shapes in the internal
 * naming (`unet.*`, `vae.*`, `text_encoder.*`, `text_encoder_2.*`), as `infer.ts` does for
 * SD 1.x/2.x. Widths, depths (per level: SDXL's 0, 2, 10), layer counts, the `label_emb` width
 * and the pooled projection come from the weights; head counts from the SGM yaml's
 * `num_head_channels` (SDXL: 64) or `num_heads`, else the diffusers `config.json`, else the
 * SDXL rule (heads 64 wide, for the U-Net and both text encoders). A yaml or `config.json` that
 * contradicts the weights is an error naming both.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { AddEmbeddingConfig, SDXLConfig, TextEncoderConfig } from "./config.ts";
import type { DiffusersHints, JsonConfig } from "./hints.ts";
import { jsonField } from "./hints.ts";
import type { SgmTextEmbedderHints, SgmYamlHints } from "./hints_sgm.ts";
import { check, crossCheckDiffusers } from "./check.ts";
import { exactDiv, inferUnet, inferVae, type NamedShape, Shapes } from "./infer.ts";

/** Inputs beside the weights, strongest first: options, then the yaml, then diffusers configs. */
export interface SdxlConfigHints {
  vPrediction?: boolean;
  yaml?: SgmYamlHints;
  diffusers?: DiffusersHints;
  /** See `ConfigHints.headsOptional`. */
  headsOptional?: boolean;
}

/** SDXL's size conditioning: original (h, w), crop (top, left), target (h, w). */
export const SDXL_TIME_IDS = 6;
/** SDXL's latent scale (sd_xl_base.yaml `scale_factor`, diffusers `scaling_factor`). */
export const SDXL_SCALE_FACTOR = 0.13025;
const HEAD_DIM = 64;

function inferText(
  s: Shapes,
  part: "text_encoder" | "text_encoder_2",
  yaml: SgmTextEmbedderHints | undefined,
  cfg: JsonConfig | undefined,
  defaultAct: "gelu" | "quick_gelu",
  headsOptional: boolean,
): TextEncoderConfig {
  const p = `${part}.text_model`;
  const [vocabSize, hiddenSize] = s.get(`${p}.embeddings.token_embedding.weight`, 2);
  const heads = yaml?.heads ?? jsonField<number>(cfg, "num_attention_heads", "number") ??
    exactDiv(hiddenSize, HEAD_DIM, `${part} default head width 64`, s.where, headsOptional);
  exactDiv(hiddenSize, heads, `${part} heads`, s.where);
  const act = jsonField<string>(cfg, "hidden_act", "string") ?? defaultAct;
  if (act !== "gelu" && act !== "quick_gelu") {
    throw new LorakitError(
      `${cfg!.path}: 'hidden_act': expected "quick_gelu" or "gelu", found "${act}"`,
    );
  }
  const projection = `${part}.text_projection.weight`;
  return {
    vocabSize,
    hiddenSize,
    numLayers: s.count((l) => `${p}.encoder.layers.${l}.layer_norm1.weight`),
    numHeads: heads,
    intermediateSize: s.get(`${p}.encoder.layers.0.mlp.fc1.weight`, 2)[0],
    maxPositions: s.get(`${p}.embeddings.position_embedding.weight`, 2)[0],
    hiddenAct: act,
    layerNormEps: jsonField<number>(cfg, "layer_norm_eps", "number") ?? 1e-5,
    ...(s.has(projection) ? { projectionDim: s.get(projection, 2)[0] } : {}),
  };
}

function inferAddEmbedding(s: Shapes, pooled: number): AddEmbeddingConfig {
  const name = "unet.add_embedding.linear_1.weight";
  if (!s.has(name)) {
    throw new LorakitError(
      `${s.where}: expected SDXL's added conditioning '${name}' (LDM 'label_emb.0.0.weight'), ` +
        `missing`,
    );
  }
  const inChannels = s.get(name, 2)[1];
  const rest = inChannels - pooled;
  if (rest <= 0 || rest % SDXL_TIME_IDS !== 0) {
    throw new LorakitError(
      `${s.where}: '${name}': expected ${pooled} pooled text features plus ${SDXL_TIME_IDS} equal ` +
        `time-id embeddings, found an input width of ${inChannels}`,
    );
  }
  return { inChannels, timeIdEmbedDim: rest / SDXL_TIME_IDS, numTimeIds: SDXL_TIME_IDS };
}

function crossCheckSgmYaml(c: SDXLConfig, y: SgmYamlHints): void {
  const p = y.path;
  const u = c.unet;
  if (y.modelChannels !== undefined && y.channelMult !== undefined) {
    check(
      p,
      "network_config model_channels x channel_mult",
      y.channelMult.map((m) => m * y.modelChannels!),
      u.blockOutChannels,
    );
  }
  check(p, "network_config num_res_blocks", y.numResBlocks, u.layersPerBlock);
  check(p, "network_config context_dim", y.contextDim, u.crossAttentionDim);
  check(
    p,
    "network_config use_linear_in_transformer",
    y.useLinearInTransformer,
    u.useLinearProjection,
  );
  check(p, "network_config adm_in_channels", y.admInChannels, u.addEmbedding!.inChannels);
  if (y.transformerDepth !== undefined) {
    const said = u.transformerDepth.map((_, i) =>
      Array.isArray(y.transformerDepth) ? y.transformerDepth[i] : y.transformerDepth
    );
    // A level without attention ignores its entry (sd_xl_base.yaml's level 0).
    const used = said.map((d, i) => (u.transformerDepth[i] > 0 ? d : 0));
    check(p, "network_config transformer_depth (levels with attention)", used, u.transformerDepth);
  }
  for (const d of y.timeIdOutDims) {
    check(p, "ConcatTimestepEmbedderND outdim", d, u.addEmbedding!.timeIdEmbedDim);
  }
  if (y.vaeChannels !== undefined && y.vaeChannelMult !== undefined) {
    check(
      p,
      "ddconfig ch x ch_mult",
      y.vaeChannelMult.map((m) => m * y.vaeChannels!),
      c.vae.blockOutChannels,
    );
  }
  check(p, "ddconfig num_res_blocks", y.vaeNumResBlocks, c.vae.layersPerBlock);
  check(p, "ddconfig z_channels", y.zChannels, c.vae.latentChannels);
  [c.textEncoder, c.textEncoder2].forEach((t, i) => {
    const e = y.textEmbedders[i];
    if (e === undefined) return;
    const what = `emb_models text embedder ${i + 1}`;
    check(p, `${what} width`, e.width, t.hiddenSize);
    check(p, `${what} layers`, e.layers, t.numLayers);
    check(p, `${what} mlp_width`, e.mlpWidth, t.intermediateSize);
    check(p, `${what} embed_dim`, e.embedDim, t.projectionDim);
  });
}

/**
 * Infers the SDXL architecture from tensor infos in the internal naming plus hints. `where`
 * names the checkpoint in errors.
 */
export function inferSdxlConfig(
  infos: readonly NamedShape[],
  hints: SdxlConfigHints,
  where: string,
): SDXLConfig {
  const s = new Shapes(infos, where);
  const y = hints.yaml;
  const d = hints.diffusers;
  const lenient = hints.headsOptional ?? false;
  const textEncoder = inferText(
    s,
    "text_encoder",
    y?.textEmbedders[0],
    d?.textEncoder,
    "quick_gelu",
    lenient,
  );
  const textEncoder2 = inferText(
    s,
    "text_encoder_2",
    y?.textEmbedders[1],
    d?.textEncoder2,
    "gelu",
    lenient,
  );
  if (textEncoder2.projectionDim === undefined) {
    s.get("text_encoder_2.text_projection.weight");
  }
  const unetHints = {
    yaml: y === undefined
      ? undefined
      : { path: y.path, numHeadChannels: y.numHeadChannels, numHeads: y.numHeads },
    diffusers: d,
    headsOptional: lenient,
  };
  // `true`: without a head count or width in the hints, heads are 64 wide (SDXL's rule).
  const unet = {
    ...inferUnet(s, true, unetHints),
    addEmbedding: inferAddEmbedding(s, textEncoder2.projectionDim!),
  };
  const context = textEncoder.hiddenSize + textEncoder2.hiddenSize;
  if (unet.crossAttentionDim !== context) {
    throw new LorakitError(
      `${where}: the U-Net's cross-attention width is ${unet.crossAttentionDim}, but the two ` +
        `text encoders give ${textEncoder.hiddenSize} + ${textEncoder2.hiddenSize} = ${context}`,
    );
  }
  const vae = inferVae(s, { diffusers: d });
  vae.scalingFactor = y?.scaleFactor ??
    jsonField<number>(d?.vae, "scaling_factor", "number") ?? SDXL_SCALE_FACTOR;
  vae.forceUpcast = jsonField<boolean>(d?.vae, "force_upcast", "boolean") ?? true;
  const pred = jsonField<string>(d?.scheduler, "prediction_type", "string");
  const vPrediction = hints.vPrediction ??
    (y?.parameterization !== undefined ? y.parameterization === "v" : pred === "v_prediction");
  const config: SDXLConfig = { vPrediction, unet, vae, textEncoder, textEncoder2 };
  if (y !== undefined) crossCheckSgmYaml(config, y);
  if (d !== undefined) {
    const sd = { v2: false, vPrediction, unet, vae, textEncoder };
    crossCheckDiffusers(sd, { unet: d.unet, vae: d.vae, textEncoder: d.textEncoder });
    crossCheckDiffusers({ ...sd, textEncoder: textEncoder2 }, { textEncoder: d.textEncoder2 });
    const u = d.unet;
    if (u !== undefined) {
      const n = (f: string) => jsonField<number>(u, f, "number");
      const add = unet.addEmbedding;
      check(
        u.path,
        "projection_class_embeddings_input_dim",
        n("projection_class_embeddings_input_dim"),
        add.inChannels,
      );
      check(u.path, "addition_time_embed_dim", n("addition_time_embed_dim"), add.timeIdEmbedDim);
    }
    const t2 = d.textEncoder2;
    if (t2 !== undefined) {
      check(
        t2.path,
        "projection_dim",
        jsonField<number>(t2, "projection_dim", "number"),
        textEncoder2.projectionDim,
      );
    }
  }
  return config;
}
