/**
 * What one micro-batch is trained towards, drawn on the host: the seeded noise (plus the offset
 * noise), the timesteps, and every per-sample loss weight — the sample's own weight (1, or the
 * prior loss weight of a regularization image), kohya's v-prediction factors
 * (scale_v_pred_loss_like_noise_pred, v_pred_like_loss, debiased_estimation_loss) and min-SNR —
 * in kohya's order. Every draw is a function of (seed, stream, micro-batch), so a resumed run
 * draws the same numbers.
 *
 * @module
 */
import type { LossPlan } from "../kohya/plan_types.ts";
import type { DdpmSchedule } from "./noise_schedule.ts";
import { STREAM, streamGaussian, streamRandom } from "./train_rng.ts";

/** The loss settings a batch's weights depend on. */
export type LossWeighting =
  & Pick<
    LossPlan,
    "minSnrGamma" | "scaleVPredLossLikeNoisePred" | "vPredLikeLoss" | "debiasedEstimation"
  >
  & { vParameterization: boolean };

/** kohya's clamp of the SNR in its per-sample loss scalings. */
function snrClamped(schedule: DdpmSchedule, t: number): number {
  return Math.min(schedule.snr(t), 1000);
}

/** Each sample's loss weight: `base` (1 or the prior loss weight) times kohya's factors. */
export function sampleLossWeights(
  base: readonly number[],
  timesteps: readonly number[],
  schedule: DdpmSchedule,
  o: Partial<LossWeighting>,
): number[] {
  return base.map((w, i) => {
    const snr = snrClamped(schedule, timesteps[i]);
    const vScale = snr / (snr + 1);
    if (o.scaleVPredLossLikeNoisePred) w *= vScale;
    if (o.vPredLikeLoss) w *= 1 + o.vPredLikeLoss / vScale;
    if (o.debiasedEstimation) w *= 1 / Math.sqrt(snr);
    if (o.minSnrGamma) {
      w *= schedule.minSnrWeight(timesteps[i], o.minSnrGamma, !!o.vParameterization);
    }
    return w;
  });
}

/** A micro-batch's noise, timesteps and loss weights. */
export interface BatchTargets {
  /** Gaussian noise of the latents' shape [n, 4, h, w], offset noise included. */
  noise: Float32Array;
  timesteps: number[];
  lossWeights: number[];
}

/** Draw the targets of micro-batch `micro` for `n` latents of `h` x `w`. */
export function drawBatchTargets(
  loss: LossPlan & { vParameterization: boolean },
  schedule: DdpmSchedule,
  at: { seed: number; micro: number },
  batch: { n: number; h: number; w: number; baseWeights: readonly number[] },
): BatchTargets {
  const { seed, micro } = at;
  const { n } = batch;
  const per = 4 * batch.h * batch.w;
  const noise = streamGaussian(seed, STREAM.noise, micro).gaussian(n * per);
  if (loss.noiseOffset !== 0) {
    // One offset per sample and channel, the same over the plane.
    const r = streamRandom(seed, STREAM.noiseOffset, micro);
    const g = streamGaussian(seed, STREAM.noiseOffset, micro, 1);
    const off = loss.noiseOffsetRandomStrength ? r() * loss.noiseOffset : loss.noiseOffset;
    const plane = per / 4;
    for (let k = 0; k < n * 4; k++) {
      const v = off * g.nextGaussian();
      for (let j = 0; j < plane; j++) noise[k * plane + j] += v;
    }
  }
  const tr = streamRandom(seed, STREAM.timesteps, micro);
  const span = loss.maxTimestep - loss.minTimestep;
  const timesteps = Array.from({ length: n }, () => loss.minTimestep + Math.floor(tr() * span));
  const lossWeights = sampleLossWeights(batch.baseWeights, timesteps, schedule, loss);
  return { noise, timesteps, lossWeights };
}
