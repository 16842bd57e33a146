/**
 * DDIM (diffusers `DDIMScheduler`, kohya's default `ddim`) with eta 0, the only value gen_img
 * passes: deterministic, `clip_sample` False as kohya forces, `set_alpha_to_one` True (the step
 * past timestep 0 lands on alpha 1), "leading" timesteps `arange(n) * (T // n) + 1`.
 *
 * @module
 */
import type { Tensor } from "../../../gpu/mod.ts";
import { LorakitError } from "../../errors.ts";
import { alphasCumprod, checkSteps, leadingTimesteps, type ScheduleConfig } from "./schedule.ts";
import { ddpmEps, ddpmX0, lincomb, UnscaledScheduler } from "./scheduler.ts";

/** diffusers' DDIMScheduler (eta 0). */
export class DdimScheduler extends UnscaledScheduler {
  readonly name = "ddim";
  readonly alphasCumprod: Float64Array;
  #steps = 0;

  constructor(config: ScheduleConfig) {
    super(config);
    this.alphasCumprod = alphasCumprod(config);
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.config);
    this.#steps = steps;
    this.timesteps = leadingTimesteps(steps, this.config).reverse();
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    if (this.#steps === 0) throw new LorakitError("sampler ddim: call setTimesteps first");
    const acp = this.#alpha(t);
    const prev = t - Math.floor(this.config.numTrainTimesteps / this.#steps);
    const acpPrev = prev >= 0 ? this.#alpha(prev) : 1;
    const pred = this.config.predictionType;
    const [x0x, x0m] = ddpmX0(pred, acp);
    const [ex, em] = ddpmEps(pred, acp);
    // prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps
    const a = Math.sqrt(acpPrev), s = Math.sqrt(1 - acpPrev);
    return lincomb([[a * x0x + s * ex, sample], [a * x0m + s * em, modelOutput]]);
  }

  addNoise(original: Tensor, noise: Tensor, t: number): Tensor {
    const acp = this.#alpha(t);
    return lincomb([[Math.sqrt(acp), original], [Math.sqrt(1 - acp), noise]]);
  }

  #alpha(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new LorakitError(`sampler ${this.name}: timestep ${t} is not a training timestep`);
    }
    return this.alphasCumprod[t];
  }

  dispose(): void {}
}
