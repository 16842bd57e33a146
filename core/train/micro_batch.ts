/**
 * One micro-batch's forward and backward: its latents (cached, or the VAE on its images), the
 * noise, timesteps and loss weights of batch_targets.ts, the network's dropout draws reseeded for
 * the batch, the forward and loss of step.ts, and backward of the loss divided by the
 * accumulation steps (times the loss scale under fp16: a GPU scalar that seeds the backward, so
 * there is no read-back and no kernel for the scaled loss). Gradients accumulate in the
 * parameters; the optimizer step is the caller's.
 *
 * @module
 */
import { backward, type LossScaler, scale, Tensor } from "../../gpu/mod.ts";
import { drawBatchTargets, type LossWeighting } from "./batch_targets.ts";
import type { HostBatch } from "./data_loader.ts";
import { encodeImagesToLatents } from "./latent_cache.ts";
import { reseedNetwork } from "./network_training.ts";
import type { DdpmSchedule } from "./noise_schedule.ts";
import { trainStepForward } from "./step.ts";
import { sdxlSizeCond } from "./sdxl_size_cond.ts";
import type { SessionModel, SessionNetwork } from "./train_session.ts";
import type { LossPlan } from "../kohya/plan_types.ts";

/** What every micro-batch of a run shares. */
export interface MicroBatchRun {
  model: SessionModel;
  session: SessionNetwork;
  schedule: DdpmSchedule;
  loss: LossPlan & LossWeighting;
  seed: number;
  scaler: LossScaler | null;
  accumulationSteps: number;
}

/** Train on micro-batch number `micro`; returns its (unscaled) loss, which the caller disposes. */
export async function trainMicroBatch(
  run: MicroBatchRun,
  hb: HostBatch,
  micro: number,
): Promise<Tensor> {
  const { model, session, seed, scaler } = run;
  const [bw, bh] = hb.bucket;
  const n = hb.keys.length;
  const shape = [n, 4, bh / 8, bw / 8];
  const latentData = hb.latents ??
    await encodeImagesToLatents(model.vae, hb.images!, n, hb.bucket, seed, hb.keys, micro);
  const targets = drawBatchTargets(run.loss, run.schedule, { seed, micro }, {
    n,
    h: bh / 8,
    w: bw / 8,
    baseWeights: hb.lossWeights,
  });
  reseedNetwork(session.net, seed, micro);
  const latents = Tensor.fromArray(latentData, shape);
  const noise = Tensor.fromArray(targets.noise, shape);
  const out = trainStepForward(model.stepModel, run.schedule, {
    latents,
    noise,
    timesteps: targets.timesteps,
    inputIds: hb.ids.ids,
    inputIds2: hb.ids2?.ids,
    sizeConds: model.sdxl
      ? hb.originalSizes.map((size, i) => sdxlSizeCond(size, hb.bucket, hb.flipped[i]))
      : undefined,
    lossWeights: targets.lossWeights,
  }, session.settings);
  const root = run.accumulationSteps === 1 ? out.loss : scale(out.loss, 1 / run.accumulationSteps);
  // Seeding the backward with the loss scale gives the gradients of the scaled loss.
  backward(root, scaler?.scaleTensor);
  if (root !== out.loss) root.dispose();
  latents.dispose();
  noise.dispose();
  out.modelPred.dispose();
  out.target.dispose();
  return out.loss;
}
