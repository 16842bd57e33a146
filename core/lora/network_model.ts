/**
 * The model side of a LoRA network: which layers of an SD 1.x/2.x or SDXL model a network can
 * hook (by internal weight name), the weight store each belongs to, and the LoRA names a file
 * may use for them.
 *
 * @module
 */
import type { UnetKeyLayout } from "../io/keymap_unet.ts";
import type { UNetConfig } from "../model_config/config.ts";
import type { ClipTextEncoder } from "../models/clip.ts";
import type { LayerModule, ModelWeights } from "../models/weights.ts";
import type { StableDiffusion } from "../models/stable_diffusion.ts";
import { type LoraTarget, loraTargets, type WeightInfo } from "./modules.ts";

/**
 * The parts of a model a network hooks into: SD 1.x/2.x's, or SDXL's with `textEncoder2` (a
 * part that was not loaded may throw when read).
 */
export type LoraModel = Pick<StableDiffusion, "unet" | "textEncoder"> & {
  readonly textEncoder2?: ClipTextEncoder;
  readonly config?: { readonly unet: UNetConfig };
};

/** The U-Net key layout kohya's SDXL names need, or null for an SD 1.x/2.x model. */
export function sdxlLayoutOf(sd: LoraModel): UnetKeyLayout | null {
  if (!("textEncoder2" in sd)) return null;
  let c: UNetConfig | undefined = sd.config?.unet;
  if (c === undefined) {
    try {
      c = sd.unet.config;
    } catch { /* U-Net not loaded: no U-Net names are needed */ }
  }
  return {
    layersPerBlock: c?.layersPerBlock ?? 2,
    upHasAttention: c?.upBlockTypes.map((t) => t === "CrossAttnUpBlock2D") ?? [],
  };
}

/** The weight store of a model part, from an internal weight name's prefix. */
export function storeOf(sd: LoraModel, weight: string): ModelWeights {
  if (weight.startsWith("unet.")) return sd.unet.weights;
  if (weight.startsWith("text_encoder_2.") && sd.textEncoder2 !== undefined) {
    return sd.textEncoder2.weights;
  }
  return sd.textEncoder.weights;
}

/** The model's LoRA-able layers by internal weight name, and their weight list. */
export function modelLayers(
  sd: LoraModel,
): { byWeight: Map<string, LayerModule>; weights: WeightInfo[] } {
  const byWeight = new Map<string, LayerModule>();
  const weights: WeightInfo[] = [];
  const add = (m: LayerModule) => {
    byWeight.set(`${m.name}.weight`, m);
    weights.push({ name: `${m.name}.weight`, shape: m.weight.shape });
  };
  let te: LayerModule[] = [], te2: LayerModule[] = [], un: LayerModule[] = [];
  try {
    te = sd.textEncoder.modules();
  } catch { /* text encoder not loaded */ }
  if ("textEncoder2" in sd) {
    try {
      te2 = sd.textEncoder2?.modules() ?? [];
    } catch { /* second text encoder not loaded */ }
  }
  try {
    un = sd.unet.modules();
  } catch { /* U-Net not loaded */ }
  te.forEach(add);
  te2.forEach(add);
  un.forEach(add);
  return { byWeight, weights };
}

/**
 * The layers a LoRA file may name: kohya's names for the model; for SDXL also the U-Net's
 * diffusers-style names (`lora_unet_down_blocks_1_attentions_0_...`), which kohya's
 * `convert_diffusers_to_sai_if_needed` renames to the SGM names on load. Returns the targets to
 * bind against and, per internal weight name, the target under kohya's name.
 */
export function fileTargets(
  weights: readonly WeightInfo[],
  sdxl: UnetKeyLayout | null,
): { targets: LoraTarget[]; byWeight: Map<string, LoraTarget> } {
  const own = loraTargets(weights, sdxl);
  const byWeight = new Map(own.map((t) => [t.weight, t]));
  if (sdxl === null) return { targets: own, byWeight };
  const diffusers = loraTargets(weights).filter((t) => t.part === "unet");
  return { targets: [...own, ...diffusers], byWeight };
}
