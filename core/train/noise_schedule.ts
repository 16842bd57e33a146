/**
 * The DDPM noise schedule kohya trains with (diffusers' `DDPMScheduler`: scaled-linear betas
 * 0.00085..0.012 over 1000 steps), the noising of latents, the training target (noise, or the
 * velocity with `--v_parameterization`) and the per-timestep SNR used by `--min_snr_gamma`.
 *
 * @module
 */

import { alphasCumprod, KOHYA_SCHEDULE } from "../sample/schedulers/schedule.ts";

/**
 * alphas_cumprod and SNR per training timestep. alphas_cumprod holds diffusers' float32 values
 * (the sampler schedules' own computation): the noised latents then match what kohya's trainer
 * feeds the U-Net, where a float64 schedule sits up to 1.5e-6 (some 10 float32 ulps) away at
 * large timesteps, an input error that the tiny deep blocks amplify into the gradients.
 */
export class DdpmSchedule {
  readonly steps: number;
  readonly alphasCumprod: Float64Array;

  constructor(betaStart = 0.00085, betaEnd = 0.012, steps = 1000) {
    this.steps = steps;
    this.alphasCumprod = alphasCumprod({
      ...KOHYA_SCHEDULE,
      numTrainTimesteps: steps,
      betaStart,
      betaEnd,
    });
  }

  /** sqrt(alphas_cumprod[t]) and sqrt(1 - alphas_cumprod[t]). */
  coefficients(t: number): { signal: number; noise: number } {
    const acp = this.alphasCumprod[t];
    return { signal: Math.sqrt(acp), noise: Math.sqrt(1 - acp) };
  }

  /** Signal-to-noise ratio acp / (1 - acp). */
  snr(t: number): number {
    const acp = this.alphasCumprod[t];
    return acp / (1 - acp);
  }

  /**
   * kohya's min-SNR weight: min(snr, gamma) / snr, or / (snr + 1) for v-prediction
   * (`apply_snr_weight`).
   */
  minSnrWeight(t: number, gamma: number, vPrediction: boolean): number {
    const snr = this.snr(t);
    return Math.min(snr, gamma) / (vPrediction ? snr + 1 : snr);
  }
}
