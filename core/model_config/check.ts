/**
 * Cross-checks of an inferred `SDConfig` against the yaml or diffusers `config.json` files that
 * came with the checkpoint. The weights win; a config file that says otherwise is reported, naming
 * the file, the field, what it says and what the weights show, because a model built from the
 * wrong config fails later in ways that are much harder to trace.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { SDConfig } from "./config.ts";
import type { DiffusersHints, JsonConfig, LdmYamlHints } from "./hints.ts";
import { jsonField, jsonPerLevel } from "./hints.ts";

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Throws when a config file says `says` for `fieldName` and the weights show otherwise. */
export function check(file: string, fieldName: string, says: unknown, weights: unknown): void {
  if (says === undefined || same(says, weights)) return;
  throw new LorakitError(
    `${file}: '${fieldName}' says ${JSON.stringify(says)}, but the weights show ` +
      `${JSON.stringify(weights)}; the config does not belong to this checkpoint`,
  );
}

/** Checks the A1111 yaml's widths and layouts against the weights. */
export function crossCheckYaml(c: SDConfig, y: LdmYamlHints): void {
  const p = y.path;
  if (y.modelChannels !== undefined && y.channelMult !== undefined) {
    check(
      p,
      "unet_config model_channels x channel_mult",
      y.channelMult.map((m) => m * y.modelChannels!),
      c.unet.blockOutChannels,
    );
  }
  check(p, "unet_config num_res_blocks", y.numResBlocks, c.unet.layersPerBlock);
  check(p, "unet_config context_dim", y.contextDim, c.unet.crossAttentionDim);
  check(
    p,
    "unet_config use_linear_in_transformer",
    y.useLinearInTransformer,
    c.unet.useLinearProjection,
  );
  if (y.transformerDepth !== undefined) {
    const depths = c.unet.transformerDepth.filter((d) => d > 0);
    check(p, "unet_config transformer_depth", depths.map(() => y.transformerDepth), depths);
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
  if (y.textEncoderTarget !== undefined) {
    const openClip = /OpenCLIP/i.test(y.textEncoderTarget);
    check(p, "cond_stage_config target is OpenCLIP (SD2)", openClip, c.v2);
  }
}

function perLevel(cfg: JsonConfig | undefined, name: string, levels: number): number[] | undefined {
  const v = jsonPerLevel(cfg, name);
  return v === undefined ? undefined : Array.isArray(v) ? v : Array(levels).fill(v);
}

/** Checks a diffusers folder's `config.json` files against the weights. */
export function crossCheckDiffusers(c: SDConfig, d: DiffusersHints): void {
  const u = d.unet;
  if (u !== undefined) {
    const n = (f: string) => jsonField<number>(u, f, "number");
    check(u.path, "in_channels", n("in_channels"), c.unet.inChannels);
    check(u.path, "out_channels", n("out_channels"), c.unet.outChannels);
    check(
      u.path,
      "block_out_channels",
      jsonField(u, "block_out_channels", "number[]"),
      c.unet.blockOutChannels,
    );
    check(u.path, "layers_per_block", n("layers_per_block"), c.unet.layersPerBlock);
    check(u.path, "cross_attention_dim", n("cross_attention_dim"), c.unet.crossAttentionDim);
    check(
      u.path,
      "use_linear_projection",
      jsonField<boolean>(u, "use_linear_projection", "boolean") ?? false,
      c.unet.useLinearProjection,
    );
    check(u.path, "down_block_types", u.json["down_block_types"], c.unet.downBlockTypes);
    check(u.path, "up_block_types", u.json["up_block_types"], c.unet.upBlockTypes);
    const depth = perLevel(u, "transformer_layers_per_block", c.unet.blockOutChannels.length);
    if (depth !== undefined) {
      const used = c.unet.transformerDepth.map((t, i) => (t > 0 ? depth[i] : 0));
      check(u.path, "transformer_layers_per_block", used, c.unet.transformerDepth);
    }
    check(u.path, "time_embedding_dim", n("time_embedding_dim"), c.unet.timeEmbedDim);
  }
  const v = d.vae;
  if (v !== undefined) {
    const n = (f: string) => jsonField<number>(v, f, "number");
    check(
      v.path,
      "block_out_channels",
      jsonField(v, "block_out_channels", "number[]"),
      c.vae.blockOutChannels,
    );
    check(v.path, "layers_per_block", n("layers_per_block"), c.vae.layersPerBlock);
    check(v.path, "latent_channels", n("latent_channels"), c.vae.latentChannels);
    check(v.path, "in_channels", n("in_channels"), c.vae.inChannels);
    check(v.path, "out_channels", n("out_channels"), c.vae.outChannels);
  }
  const t = d.textEncoder;
  if (t !== undefined) {
    const n = (f: string) => jsonField<number>(t, f, "number");
    check(t.path, "hidden_size", n("hidden_size"), c.textEncoder.hiddenSize);
    check(t.path, "num_hidden_layers", n("num_hidden_layers"), c.textEncoder.numLayers);
    check(t.path, "intermediate_size", n("intermediate_size"), c.textEncoder.intermediateSize);
    check(t.path, "vocab_size", n("vocab_size"), c.textEncoder.vocabSize);
    check(
      t.path,
      "max_position_embeddings",
      n("max_position_embeddings"),
      c.textEncoder.maxPositions,
    );
  }
}
