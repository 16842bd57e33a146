/**
 * Linear multistep (diffusers `LMSDiscreteScheduler`, kohya's `lms`/`k_lms`), order 4: each step
 * adds the last (up to) four ODE derivatives weighted by the integrals, over [sigma_i,
 * sigma_{i+1}], of their Lagrange basis polynomials in sigma. diffusers integrates with scipy's
 * `quad`; the integrands are polynomials of degree <= 3, so 3-point Gauss-Legendre quadrature
 * here is exact.
 *
 * @module
 */
import type { Tensor } from "../../../gpu/mod.ts";
import { derivativeCoeffs, KScheduler } from "./k_base.ts";
import { kSchedule } from "./schedule.ts";
import { hold, lincomb } from "./scheduler.ts";

/** diffusers' default (and kohya's) LMS order. */
export const LMS_ORDER = 4;

const GL_NODES = [-Math.sqrt(3 / 5), 0, Math.sqrt(3 / 5)];
const GL_WEIGHTS = [5 / 9, 8 / 9, 5 / 9];

/**
 * diffusers' `get_lms_coefficient(order, t, current_order)`: the integral from sigmas[t] to
 * sigmas[t + 1] of prod_{k != current} (tau - sigmas[t - k]) / (sigmas[t - current] - sigmas[t - k]).
 */
export function lmsCoefficient(
  sigmas: ArrayLike<number>,
  order: number,
  t: number,
  current: number,
): number {
  const basis = (tau: number): number => {
    let prod = 1;
    for (let k = 0; k < order; k++) {
      if (k === current) continue;
      prod *= (tau - sigmas[t - k]) / (sigmas[t - current] - sigmas[t - k]);
    }
    return prod;
  };
  const a = sigmas[t], b = sigmas[t + 1];
  const half = (b - a) / 2, centre = (a + b) / 2;
  let sum = 0;
  for (let q = 0; q < GL_NODES.length; q++) {
    sum += GL_WEIGHTS[q] * basis(centre + half * GL_NODES[q]);
  }
  return sum * half;
}

/** diffusers' LMSDiscreteScheduler. */
export class LmsScheduler extends KScheduler {
  readonly name = "lms";
  readonly drawsNoise = false;
  /** Derivatives of the last steps, oldest first (at most `LMS_ORDER`). */
  #derivatives: Tensor[] = [];

  protected schedule(steps: number): void {
    const { timesteps, sigmas } = kSchedule(steps, this.config, this.trainSigmas);
    this.timesteps = timesteps.map(Math.fround);
    this.sigmas = sigmas;
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    const i = this.indexFor(t);
    const sigma = this.sigmas[i];
    const [dx, dm] = derivativeCoeffs(this.config.predictionType, sigma, sigma);
    this.#derivatives.push(hold(lincomb([[dx, sample], [dm, modelOutput]])));
    if (this.#derivatives.length > LMS_ORDER) this.#derivatives.shift()!.dispose();
    const order = Math.min(i + 1, LMS_ORDER);
    const terms: [number, Tensor][] = [[1, sample]];
    const newestFirst = [...this.#derivatives].reverse();
    for (let c = 0; c < order; c++) {
      terms.push([lmsCoefficient(this.sigmas, order, i, c), newestFirst[c]]);
    }
    this.advance();
    return lincomb(terms);
  }

  override dispose(): void {
    for (const d of this.#derivatives) d.dispose();
    this.#derivatives = [];
  }
}
