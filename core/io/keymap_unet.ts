/**
 * U-Net key map between the LDM (CompVis `openaimodel.UNetModel`) layout and diffusers'
 * `UNet2DConditionModel`, the behaviour of kohya's `convert_ldm_unet_checkpoint` and
 * `convert_unet_state_dict_to_sd`, generalised from its hard-coded 4 levels x 2 ResNets to the
 * layers-per-block the key set shows. Names are relative to `model.diffusion_model.` (LDM) and to
 * the U-Net module (diffusers). Tensor bytes never change; only names do (`proj_in`/`proj_out`
 * keep the shape they are stored with: SD1 1x1 conv, SD2 linear).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { parseIndex } from "./keymap_types.ts";

/** What the inverse map must know that names in diffusers form do not say. */
export interface UnetKeyLayout {
  /** ResNets per down level (`layers_per_block`); up levels have one more. */
  layersPerBlock: number;
  /** Per up block (diffusers order): whether it has attentions (moves its upsampler's index). */
  upHasAttention: boolean[];
}

/** LDM ResNet sub-module names -> diffusers, as in kohya's `unet_conversion_map_resnet`. */
const RESNET_LDM_TO_HF: Record<string, string> = {
  "in_layers.0": "norm1",
  "in_layers.2": "conv1",
  "out_layers.0": "norm2",
  "out_layers.3": "conv2",
  "emb_layers.1": "time_emb_proj",
  "skip_connection": "conv_shortcut",
};
const RESNET_HF_TO_LDM: Record<string, string> = Object.fromEntries(
  Object.entries(RESNET_LDM_TO_HF).map(([a, b]) => [b, a]),
);

/** Top-level single modules (LDM -> diffusers). */
const TOP_LDM_TO_HF: Record<string, string> = {
  "time_embed.0": "time_embedding.linear_1",
  "time_embed.2": "time_embedding.linear_2",
  "input_blocks.0.0": "conv_in",
  "out.0": "conv_norm_out",
  "out.2": "conv_out",
};
const TOP_HF_TO_LDM: Record<string, string> = Object.fromEntries(
  Object.entries(TOP_LDM_TO_HF).map(([a, b]) => [b, a]),
);

/** Renames `<resnet sub-module>.<param>` with `table`; null for an unknown sub-module. */
function renameResnet(rest: string, table: Record<string, string>): string | null {
  const parts = rest.split(".");
  // Sub-modules are one segment (`conv1`) or two (`in_layers.0`); the parameter name follows.
  for (const take of [2, 1]) {
    if (parts.length <= take) continue;
    const head = parts.slice(0, take).join(".");
    const mapped = table[head];
    if (mapped !== undefined) return [mapped, ...parts.slice(take)].join(".");
  }
  return null;
}

/** Matches `<module path>.<param>` against a table of module paths (longest path first). */
function renameTop(key: string, table: Record<string, string>): string | null {
  for (const [from, to] of Object.entries(table)) {
    if (key.startsWith(from + ".") && !key.slice(from.length + 1).includes(".")) {
      return to + key.slice(from.length);
    }
  }
  return null;
}

/**
 * LDM U-Net key (relative to `model.diffusion_model.`) -> diffusers name, or null when the key
 * is not part of the SD U-Net layout.
 */
export function unetKeyToDiffusers(key: string, layersPerBlock: number): string | null {
  const top = renameTop(key, TOP_LDM_TO_HF);
  if (top !== null) return top;
  const seg = key.split(".");
  const per = layersPerBlock + 1;
  if (seg[0] === "input_blocks") {
    const k = parseIndex(seg[1]);
    const sub = parseIndex(seg[2]);
    if (k === null || sub === null || k === 0 || seg.length < 5) return null;
    const rest = seg.slice(3).join(".");
    const level = Math.floor((k - 1) / per);
    const j = (k - 1) % per;
    if (j === layersPerBlock) {
      // The last slot of a level is its downsampler, stored as `input_blocks.K.0.op`.
      if (sub !== 0 || seg[3] !== "op" || seg.length !== 5) return null;
      return `down_blocks.${level}.downsamplers.0.conv.${seg[4]}`;
    }
    if (sub === 0) {
      const r = renameResnet(rest, RESNET_LDM_TO_HF);
      return r === null ? null : `down_blocks.${level}.resnets.${j}.${r}`;
    }
    if (sub === 1) return `down_blocks.${level}.attentions.${j}.${rest}`;
    return null;
  }
  if (seg[0] === "middle_block") {
    const sub = parseIndex(seg[1]);
    if (sub === null || seg.length < 4) return null;
    const rest = seg.slice(2).join(".");
    if (sub === 1) return `mid_block.attentions.0.${rest}`;
    if (sub !== 0 && sub !== 2) return null;
    const r = renameResnet(rest, RESNET_LDM_TO_HF);
    return r === null ? null : `mid_block.resnets.${sub / 2}.${r}`;
  }
  if (seg[0] === "output_blocks") {
    const k = parseIndex(seg[1]);
    const sub = parseIndex(seg[2]);
    if (k === null || sub === null || seg.length < 5) return null;
    const rest = seg.slice(3).join(".");
    const level = Math.floor(k / per);
    const j = k % per;
    // An upsampler is the block's last sub-module (index 1 without attention, 2 with) and is the
    // only one with a direct `conv` child, which is how kohya tells the two apart.
    if ((sub === 1 || sub === 2) && seg[3] === "conv" && seg.length === 5) {
      return j === layersPerBlock ? `up_blocks.${level}.upsamplers.0.conv.${seg[4]}` : null;
    }
    if (sub === 0) {
      const r = renameResnet(rest, RESNET_LDM_TO_HF);
      return r === null ? null : `up_blocks.${level}.resnets.${j}.${r}`;
    }
    if (sub === 1) return `up_blocks.${level}.attentions.${j}.${rest}`;
    return null;
  }
  return null;
}

/** diffusers U-Net name -> LDM key (relative to `model.diffusion_model.`), or null. */
export function unetKeyToLdm(name: string, layout: UnetKeyLayout): string | null {
  const top = renameTop(name, TOP_HF_TO_LDM);
  if (top !== null) return top;
  const n = layout.layersPerBlock;
  const per = n + 1;
  const seg = name.split(".");
  if (seg[0] === "down_blocks") {
    const i = parseIndex(seg[1]);
    if (i === null) return null;
    if (seg[2] === "downsamplers" && seg[3] === "0" && seg[4] === "conv" && seg.length === 6) {
      return `input_blocks.${(i + 1) * per}.0.op.${seg[5]}`;
    }
    const j = parseIndex(seg[3]);
    if (j === null || j >= n || seg.length < 6) return null;
    const k = 1 + i * per + j;
    const rest = seg.slice(4).join(".");
    if (seg[2] === "attentions") return `input_blocks.${k}.1.${rest}`;
    if (seg[2] !== "resnets") return null;
    const r = renameResnet(rest, RESNET_HF_TO_LDM);
    return r === null ? null : `input_blocks.${k}.0.${r}`;
  }
  if (seg[0] === "mid_block") {
    const j = parseIndex(seg[2]);
    if (j === null || seg.length < 5) return null;
    const rest = seg.slice(3).join(".");
    if (seg[1] === "attentions" && j === 0) return `middle_block.1.${rest}`;
    if (seg[1] !== "resnets" || j > 1) return null;
    const r = renameResnet(rest, RESNET_HF_TO_LDM);
    return r === null ? null : `middle_block.${2 * j}.${r}`;
  }
  if (seg[0] === "up_blocks") {
    const i = parseIndex(seg[1]);
    if (i === null) return null;
    if (seg[2] === "upsamplers" && seg[3] === "0" && seg[4] === "conv" && seg.length === 6) {
      const sub = layout.upHasAttention[i] ? 2 : 1;
      return `output_blocks.${i * per + n}.${sub}.conv.${seg[5]}`;
    }
    const j = parseIndex(seg[3]);
    if (j === null || j > n || seg.length < 6) return null;
    const k = i * per + j;
    const rest = seg.slice(4).join(".");
    if (seg[2] === "attentions") return `output_blocks.${k}.1.${rest}`;
    if (seg[2] !== "resnets") return null;
    const r = renameResnet(rest, RESNET_HF_TO_LDM);
    return r === null ? null : `output_blocks.${k}.0.${r}`;
  }
  return null;
}

/**
 * ResNets per down level, from LDM key names: the first downsampler (`input_blocks.K.0.op`) sits
 * at K = layers_per_block + 1. `where` names the file for the error.
 */
export function inferUnetLayersPerBlock(ldmKeys: Iterable<string>, where: string): number {
  let first = Infinity;
  for (const key of ldmKeys) {
    const m = /^input_blocks\.(\d+)\.0\.op\.weight$/.exec(key);
    if (m) first = Math.min(first, Number(m[1]));
  }
  if (!Number.isFinite(first) || first < 2) {
    throw new LorakitError(
      `${where}: cannot tell the U-Net's ResNets per level: expected downsampler keys ` +
        `'model.diffusion_model.input_blocks.<K>.0.op.weight' (K = 3 in SD 1.x/2.x), found ` +
        (Number.isFinite(first) ? `the first at K = ${first}` : "none"),
    );
  }
  return first - 1;
}
