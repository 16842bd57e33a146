/**
 * Which layers of an SD 1.x/2.x model get a LoRA, and with which rank and alpha: kohya's
 * `LoRANetwork` module selection (`networks/lora.py`, `networks/dylora.py`), computed from the
 * model's weight list (internal diffusers/HF names and shapes) instead of PyTorch module classes.
 *
 * kohya walks the modules of three kinds of owner and wraps every `Linear` and `Conv2d` inside:
 * - U-Net `Transformer2DModel` (`*.attentions.N`): proj_in/proj_out (1x1 conv on SD1, Linear on
 *   SD2), attn1/attn2 to_q/to_k/to_v/to_out.0, ff.net.0.proj, ff.net.2. Always targeted.
 * - U-Net `ResnetBlock2D` / `Downsample2D` / `Upsample2D`: conv1, conv2 (3x3), time_emb_proj
 *   (Linear), conv_shortcut (1x1), the samplers' conv (3x3). Targeted only in C3Lier mode
 *   (conv_dim or conv_block_dims given); Linear and 1x1 there then get network_dim, 3x3 conv_dim.
 * - CLIP `CLIPAttention` / `CLIPMLP`: q/k/v/out_proj, fc1, fc2.
 * Everything else (conv_in, conv_out, time_embedding, norms, embeddings) never gets a LoRA.
 *
 * In a weight list a Linear is a 2-D `.weight` and a Conv2d a 4-D one; norms are 1-D.
 *
 * SDXL (`sdxl` set to the U-Net's key layout): the same layers, named as kohya names them on its
 * SGM-layout U-Net and its two text encoders: `lora_unet_` + the original module name
 * (`input_blocks_4_1_transformer_blocks_0_attn1_to_q`, ResNet `in_layers_2`, `out_layers_3`,
 * `emb_layers_1`, `skip_connection`, samplers `op` / `conv`), `lora_te1_` (`text_encoder.*`) and
 * `lora_te2_` (`text_encoder_2.*`, whose q/k/v are separate layers after loading) + the Hugging
 * Face names; blocks from the 23-block map. TE2's `text_projection`, `add_embedding` (label_emb)
 * and the time embedding are outside kohya's target classes, as on SD 1.x/2.x. DyLoRA on SDXL
 * takes the same names (kohya's dylora.py names both text encoders `lora_te_`, so TE1's modules
 * collide with TE2's and are lost from its files; lorakit pins networks.lora's names instead).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { type UnetKeyLayout, unetKeyToLdm } from "../io/keymap_unet.ts";
import {
  type BlockDimLists,
  blockIndex,
  dropZeroLrBlocks,
  numTotalBlocks,
  resolveBlockDims,
  sdxlBlockIndex,
} from "./blocks.ts";

/**
 * One weight of the model: internal name (`unet.` / `text_encoder.` / SDXL's `text_encoder_2.`
 * prefixed) and shape.
 */
export interface WeightInfo {
  name: string;
  shape: readonly number[];
}

/** Layer type of a LoRA module's target. */
export type LoraModuleKind = "linear" | "conv1x1" | "conv3x3";

/** Which model part a module belongs to. */
export type LoraPart = "unet" | "text_encoder";

/** A layer that can carry a LoRA, before any rank is chosen. */
export interface LoraTarget {
  /**
   * kohya's module name: `lora_unet_...` / `lora_te_...` (SDXL `lora_te1_...`, `lora_te2_...`),
   * the key prefix in LoRA files.
   */
  prefix: string;
  part: LoraPart;
  /** Internal name of the weight the LoRA modifies (`unet.....to_q.weight`). */
  weight: string;
  kind: LoraModuleKind;
  inFeatures: number;
  outFeatures: number;
  /** [kh, kw]; [1, 1] for Linear. */
  kernel: [number, number];
  /** Conv stride and padding (the LoRA's down conv keeps them); [1,1] / [0,0] for Linear. */
  stride: [number, number];
  padding: [number, number];
  /** kohya's block index for U-Net modules (0..24; SDXL 0..22); -1 for the text encoders. */
  block: number;
  /** True for layers inside ResnetBlock2D / Downsample2D / Upsample2D (C3Lier targets). */
  convBlock: boolean;
}

/** A LoRA module to create: a target plus rank and alpha. */
export interface LoraModuleSpec extends LoraTarget {
  rank: number;
  /** Scale = alpha / rank; an alpha of 0 or unset has already been replaced by the rank. */
  alpha: number;
}

/** Network module implementations (`--network_module`). */
export type NetworkModuleName = "networks.lora" | "networks.dylora";

/**
 * Options of {@link buildLoraModules}; names follow kohya's arguments. The per-block lists
 * ({@link BlockDimLists}) have 25 values each (SDXL 23; see blocks.ts).
 */
export interface ModuleListOptions extends BlockDimLists {
  /** An SDXL model: its U-Net's key layout (SDXL names and blocks); null/absent for SD 1.x/2.x. */
  sdxl?: UnetKeyLayout | null;
  /** `--network_module`; default `networks.lora`. */
  module?: NetworkModuleName;
  /** `--network_dim`; kohya's default 4. */
  networkDim?: number | null;
  /** `--network_alpha`; kohya's default 1.0. */
  networkAlpha?: number | null;
  convDim?: number | null;
  /** Default 1.0 when conv_dim is given (networks.lora); DyLoRA uses network_alpha for convs. */
  convAlpha?: number | null;
  /** 25 (SDXL 23) block learning-rate weights: blocks with weight 0 get no modules. */
  blockLrWeight?: readonly number[] | null;
  trainUnetOnly?: boolean;
  trainTextEncoderOnly?: boolean;
  /**
   * Target the Linear/1x1 layers of ResnetBlock2D (time_emb_proj, conv_shortcut) even without
   * conv_dim. kohya extends its class-level target list in place (`target_modules += ...`), so
   * once one network with conv_dim exists in a Python process every later network there also
   * gets these modules. A fresh `train_network.py` run does not; this flag reproduces the other
   * case (kohya's block_lr fixture was made that way). Default false.
   */
  resnetTargetsWithoutConv?: boolean;
}

const UNET_LEVEL = String.raw`(?:down_blocks\.\d+|mid_block|up_blocks\.\d+)`;
const RE_TRANSFORMER = new RegExp(String.raw`^${UNET_LEVEL}\.attentions\.\d+\..+\.weight$`);
const RE_RESNET = new RegExp(String.raw`^${UNET_LEVEL}\.resnets\.\d+\..+\.weight$`);
const RE_DOWNSAMPLER = /^down_blocks\.\d+\.downsamplers\.\d+\..+\.weight$/;
const RE_UPSAMPLER = /^up_blocks\.\d+\.upsamplers\.\d+\..+\.weight$/;
const RE_CLIP = /^text_model\.encoder\.layers\.\d+\.(?:self_attn|mlp)\..+\.weight$/;

function layerOf(
  where: string,
  shape: readonly number[],
): Pick<LoraTarget, "kind" | "inFeatures" | "outFeatures" | "kernel"> | null {
  if (shape.length === 2) {
    return { kind: "linear", inFeatures: shape[1], outFeatures: shape[0], kernel: [1, 1] };
  }
  if (shape.length !== 4) return null; // norms, biases: not Linear/Conv2d
  const [out, inp, kh, kw] = shape;
  const kind = kh === 1 && kw === 1 ? "conv1x1" : kh === 3 && kw === 3 ? "conv3x3" : null;
  if (kind === null) {
    throw new LorakitError(
      `${where}: expected a 1x1 or 3x3 convolution weight, found shape [${shape.join(", ")}]`,
    );
  }
  return { kind, inFeatures: inp, outFeatures: out, kernel: [kh, kw] };
}

/** kohya's module name of an SDXL U-Net layer (diffusers name `module`): the SGM name. */
function sdxlUnetPrefix(module: string, layout: UnetKeyLayout): string {
  const ldm = unetKeyToLdm(`${module}.weight`, layout);
  if (ldm === null) {
    throw new LorakitError(`SDXL U-Net layer 'unet.${module}': no SGM module name for it`);
  }
  return `lora_unet_${ldm.slice(0, -".weight".length).replaceAll(".", "_")}`;
}

/**
 * Every layer kohya could wrap with a LoRA (Transformer2DModel, ResnetBlock2D, Down/Upsample2D,
 * CLIP attention/MLP), in natural name order: text encoder first, then U-Net, as kohya lists
 * them. Weights not prefixed `unet.` or `text_encoder.` (VAE, ...) are ignored; for an SDXL
 * model (`sdxl`: its U-Net's key layout) `text_encoder_2.` is the second text encoder and the
 * names are kohya's SDXL names (see the module doc).
 */
export function loraTargets(
  weights: readonly WeightInfo[],
  sdxl: UnetKeyLayout | null = null,
): LoraTarget[] {
  const out: LoraTarget[] = [];
  for (const w of weights) {
    let part: LoraPart;
    let path: string;
    let te = sdxl === null ? "lora_te" : "lora_te1";
    if (w.name.startsWith("unet.")) [part, path] = ["unet", w.name.slice(5)];
    else if (w.name.startsWith("text_encoder.")) [part, path] = ["text_encoder", w.name.slice(13)];
    else if (sdxl !== null && w.name.startsWith("text_encoder_2.")) {
      [part, path, te] = ["text_encoder", w.name.slice(15), "lora_te2"];
    } else continue;
    let convBlock = false;
    let stride: [number, number] = [1, 1];
    if (part === "text_encoder") {
      if (!RE_CLIP.test(path)) continue;
    } else if (RE_DOWNSAMPLER.test(path)) {
      [convBlock, stride] = [true, [2, 2]];
    } else if (RE_RESNET.test(path) || RE_UPSAMPLER.test(path)) {
      convBlock = true;
    } else if (!RE_TRANSFORMER.test(path)) continue;
    const layer = layerOf(`model weight '${w.name}'`, w.shape);
    if (layer === null) continue;
    const module = path.slice(0, -".weight".length);
    const prefix = part === "text_encoder"
      ? `${te}_${module.replaceAll(".", "_")}`
      : sdxl !== null
      ? sdxlUnetPrefix(module, sdxl)
      : `lora_unet_${module.replaceAll(".", "_")}`;
    const pad = (layer.kernel[0] - 1) / 2;
    out.push({
      prefix,
      part,
      weight: w.name,
      ...layer,
      stride,
      padding: [pad, pad],
      block: part === "text_encoder"
        ? -1
        : sdxl !== null
        ? sdxlBlockIndex(prefix)
        : blockIndex(prefix),
      convBlock,
    });
  }
  out.sort((a, b) =>
    a.part === b.part ? naturalCompare(a.prefix, b.prefix) : a.part === "text_encoder" ? -1 : 1
  );
  const seen = new Set<string>();
  for (const t of out) {
    if (seen.has(t.prefix)) {
      throw new LorakitError(`model weights: two layers map to LoRA name '${t.prefix}'`);
    }
    seen.add(t.prefix);
  }
  return out;
}

/** Compare names with digit runs as numbers (layers_2 before layers_10). */
export function naturalCompare(a: string, b: string): number {
  const re = /(\d+)|(\D+)/g;
  const pa = a.match(re) ?? [];
  const pb = b.match(re) ?? [];
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === y) continue;
    const nx = /^\d/.test(x) && /^\d/.test(y);
    if (nx && Number(x) !== Number(y)) return Number(x) - Number(y);
    return x < y ? -1 : 1;
  }
  return pa.length - pb.length;
}

function positive(flag: string, v: number | null | undefined, fallback: number): number {
  const x = v ?? fallback;
  if (!Number.isFinite(x) || x < 0) {
    throw new LorakitError(`${flag}: expected a non-negative number, found ${v}`);
  }
  return x;
}

/**
 * kohya's module list: every LoRA module `create_network` (networks.lora or networks.dylora)
 * would create for a model with these weights, with rank and alpha. Modules whose rank resolves
 * to 0 (block_dims 0, a block lr weight of 0) are left out, as kohya skips them.
 */
export function buildLoraModules(
  weights: readonly WeightInfo[],
  options: ModuleListOptions = {},
): LoraModuleSpec[] {
  const module = options.module ?? "networks.lora";
  const networkDim = positive("--network_dim", options.networkDim, 4);
  const networkAlpha = positive("--network_alpha", options.networkAlpha, 1.0);
  if (options.trainUnetOnly && options.trainTextEncoderOnly) {
    throw new LorakitError(
      "--network_train_unet_only and --network_train_text_encoder_only: expected at most one, " +
        "found both (nothing would be trained)",
    );
  }
  const convDim = options.convDim ?? null;
  const convAlpha = convDim === null ? null : positive("conv_alpha", options.convAlpha, 1.0);
  const sdxl = options.sdxl ?? null;
  const usesBlocks = options.blockDims != null || options.blockLrWeight != null;

  let pick: (t: LoraTarget) => [number, number] | null;
  let convTargets: boolean;
  if (module === "networks.dylora") {
    if (usesBlocks || options.convBlockDims != null) {
      throw new LorakitError(
        "network_args: networks.dylora does not support block_dims, conv_block_dims or block " +
          "learning rates (kohya's DyLoRA ignores them); remove them or use networks.lora",
      );
    }
    if (convDim !== null && convDim !== networkDim) {
      throw new LorakitError(
        `network_args conv_dim: networks.dylora expects conv_dim equal to --network_dim ` +
          `(${networkDim}), found ${convDim}`,
      );
    }
    convTargets = convDim !== null;
    // DyLoRA gives every module, 3x3 convs included, network_dim and network_alpha.
    pick = () => [networkDim, networkAlpha];
  } else if (usesBlocks) {
    const blocks = dropZeroLrBlocks(
      resolveBlockDims({
        ...options,
        sdxl: sdxl !== null,
        networkDim,
        networkAlpha,
        convDim,
        convAlpha,
      }),
      options.blockLrWeight ?? null,
    );
    convTargets = convDim !== null || blocks.convDims !== null;
    pick = (t) => {
      if (t.part === "text_encoder") return [networkDim, networkAlpha];
      if (t.block < 0) {
        throw new LorakitError(
          `LoRA module '${t.prefix}': not in any of the ${numTotalBlocks(sdxl !== null)} U-Net ` +
            `blocks`,
        );
      }
      if (t.kind !== "conv3x3") return [blocks.dims[t.block], blocks.alphas[t.block]];
      return blocks.convDims === null || blocks.convAlphas === null
        ? null
        : [blocks.convDims[t.block], blocks.convAlphas[t.block]];
    };
  } else {
    const stray = (
      [["block_alphas", options.blockAlphas], ["conv_block_dims", options.convBlockDims], [
        "conv_block_alphas",
        options.convBlockAlphas,
      ]] as const
    ).filter(([, v]) => v != null).map(([k]) => k);
    if (stray.length > 0) {
      // kohya silently ignores these without block_dims; a setting with no effect is an error.
      throw new LorakitError(
        `network_args ${stray.join(", ")}: take effect only together with block_dims (or block ` +
          `learning-rate weights), found without; add block_dims=... or remove them`,
      );
    }
    convTargets = convDim !== null;
    pick = (t) =>
      t.kind !== "conv3x3"
        ? [networkDim, networkAlpha]
        : convDim === null || convAlpha === null
        ? null
        : [convDim, convAlpha];
  }
  const withResnets = convTargets || options.resnetTargetsWithoutConv === true;

  const out: LoraModuleSpec[] = [];
  for (const t of loraTargets(weights, sdxl)) {
    if (t.part === "text_encoder" && options.trainUnetOnly) continue;
    if (t.part === "unet" && options.trainTextEncoderOnly) continue;
    if (t.convBlock && !withResnets) continue;
    const picked = pick(t);
    if (picked === null) continue;
    const [rank, alpha] = picked;
    if (!Number.isInteger(rank) || rank < 0) {
      throw new LorakitError(
        `LoRA module '${t.prefix}': expected a non-negative integer rank, found ${rank}`,
      );
    }
    if (rank === 0) continue;
    // LoRAModule: "if alpha == 0 or None, alpha is rank (no scaling)".
    out.push({ ...t, rank, alpha: alpha === 0 ? rank : alpha });
  }
  return out;
}
