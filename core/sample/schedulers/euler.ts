/**
 * Euler and Euler-ancestral (diffusers `EulerDiscreteScheduler`, `EulerAncestralDiscreteScheduler`;
 * kohya's `euler`/`k_euler` and `euler_a`/`k_euler_a`). Both draw one noise per step like diffusers:
 * Euler with kohya's `s_churn` 0 never uses it, Euler-a adds `noise * sigma_up` after stepping to
 * `sigma_down`.
 *
 * @module
 */
import type { Tensor } from "../../../gpu/mod.ts";
import { derivativeCoeffs, KScheduler } from "./k_base.ts";
import { kSchedule } from "./schedule.ts";
import { lincomb, requireNoise } from "./scheduler.ts";

/** Shared schedule: float32 timesteps `linspace(0, T-1, n)` descending, sigmas + final 0. */
abstract class EulerBase extends KScheduler {
  protected schedule(steps: number): void {
    const { timesteps, sigmas } = kSchedule(steps, this.config, this.trainSigmas);
    this.timesteps = timesteps.map(Math.fround);
    this.sigmas = sigmas;
  }
}

/** diffusers' EulerDiscreteScheduler with s_churn 0 (what kohya runs). */
export class EulerScheduler extends EulerBase {
  readonly name = "euler";
  readonly drawsNoise = true;

  step(modelOutput: Tensor, t: number, sample: Tensor, _noise?: Tensor): Tensor {
    const i = this.indexFor(t);
    const sigma = this.sigmas[i];
    const [dx, dm] = derivativeCoeffs(this.config.predictionType, sigma, sigma);
    const dt = this.sigmas[i + 1] - sigma;
    this.advance();
    return lincomb([[1 + dt * dx, sample], [dt * dm, modelOutput]]);
  }
}

/** diffusers' EulerAncestralDiscreteScheduler (eta 1). */
export class EulerAncestralScheduler extends EulerBase {
  readonly name = "euler_a";
  readonly drawsNoise = true;

  step(modelOutput: Tensor, t: number, sample: Tensor, noise?: Tensor): Tensor {
    const n = requireNoise(this.name, noise);
    const i = this.indexFor(t);
    const from = this.sigmas[i], to = this.sigmas[i + 1];
    const up = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    const down = Math.sqrt(Math.max(0, to * to - up * up));
    const [dx, dm] = derivativeCoeffs(this.config.predictionType, from, from);
    const dt = down - from;
    this.advance();
    return lincomb([[1 + dt * dx, sample], [dt * dm, modelOutput], [up, n]]);
  }
}
