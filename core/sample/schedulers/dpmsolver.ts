/**
 * DPM-Solver, second order, midpoint solver type, with `lower_order_final` (diffusers 0.21
 * defaults), in both of diffusers' forms that kohya exposes:
 * - multistep (`DPMSolverMultistepScheduler`): `dpmsolver` (noise-prediction form) and
 *   `dpmsolver++` (data-prediction form), selected by kohya's `algorithm_type`;
 * - singlestep (`DPMSolverSinglestepScheduler`, kohya's `dpmsingle`, algorithm `dpmsolver++`):
 *   orders alternate 1, 2, 1, 2, ...; each second-order step restarts from the sample the
 *   preceding first-order step started from.
 * Timesteps are "linspace": `round(linspace(0, T - 1, n + 1))` descending without the last (0);
 * the step after the final timestep lands on timestep 0. The tables alpha_t, sigma_t and lambda_t
 * are float32 as in diffusers.
 *
 * @module
 */
import type { Tensor } from "../../../gpu/mod.ts";
import {
  alphasCumprod,
  checkSteps,
  linspace,
  roundHalfEven,
  type ScheduleConfig,
} from "./schedule.ts";
import { hold, lincomb, release, UnscaledScheduler } from "./scheduler.ts";

/** diffusers' `algorithm_type` values kohya uses. */
export type DpmAlgorithm = "dpmsolver" | "dpmsolver++";

const f = Math.fround;

/** Shared tables, timesteps and the first-order update. */
abstract class DpmSolverBase extends UnscaledScheduler {
  readonly algorithm: DpmAlgorithm;
  readonly alphaT: Float64Array;
  readonly sigmaT: Float64Array;
  readonly lambdaT: Float64Array;
  /** Converted model outputs [older, newer] (solver order 2). */
  protected outputs: (Tensor | null)[] = [null, null];

  constructor(config: ScheduleConfig, algorithm: DpmAlgorithm) {
    super(config);
    this.algorithm = algorithm;
    const acp = alphasCumprod(config);
    this.alphaT = acp.map((a) => f(Math.sqrt(a)));
    this.sigmaT = acp.map((a) => f(Math.sqrt(f(1 - a))));
    this.lambdaT = this.alphaT.map((a, i) => f(f(Math.log(a)) - f(Math.log(this.sigmaT[i]))));
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.config);
    this.dispose();
    const T = this.config.numTrainTimesteps;
    const ts = Array.from(linspace(0, T - 1, steps + 1), roundHalfEven).reverse().slice(0, -1);
    // np.unique keeps the first occurrence of duplicates (many steps).
    this.timesteps = Float64Array.from(ts.filter((t, i) => ts.indexOf(t) === i));
    this.reset();
  }

  /** Per-run state besides the stored outputs. */
  protected abstract reset(): void;

  /** Index of `t` (the last index when absent, as diffusers does). */
  protected indexOf(t: number): number {
    const i = this.timesteps.indexOf(t);
    return i < 0 ? this.timesteps.length - 1 : i;
  }

  /** Where the step from index `i` lands. */
  protected prevTimestep(i: number): number {
    return i === this.timesteps.length - 1 ? 0 : this.timesteps[i + 1];
  }

  /** diffusers' `convert_model_output`: x0 (dpmsolver++) or eps (dpmsolver), stored. */
  protected convert(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    const a = this.alphaT[t], s = this.sigmaT[t];
    const v = this.config.predictionType === "v_prediction";
    if (this.algorithm === "dpmsolver++") {
      const out = v
        ? lincomb([[a, sample], [-s, modelOutput]])
        : lincomb([[1 / a, sample], [-s / a, modelOutput]]);
      return hold(out);
    }
    return v ? hold(lincomb([[a, modelOutput], [s, sample]])) : hold(modelOutput);
  }

  /** Push a converted output, dropping the oldest. */
  protected push(m: Tensor): void {
    release(this.outputs[0]);
    this.outputs = [this.outputs[1], m];
  }

  /**
   * [coefficient of x, of D0, of D1] of a DPM-Solver update from timestep `s` (h measured from
   * `s`) to `t`: x_t = c_x x + c_d (D0 + D1 / 2).
   */
  protected update(s: number, t: number): [number, number] {
    const h = this.lambdaT[t] - this.lambdaT[s];
    if (this.algorithm === "dpmsolver++") {
      return [this.sigmaT[t] / this.sigmaT[s], -this.alphaT[t] * Math.expm1(-h)];
    }
    return [this.alphaT[t] / this.alphaT[s], -this.sigmaT[t] * Math.expm1(h)];
  }

  addNoise(original: Tensor, noise: Tensor, t: number): Tensor {
    return lincomb([[this.alphaT[t], original], [this.sigmaT[t], noise]]);
  }

  dispose(): void {
    for (const m of this.outputs) release(m);
    this.outputs = [null, null];
  }
}

/** diffusers' DPMSolverMultistepScheduler (order 2, midpoint, lower_order_final). */
export class DpmSolverMultistepScheduler extends DpmSolverBase {
  readonly name: string;
  #lowerOrderNums = 0;

  constructor(config: ScheduleConfig, algorithm: DpmAlgorithm) {
    super(config, algorithm);
    this.name = algorithm;
  }

  protected reset(): void {
    this.#lowerOrderNums = 0;
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    const i = this.indexOf(t);
    const n = this.timesteps.length;
    const prevT = this.prevTimestep(i);
    const lowerOrderFinal = i === n - 1 && n < 15;
    this.push(this.convert(modelOutput, t, sample));
    const [m1, m0] = this.outputs as [Tensor | null, Tensor];
    let out: Tensor;
    if (this.#lowerOrderNums < 1 || lowerOrderFinal || m1 === null) {
      const [cx, cd] = this.update(t, prevT);
      out = lincomb([[cx, sample], [cd, m0]]);
    } else {
      // D1 = (m0 - m1) / r0 with r0 = h0 / h; x_t = cx x + cd (D0 + D1 / 2).
      const s1 = this.timesteps[i - 1];
      const h = this.lambdaT[prevT] - this.lambdaT[t];
      const h0 = this.lambdaT[t] - this.lambdaT[s1];
      const [cx, cd] = this.update(t, prevT);
      const d1 = h / h0 / 2;
      out = lincomb([[cx, sample], [cd * (1 + d1), m0], [-cd * d1, m1]]);
    }
    if (this.#lowerOrderNums < 2) this.#lowerOrderNums++;
    return out;
  }
}

/** diffusers' DPMSolverSinglestepScheduler (order 2, midpoint, dpmsolver++ by default). */
export class DpmSolverSinglestepScheduler extends DpmSolverBase {
  readonly name = "dpmsingle";
  /** Solver order per step: 1, 2, 1, 2, ... (lower_order_final). */
  orderList: number[] = [];
  #sample: Tensor | null = null;

  constructor(config: ScheduleConfig, algorithm: DpmAlgorithm = "dpmsolver++") {
    super(config, algorithm);
  }

  protected reset(): void {
    const n = this.timesteps.length;
    this.orderList = Array.from({ length: n }, (_, k) => (k % 2 === 0 ? 1 : 2));
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    const i = this.indexOf(t);
    const prevT = this.prevTimestep(i);
    this.push(this.convert(modelOutput, t, sample));
    const [m1, m0] = this.outputs as [Tensor | null, Tensor];
    // img2img may start on a second-order step with no earlier output: drop to first order.
    const order = this.orderList[i] === 2 && m1 !== null ? 2 : 1;
    if (order === 1) {
      release(this.#sample);
      this.#sample = hold(sample);
      const [cx, cd] = this.update(t, prevT);
      return lincomb([[cx, this.#sample], [cd, m0]]);
    }
    // From the first-order step's start s1 to prevT: D0 = m1, D1 = (m0 - m1) / r0, r0 = h0 / h.
    const s1 = this.timesteps[i - 1];
    const h = this.lambdaT[prevT] - this.lambdaT[s1];
    const h0 = this.lambdaT[t] - this.lambdaT[s1];
    const [cx, cd] = this.update(s1, prevT);
    const d1 = h / h0 / 2;
    return lincomb([[cx, this.#sample!], [cd * (1 - d1), m1!], [cd * d1, m0]]);
  }

  override dispose(): void {
    super.dispose();
    this.#sample = release(this.#sample);
  }
}
