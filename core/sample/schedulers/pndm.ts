/**
 * PNDM (diffusers `PNDMScheduler`, kohya's `pndm`) with its defaults as kohya leaves them:
 * `skip_prk_steps` False, so the first three "leading" steps are pseudo Runge-Kutta (four U-Net
 * calls each: 12 calls over diffusers' odd PRK timestep list), then linear multistep (PLMS, order
 * 4) for the rest; `set_alpha_to_one` False (the final step lands on alphas_cumprod[0]).
 *
 * @module
 */
import type { Tensor } from "../../../gpu/mod.ts";
import { LorakitError } from "../../errors.ts";
import { alphasCumprod, checkSteps, leadingTimesteps, type ScheduleConfig } from "./schedule.ts";
import { hold, lincomb, release, UnscaledScheduler } from "./scheduler.ts";

/** Linear-multistep order (diffusers' `pndm_order`). */
const PNDM_ORDER = 4;

/** diffusers' PNDMScheduler with PRK warm-up. */
export class PndmScheduler extends UnscaledScheduler {
  readonly name = "pndm";
  readonly alphasCumprod: Float64Array;
  /** The PRK part of `timesteps`. */
  prkTimesteps: Float64Array = new Float64Array(0);
  #ratio = 0;
  #counter = 0;
  #ets: Tensor[] = [];
  #curModelOutput: Tensor | null = null;
  #curSample: Tensor | null = null;

  constructor(config: ScheduleConfig) {
    super(config);
    this.alphasCumprod = alphasCumprod(config);
  }

  setTimesteps(steps: number): void {
    checkSteps(steps, this.config);
    if (steps < PNDM_ORDER) {
      // diffusers' PRK timestep arithmetic needs at least 4 steps (it fails to broadcast).
      throw new LorakitError(
        `sampler pndm: expected --steps of at least ${PNDM_ORDER} (its Runge-Kutta warm-up ` +
          `needs ${PNDM_ORDER}), found ${steps}`,
      );
    }
    this.dispose();
    this.#ratio = Math.floor(this.config.numTrainTimesteps / steps);
    const base = leadingTimesteps(steps, this.config);
    const half = Math.floor(this.#ratio / 2);
    // _timesteps[-4:].repeat(2) + tile([0, T // n // 2], 4); then [:-1].repeat(2)[1:-1] reversed.
    const prk: number[] = [];
    base.slice(-PNDM_ORDER).forEach((t) => prk.push(t, t + half));
    const doubled = prk.slice(0, -1).flatMap((t) => [t, t]).slice(1, -1).reverse();
    this.prkTimesteps = Float64Array.from(doubled);
    const plms = Array.from(base.slice(0, -3)).reverse();
    this.timesteps = Float64Array.from([...doubled, ...plms]);
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    if (this.#ratio === 0) throw new LorakitError("sampler pndm: call setTimesteps first");
    const out = this.#counter < this.prkTimesteps.length
      ? this.#stepPrk(modelOutput, t, sample)
      : this.#stepPlms(modelOutput, t, sample);
    this.#counter++;
    return out;
  }

  #stepPrk(mo: Tensor, t: number, sample: Tensor): Tensor {
    const c = this.#counter;
    const prevT = t - (c % 2 ? 0 : Math.floor(this.#ratio / 2));
    const at = this.prkTimesteps[Math.floor(c / 4) * 4];
    let model: [number, Tensor][] = [[1, mo]];
    const acc = (w: number): void => {
      const next = this.#curModelOutput
        ? lincomb([[1, this.#curModelOutput], [w, mo]])
        : lincomb([[w, mo]]);
      release(this.#curModelOutput);
      this.#curModelOutput = hold(next);
      next.dispose();
    };
    if (c % 4 === 0) {
      acc(1 / 6);
      this.#ets.push(hold(mo));
      release(this.#curSample);
      this.#curSample = hold(sample);
    } else if (c % 4 === 1 || c % 4 === 2) {
      acc(1 / 3);
    } else {
      model = [[1, this.#curModelOutput!], [1 / 6, mo]];
    }
    const out = this.#prevSample(this.#curSample ?? sample, at, prevT, model);
    if (c % 4 === 3) this.#curModelOutput = release(this.#curModelOutput);
    return out;
  }

  #stepPlms(mo: Tensor, t: number, sample: Tensor): Tensor {
    // After the PRK warm-up the counter is past 1, so diffusers' skip_prk special cases never run.
    const prevT = t - this.#ratio;
    while (this.#ets.length > 3) this.#ets.shift()!.dispose();
    this.#ets.push(hold(mo));
    const e = this.#ets, n = e.length;
    let model: [number, Tensor][];
    if (n === 1) model = [[1, e[0]]];
    else if (n === 2) model = [[3 / 2, e[1]], [-1 / 2, e[0]]];
    else if (n === 3) model = [[23 / 12, e[2]], [-16 / 12, e[1]], [5 / 12, e[0]]];
    else model = [[55 / 24, e[3]], [-59 / 24, e[2]], [37 / 24, e[1]], [-9 / 24, e[0]]];
    return this.#prevSample(sample, t, prevT, model);
  }

  /** diffusers' `_get_prev_sample` with the model output given as a linear combination. */
  #prevSample(
    sample: Tensor,
    t: number,
    prevT: number,
    model: [number, Tensor][],
  ): Tensor {
    const at = this.#alpha(t);
    const aPrev = prevT >= 0 ? this.#alpha(prevT) : this.alphasCumprod[0];
    const bt = 1 - at, bPrev = 1 - aPrev;
    const sampleCoeff = Math.sqrt(aPrev / at);
    const denom = at * Math.sqrt(bPrev) + Math.sqrt(at * bt * aPrev);
    const k = (aPrev - at) / denom;
    // v-prediction: the combined output becomes eps = sqrt(a) v + sqrt(1 - a) x.
    const v = this.config.predictionType === "v_prediction";
    const mScale = v ? Math.sqrt(at) : 1;
    const xFromModel = v ? Math.sqrt(bt) : 0;
    return lincomb([
      [sampleCoeff - k * xFromModel, sample],
      ...model.map(([w, x]): [number, Tensor] => [-k * mScale * w, x]),
    ]);
  }

  #alpha(t: number): number {
    if (!Number.isInteger(t) || t < 0 || t >= this.alphasCumprod.length) {
      throw new LorakitError(`sampler pndm: timestep ${t} is not a training timestep`);
    }
    return this.alphasCumprod[t];
  }

  addNoise(original: Tensor, noise: Tensor, t: number): Tensor {
    const acp = this.#alpha(t);
    return lincomb([[Math.sqrt(acp), original], [Math.sqrt(1 - acp), noise]]);
  }

  dispose(): void {
    for (const e of this.#ets) e.dispose();
    this.#ets = [];
    this.#curModelOutput = release(this.#curModelOutput);
    this.#curSample = release(this.#curSample);
    this.#counter = 0;
  }
}
