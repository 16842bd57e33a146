/**
 * VAE key map between the LDM `AutoencoderKL` layout and diffusers' `AutoencoderKL` as diffusers
 * >= 0.17 (0.21 in the fixtures) names it, the behaviour of kohya's `convert_ldm_vae_checkpoint`
 * and `convert_vae_state_dict`. Decoder levels are numbered in reverse in diffusers. The mid-block
 * attention is the one place where shapes differ: LDM stores q/k/v/proj_out as 1x1 convs
 * `[C,C,1,1]`, diffusers as linear `to_q/to_k/to_v/to_out.0` `[C,C]` (same bytes). Names are
 * relative to `first_stage_model.` and to the VAE module.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { parseIndex } from "./keymap_types.ts";

/** Mid-block attention sub-modules, LDM -> diffusers 0.17+. */
const ATTN_LDM_TO_HF: Record<string, string> = {
  norm: "group_norm",
  q: "to_q",
  k: "to_k",
  v: "to_v",
  proj_out: "to_out.0",
};
const ATTN_HF_TO_LDM: Record<string, string> = Object.fromEntries(
  Object.entries(ATTN_LDM_TO_HF).map(([a, b]) => [b, a]),
);

/** diffusers < 0.17 attention names (`query`, ..., `proj_attn`), accepted when reading folders. */
export const LEGACY_VAE_ATTENTION: Record<string, string> = {
  query: "to_q",
  key: "to_k",
  value: "to_v",
  proj_attn: "to_out.0",
};

const RESNET_PARTS = new Set(["norm1", "conv1", "norm2", "conv2", "nin_shortcut"]);

/** A mapped VAE name plus whether its weight changes between conv `[C,C,1,1]` and linear. */
export interface VaeMapped {
  name: string;
  /** True for the mid-block attention's q/k/v/out weights. */
  convLinear: boolean;
}

function resnet(rest: string[], prefix: string): VaeMapped | null {
  if (rest.length !== 2 || !RESNET_PARTS.has(rest[0])) return null;
  const sub = rest[0] === "nin_shortcut" ? "conv_shortcut" : rest[0];
  return { name: `${prefix}.${sub}.${rest[1]}`, convLinear: false };
}

function sampler(rest: string[], prefix: string): VaeMapped | null {
  if (rest.length !== 2 || rest[0] !== "conv") return null;
  return { name: `${prefix}.0.conv.${rest[1]}`, convLinear: false };
}

/** Maps the `mid.*` part shared by encoder and decoder. */
function mid(coder: string, seg: string[]): VaeMapped | null {
  if (seg[1] === "block_1" || seg[1] === "block_2") {
    return resnet(seg.slice(2), `${coder}.mid_block.resnets.${seg[1] === "block_1" ? 0 : 1}`);
  }
  if (seg[1] !== "attn_1" || seg.length !== 4) return null;
  const to = ATTN_LDM_TO_HF[seg[2]];
  if (to === undefined) return null;
  return {
    name: `${coder}.mid_block.attentions.0.${to}.${seg[3]}`,
    convLinear: seg[2] !== "norm" && seg[3] === "weight",
  };
}

/**
 * LDM VAE key (relative to `first_stage_model.`) -> diffusers name, or null when the key is not
 * part of the layout. `levels` is the number of resolution levels (4 in SD).
 */
export function vaeKeyToDiffusers(key: string, levels: number): VaeMapped | null {
  const seg = key.split(".");
  if (seg[0] === "quant_conv" || seg[0] === "post_quant_conv") {
    return seg.length === 2 ? { name: key, convLinear: false } : null;
  }
  if (seg[0] !== "encoder" && seg[0] !== "decoder") return null;
  const coder = seg[0];
  const body = seg.slice(1);
  if (body.length === 2 && (body[0] === "conv_in" || body[0] === "conv_out")) {
    return { name: key, convLinear: false };
  }
  if (body.length === 2 && body[0] === "norm_out") {
    return { name: `${coder}.conv_norm_out.${body[1]}`, convLinear: false };
  }
  if (body[0] === "mid") return mid(coder, body);
  const i = parseIndex(body[1]);
  if (i === null || i >= levels) return null;
  if (coder === "encoder" && body[0] === "down") {
    if (body[2] === "downsample") {
      return sampler(body.slice(3), `encoder.down_blocks.${i}.downsamplers`);
    }
    const j = parseIndex(body[3]);
    if (body[2] !== "block" || j === null) return null;
    return resnet(body.slice(4), `encoder.down_blocks.${i}.resnets.${j}`);
  }
  if (coder === "decoder" && body[0] === "up") {
    const b = levels - 1 - i;
    if (body[2] === "upsample") return sampler(body.slice(3), `decoder.up_blocks.${b}.upsamplers`);
    const j = parseIndex(body[3]);
    if (body[2] !== "block" || j === null) return null;
    return resnet(body.slice(4), `decoder.up_blocks.${b}.resnets.${j}`);
  }
  return null;
}

/** diffusers VAE name -> LDM key (relative to `first_stage_model.`), or null. */
export function vaeKeyToLdm(name: string, levels: number): VaeMapped | null {
  const seg = name.split(".");
  if (seg[0] === "quant_conv" || seg[0] === "post_quant_conv") {
    return seg.length === 2 ? { name, convLinear: false } : null;
  }
  if (seg[0] !== "encoder" && seg[0] !== "decoder") return null;
  const coder = seg[0];
  const body = seg.slice(1);
  if (body.length === 2 && (body[0] === "conv_in" || body[0] === "conv_out")) {
    return { name, convLinear: false };
  }
  if (body.length === 2 && body[0] === "conv_norm_out") {
    return { name: `${coder}.norm_out.${body[1]}`, convLinear: false };
  }
  const ldmResnet = (rest: string[], prefix: string): VaeMapped | null => {
    if (rest.length !== 2 || rest[0] === "nin_shortcut") return null;
    const sub = rest[0] === "conv_shortcut" ? "nin_shortcut" : rest[0];
    if (!RESNET_PARTS.has(sub)) return null;
    return { name: `${prefix}.${sub}.${rest[1]}`, convLinear: false };
  };
  if (body[0] === "mid_block") {
    const j = parseIndex(body[2]);
    if (body[1] === "resnets" && (j === 0 || j === 1)) {
      return ldmResnet(body.slice(3), `${coder}.mid.block_${j + 1}`);
    }
    if (body[1] !== "attentions" || j !== 0) return null;
    const param = body[body.length - 1];
    const from = ATTN_HF_TO_LDM[body.slice(3, -1).join(".")];
    if (from === undefined) return null;
    return {
      name: `${coder}.mid.attn_1.${from}.${param}`,
      convLinear: from !== "norm" && param === "weight",
    };
  }
  const i = parseIndex(body[1]);
  if (i === null || i >= levels) return null;
  const isSampler = body[2] === "downsamplers" || body[2] === "upsamplers";
  if (isSampler && (body[3] !== "0" || body[4] !== "conv" || body.length !== 6)) return null;
  if (coder === "encoder" && body[0] === "down_blocks") {
    if (body[2] === "downsamplers") {
      return { name: `encoder.down.${i}.downsample.conv.${body[5]}`, convLinear: false };
    }
    const j = parseIndex(body[3]);
    if (body[2] !== "resnets" || j === null) return null;
    return ldmResnet(body.slice(4), `encoder.down.${i}.block.${j}`);
  }
  if (coder === "decoder" && body[0] === "up_blocks") {
    const b = levels - 1 - i;
    if (body[2] === "upsamplers") {
      return { name: `decoder.up.${b}.upsample.conv.${body[5]}`, convLinear: false };
    }
    const j = parseIndex(body[3]);
    if (body[2] !== "resnets" || j === null) return null;
    return ldmResnet(body.slice(4), `decoder.up.${b}.block.${j}`);
  }
  return null;
}

/** Shape of a mid-attention weight in diffusers form: `[C,C,1,1]` -> `[C,C]`. */
export function vaeConvToLinearShape(
  shape: readonly number[],
  key: string,
  where: string,
): number[] {
  if (shape.length === 2) return [...shape]; // already linear (some converted files store it so)
  if (shape.length !== 4 || shape[2] !== 1 || shape[3] !== 1) {
    throw new LorakitError(
      `${where}: '${key}': expected a 1x1 conv weight [C,C,1,1] or a linear weight [C,C], found ` +
        `[${shape.join(",")}]`,
    );
  }
  return [shape[0], shape[1]];
}

/** Number of VAE resolution levels from LDM key names (`encoder.down.<i>`). */
export function inferVaeLevels(ldmKeys: Iterable<string>, where: string): number {
  let max = -1;
  for (const key of ldmKeys) {
    const m = /^encoder\.down\.(\d+)\./.exec(key);
    if (m) max = Math.max(max, Number(m[1]));
  }
  if (max < 0) {
    throw new LorakitError(
      `${where}: expected VAE encoder keys 'first_stage_model.encoder.down.<i>.*', found none`,
    );
  }
  return max + 1;
}
