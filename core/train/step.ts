/**
 * One LoRA training step's forward: text encoder (with the clip skip), noising, U-Net, the target
 * and kohya's loss (per-sample MSE over C,H,W, times the sample's loss weight from
 * batch_targets.ts, then the batch mean). The caller runs backward, clipping and the optimizer.
 *
 * @module
 */
import { add, mean, mseLoss, mul, reshape, scale, scope, sub, Tensor } from "../../gpu/mod.ts";
import type { SdxlSizeCond } from "../models/sdxl_conditioning.ts";
import type { StableDiffusion } from "../models/stable_diffusion.ts";
import type { DdpmSchedule } from "./noise_schedule.ts";

/** One batch, already on the GPU. */
export interface TrainBatch {
  /** VAE latents times the scaling factor, [B, 4, h, w]. */
  latents: Tensor;
  /** Gaussian noise of the same shape (noise offset already added, if any). */
  noise: Tensor;
  /** Integer timesteps, one per sample. */
  timesteps: number[];
  /** Token ids, B x (77 per window). */
  inputIds: Int32Array;
  /** SDXL: the second tokenizer's ids (same layout). */
  inputIds2?: Int32Array;
  /** SDXL: each sample's size conditioning (original size, crop, target size). */
  sizeConds?: SdxlSizeCond[];
  /** Each sample's loss weight, every factor included (see `sampleLossWeights`). */
  lossWeights: number[];
}

/** How the step's forward runs. */
export interface StepSettings {
  vParameterization?: boolean;
  clipSkip?: number;
  /** Run the text encoder without recording gradients (U-Net-only training). */
  frozenTextEncoder?: boolean;
}

/** The U-Net's conditioning of a batch. */
export interface StepConditioning {
  /** Cross-attention context [B, T, C]. */
  context: Tensor;
  /** SDXL's vector `y` [B, adm] (pooled text embedding and size embeddings). */
  y?: Tensor;
}

/** The networks a training step runs: the conditioning of a batch, then the U-Net. */
export interface StepModel {
  condition(batch: TrainBatch, s: StepSettings): StepConditioning;
  unet: {
    forward(sample: Tensor, timesteps: readonly number[], context: Tensor, y?: Tensor): Tensor;
  };
}

/** An SD 1.x/2.x model as a step model: the text encoder (with the clip skip), then the U-Net. */
export function sdStepModel(sd: Pick<StableDiffusion, "textEncoder" | "unet">): StepModel {
  return {
    condition: (batch, s) => ({
      context: sd.textEncoder.forward(batch.inputIds, { clipSkip: s.clipSkip ?? 1 }),
    }),
    unet: sd.unet,
  };
}

/** What one forward produces (the loss keeps its graph for backward). */
export interface StepOutputs {
  loss: Tensor;
  modelPred: Tensor;
  target: Tensor;
}

/** Per-sample scalars as a [B, 1, 1, 1] tensor for broadcasting. */
function perSample(values: number[], dtype: Tensor["dtype"]): Tensor {
  return Tensor.fromArray(Float32Array.from(values), [values.length, 1, 1, 1], dtype);
}

/** Forward of one training step; returns the scalar loss with its graph. */
export function trainStepForward(
  sd: StepModel,
  schedule: DdpmSchedule,
  batch: TrainBatch,
  s: StepSettings,
): StepOutputs {
  return scope(() => {
    const { latents, noise, timesteps } = batch;
    const dtype = latents.dtype;
    const c = timesteps.map((t) => schedule.coefficients(t));
    const a = perSample(c.map((x) => x.signal), dtype);
    const b = perSample(c.map((x) => x.noise), dtype);
    const noisy = add(mul(latents, a), mul(noise, b));
    const { context, y } = sd.condition(batch, s);
    const modelPred = sd.unet.forward(noisy, timesteps, context, y);
    // v = sqrt(acp) * noise - sqrt(1 - acp) * latents
    const target = s.vParameterization ? sub(mul(noise, a), mul(latents, b)) : noise.retain();
    const perElem = mseLoss(modelPred, target, "none");
    const perSampleLoss = mean(perElem, [1, 2, 3]); // [B]
    const w = batch.lossWeights;
    const weighted = mul(perSampleLoss, Tensor.fromArray(Float32Array.from(w), [w.length], dtype));
    const loss = reshape(mean(weighted), [1]);
    return { loss: scale(loss, 1), modelPred, target };
  });
}
