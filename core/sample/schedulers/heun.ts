/**
 * Heun's second-order sampler (diffusers `HeunDiscreteScheduler`, kohya's `heun`). Every timestep
 * after the first is visited twice: a first-order Euler step to the next sigma, then a correction
 * that averages the two derivatives and restarts from the saved sample. The last step (to sigma
 * 0) is first-order only, so 8 steps cost 15 U-Net calls.
 *
 * @module
 */
import type { Tensor } from "../../../gpu/mod.ts";
import { derivativeCoeffs, KScheduler } from "./k_base.ts";
import { kSchedule } from "./schedule.ts";
import { hold, lincomb, release } from "./scheduler.ts";

/** diffusers' HeunDiscreteScheduler. */
export class HeunScheduler extends KScheduler {
  readonly name = "heun";
  readonly drawsNoise = false;
  /** First-order derivative, step size and starting sample, kept for the correction. */
  #prevDerivative: Tensor | null = null;
  #sample: Tensor | null = null;
  #dt: number | null = null;

  protected schedule(steps: number): void {
    const base = kSchedule(steps, this.config, this.trainSigmas);
    const n = base.timesteps.length;
    // sigmas: s0, s1, s1, ..., s(n-1), s(n-1), 0; timesteps: t0, t1, t1, ..., t(n-1), t(n-1).
    this.sigmas = new Float64Array(2 * n);
    this.timesteps = new Float64Array(2 * n - 1);
    this.sigmas[0] = base.sigmas[0];
    this.timesteps[0] = Math.fround(base.timesteps[0]);
    for (let k = 1; k < n; k++) {
      this.sigmas[2 * k - 1] = this.sigmas[2 * k] = base.sigmas[k];
      this.timesteps[2 * k - 1] = this.timesteps[2 * k] = Math.fround(base.timesteps[k]);
    }
    this.sigmas[2 * n - 1] = 0;
  }

  /** True when the next step is a first-order (Euler) step. */
  get stateInFirstOrder(): boolean {
    return this.#dt === null;
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    const i = this.indexFor(t);
    const pred = this.config.predictionType;
    this.advance();
    if (this.#dt === null) {
      const sigma = this.sigmas[i], next = this.sigmas[i + 1];
      const [dx, dm] = derivativeCoeffs(pred, sigma, sigma);
      const dt = next - sigma;
      this.#prevDerivative = hold(lincomb([[dx, sample], [dm, modelOutput]]));
      this.#sample = hold(sample);
      this.#dt = dt;
      return lincomb([[1 + dt * dx, sample], [dt * dm, modelOutput]]);
    }
    // Correction: x0 and the derivative at sigma_next (the sigma the first step reached).
    const next = this.sigmas[i];
    const [dx, dm] = derivativeCoeffs(pred, next, next);
    const dt = this.#dt;
    const out = lincomb([
      [1, this.#sample!],
      [dt / 2, this.#prevDerivative!],
      [(dt / 2) * dx, sample],
      [(dt / 2) * dm, modelOutput],
    ]);
    this.dispose();
    return out;
  }

  override dispose(): void {
    this.#prevDerivative = release(this.#prevDerivative);
    this.#sample = release(this.#sample);
    this.#dt = null;
  }
}
