/**
 * One optimizer step at an accumulation boundary, in one of three forms: under fp16 the loss
 * scaler's (unscale, overflow check and clipping decided on the GPU), with clipping the gradient
 * norm's scale applied by the optimizer kernel, or the plain update. No form waits for the GPU.
 *
 * @module
 */
import { clipGradNorm, type LossScaler, type Optimizer } from "../../gpu/mod.ts";

/** The step's learning-rate multiplier and clipping norm (null: no clipping). */
export interface StepOptions {
  lrScale: number;
  maxGradNorm: number | null;
}

/** Update the parameters from their gradients, then zero the gradients. */
export async function optimizerStep(
  optimizer: Optimizer,
  scaler: LossScaler | null,
  o: StepOptions,
): Promise<void> {
  const { lrScale } = o;
  const maxNorm = o.maxGradNorm ?? undefined;
  if (scaler) {
    const r = await scaler.step(optimizer, { lrScale, maxNorm });
    r.clip?.dispose();
  } else if (maxNorm !== undefined) {
    const clip = clipGradNorm(optimizer.groups.flatMap((g) => g.params), maxNorm);
    optimizer.update({ lrScale, gradScaleTensor: clip.scale });
    clip.dispose();
  } else optimizer.update({ lrScale });
  optimizer.zeroGrad();
}
