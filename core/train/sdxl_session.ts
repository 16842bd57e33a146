/**
 * An SDXL model loaded for training, as kohya's sdxl_train_network does: both text encoders and
 * the U-Net in the training dtype, the VAE in f32 with `--no_half_vae` (kohya's advice under
 * fp16: SDXL's VAE overflows in half precision), latents scaled by kohya's SDXL factor 0.13025,
 * and a step model whose conditioning is the SDXL context (both encoders' penultimate states),
 * the pooled text embedding and each sample's size embeddings.
 *
 * @module
 */
import { cast, type Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { sdxlVector, timeIds } from "../models/sdxl_conditioning.ts";
import { cachedText, encodeSdxlWindows, type TextOutputCache } from "./sdxl_text.ts";
import { loadStableDiffusionXL, type StableDiffusionXL } from "../models/stable_diffusion_xl.ts";
import type { AutoencoderKL } from "../models/vae.ts";
import type { StepModel } from "./step.ts";

/** kohya's SDXL latent scale (`sdxl_model_util.VAE_SCALE_FACTOR`). */
export const SDXL_LATENT_SCALE = 0.13025;

/** The SDXL models of a run, and the VAE the latents come from. */
export interface SdxlTrainModel {
  sd: StableDiffusionXL;
  vae: AutoencoderKL;
  dispose(): void;
}

/** Load an SDXL checkpoint for training (`vaeF32`: the VAE in f32 whatever `dtype` is). */
export async function loadSdxlTrainModel(
  path: string,
  o: { dtype: "f16" | "f32"; vaeF32: boolean; vPrediction?: boolean },
): Promise<SdxlTrainModel> {
  const separateVae = o.vaeF32 && o.dtype !== "f32";
  const sd = await loadStableDiffusionXL(path, {
    dtype: o.dtype,
    vPrediction: o.vPrediction,
    parts: separateVae ? ["text_encoder", "text_encoder_2", "unet"] : undefined,
  });
  if (!separateVae) return { sd, vae: sd.vae, dispose: () => sd.dispose() };
  let vaeModel: StableDiffusionXL;
  try {
    vaeModel = await loadStableDiffusionXL(path, { dtype: "f32", parts: ["vae"] });
  } catch (e) {
    sd.dispose();
    throw e;
  }
  return {
    sd,
    vae: vaeModel.vae,
    dispose() {
      sd.dispose();
      vaeModel.dispose();
    },
  };
}

/**
 * The training step's networks for SDXL: the batch's context and `y` from both text encoders
 * (one 77-token window) and its size conditioning, then the U-Net (its output in f32).
 */
export function sdxlStepModel(sd: StableDiffusionXL, cache: TextOutputCache | null): StepModel {
  return {
    condition(batch) {
      if (batch.inputIds2 === undefined || batch.sizeConds === undefined) {
        throw new LorakitError(
          "SDXL training step: the batch has no second tokenizer's ids or size conditioning",
        );
      }
      const n = batch.sizeConds.length;
      const { context, pooled } = cache
        ? cachedText(cache, batch.inputIds, batch.inputIds2, n, sd.textEncoder.dtype)
        : encodeSdxlWindows(sd, batch.inputIds, batch.inputIds2, n);
      const add = sd.config.unet.addEmbedding!;
      return { context, y: sdxlVector(pooled, batch.sizeConds.map(timeIds), add) };
    },
    unet: {
      forward(s: Tensor, t: readonly number[], c: Tensor, y?: Tensor) {
        const out = sd.unet.forward(s, t, c, y);
        return out.dtype === "f32" ? out : cast(out, "f32");
      },
    },
  };
}
