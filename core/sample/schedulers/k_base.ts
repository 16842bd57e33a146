/**
 * What the k-diffusion-style samplers (lms, euler, euler_a, heun, dpm_2, dpm_2_a) share: the
 * float32 sigma tables, the U-Net input scaling `x / sqrt(sigma^2 + 1)`, the step index (found from
 * the first timestep seen, then advanced once per `step`, which is what diffusers' index counters
 * amount to for a run over the schedule, repeated second-order timesteps included), and
 * `add_noise` (x + sigma * noise).
 *
 * @module
 */
import { scale, type Tensor } from "../../../gpu/mod.ts";
import {
  alphasCumprod,
  checkSteps,
  type ScheduleConfig,
  sigmaToT,
  trainSigmas,
} from "./schedule.ts";
import { lincomb, type Scheduler, unknownTimestep } from "./scheduler.ts";

/** Base class of the sigma-parameterised samplers. */
export abstract class KScheduler implements Scheduler {
  abstract readonly name: string;
  abstract readonly drawsNoise: boolean;
  readonly config: Readonly<ScheduleConfig>;
  /** Training-step sigmas (float32 values). */
  protected readonly trainSigmas: Float64Array;
  /** Their float32 logs (diffusers' `log_sigmas`). */
  protected readonly logSigmas: Float64Array;
  timesteps: Float64Array = new Float64Array(0);
  /** The sigma schedule matching `timesteps` (layout per sampler). */
  sigmas: Float64Array = new Float64Array(0);
  /** Index of the current step in `timesteps`, null before the first call. */
  protected stepIndex: number | null = null;

  constructor(config: ScheduleConfig) {
    this.config = Object.freeze({ ...config });
    this.trainSigmas = trainSigmas(alphasCumprod(config));
    this.logSigmas = this.trainSigmas.map((s) => Math.fround(Math.log(s)));
  }

  /** max sigma (kohya's default "linspace" spacing). */
  get initNoiseSigma(): number {
    let m = 0;
    for (const s of this.sigmas) m = Math.max(m, s);
    return m;
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.config);
    this.dispose();
    this.stepIndex = null;
    this.schedule(steps);
  }

  /** Fill `timesteps` and `sigmas` for `steps` steps and reset per-run state. */
  protected abstract schedule(steps: number): void;

  /** The sigma the U-Net input is scaled by at step `index`. */
  protected inputSigma(index: number): number {
    return this.sigmas[index];
  }

  /**
   * Where `t` sits in the schedule: the first call looks it up (the second of repeated entries,
   * as diffusers does, so img2img starting on a repeated timestep begins a first-order step).
   */
  protected indexFor(t: number): number {
    if (this.stepIndex === null) this.stepIndex = this.lookup(t);
    return this.stepIndex;
  }

  /** Position of `t` by diffusers' first-call rule. */
  protected lookup(t: number): number {
    const hits: number[] = [];
    this.timesteps.forEach((v, i) => v === t && hits.push(i));
    if (hits.length === 0) throw unknownTimestep(this.name, t, this.timesteps);
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /** Move on after a step. */
  protected advance(): void {
    this.stepIndex = (this.stepIndex ?? 0) + 1;
  }

  scaleModelInput(sample: Tensor, t: number): Tensor {
    const sigma = this.inputSigma(this.indexFor(t));
    return scale(sample, 1 / Math.sqrt(sigma * sigma + 1));
  }

  abstract step(modelOutput: Tensor, t: number, sample: Tensor, noise?: Tensor): Tensor;

  addNoise(original: Tensor, noise: Tensor, t: number): Tensor {
    return lincomb([[1, original], [this.sigmas[this.lookup(t)], noise]]);
  }

  /** diffusers' `sigma_to_t` on this schedule's float32 log-sigmas, rounded to float32. */
  protected sigmaToT(sigma: number): number {
    return Math.fround(sigmaToT(Math.fround(sigma), this.logSigmas));
  }

  dispose(): void {}
}

/**
 * [coefficient of sample, of model output] of the ODE derivative `(x - x0) / sigmaDiv` where x0
 * is predicted at `sigmaX0` (the samplers differ in which sigma each uses).
 */
export function derivativeCoeffs(
  pred: "epsilon" | "v_prediction",
  sigmaX0: number,
  sigmaDiv: number,
): [number, number] {
  if (pred === "epsilon") return [0, sigmaX0 / sigmaDiv];
  const s2 = sigmaX0 * sigmaX0 + 1;
  return [(1 - 1 / s2) / sigmaDiv, sigmaX0 / Math.sqrt(s2) / sigmaDiv];
}
