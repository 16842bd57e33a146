/**
 * What every sampler of gen_img looks like to the generation loop, and the two tools they are
 * built from: `lincomb` (a scheduler update is a linear combination of GPU tensors with scalar
 * coefficients computed on the host, so a step never reads the GPU back) and `hold` (history a
 * multistep sampler keeps across steps must outlive the caller's per-step `scope`).
 *
 * @module
 */
import { addScaled, scale, scope, type Tensor } from "../../../gpu/mod.ts";
import { LorakitError } from "../../errors.ts";
import type { ScheduleConfig } from "./schedule.ts";

/** A diffusers-equivalent scheduler driving one generation (state lives between steps). */
export interface Scheduler {
  /** kohya's `--sampler` name (canonical, without a `k_` prefix). */
  readonly name: string;
  /** The arguments it was built with. */
  readonly config: Readonly<ScheduleConfig>;
  /**
   * Whether `step` consumes one noise draw per call (euler, euler_a, dpm_2_a draw on every call,
   * as diffusers does; euler with `s_churn` 0 draws and discards, so draws stay aligned).
   */
  readonly drawsNoise: boolean;
  /** The timesteps `setTimesteps` chose, in visiting order (float64). */
  readonly timesteps: Float64Array;
  /** Standard deviation of the starting noise (`init_noise_sigma`). */
  readonly initNoiseSigma: number;
  /** Choose the schedule for `steps` inference steps and reset all state. */
  setTimesteps(steps: number): void;
  /** The U-Net input for `sample` at timestep `t` (k-samplers divide by sqrt(sigma^2 + 1)). */
  scaleModelInput(sample: Tensor, t: number): Tensor;
  /**
   * One update: the previous (less noisy) sample from the guided model output at `t`. `noise` is
   * this call's draw when `drawsNoise`. Returns a new tensor; the inputs stay the caller's.
   */
  step(modelOutput: Tensor, t: number, sample: Tensor, noise?: Tensor): Tensor;
  /** `original` noised to timestep `t` (img2img's starting latents). */
  addNoise(original: Tensor, noise: Tensor, t: number): Tensor;
  /** Release the tensors kept between steps. */
  dispose(): void;
}

/**
 * Base of the samplers that step on the alphas_cumprod schedule itself (DDIM, PNDM, DPM-Solver):
 * they draw no noise, start from noise of standard deviation 1 and take the U-Net input unscaled.
 */
export abstract class UnscaledScheduler implements Scheduler {
  abstract readonly name: string;
  readonly drawsNoise = false;
  readonly initNoiseSigma = 1;
  readonly config: Readonly<ScheduleConfig>;
  timesteps: Float64Array = new Float64Array(0);

  constructor(config: ScheduleConfig) {
    this.config = Object.freeze({ ...config });
  }

  /** No input scaling: another handle on `sample`. */
  scaleModelInput(sample: Tensor, _t: number): Tensor {
    return sample.retain();
  }

  abstract setTimesteps(steps: number): void;
  abstract step(modelOutput: Tensor, t: number, sample: Tensor, noise?: Tensor): Tensor;
  abstract addNoise(original: Tensor, noise: Tensor, t: number): Tensor;
  abstract dispose(): void;
}

/** sum_i c_i * x_i on the GPU (same shapes); terms with a zero coefficient are skipped. */
export function lincomb(terms: ReadonlyArray<readonly [number, Tensor]>): Tensor {
  const live = terms.filter(([c]) => c !== 0);
  if (live.length === 0) {
    if (terms.length === 0) throw new Error("lincomb: no terms");
    return scale(terms[0][1], 0);
  }
  return scope(() => {
    const [[c0, x0], ...rest] = live;
    if (rest.length === 0) return scale(x0, c0);
    let acc = c0 === 1 ? addScaled(x0, rest[0][1], rest[0][0]) : addScaled(
      scale(x0, c0),
      rest[0][1],
      rest[0][0],
    );
    for (const [c, x] of rest.slice(1)) acc = addScaled(acc, x, c);
    return acc;
  });
}

/** A handle on `t` that no enclosing `scope` will dispose (the caller must dispose it). */
export function hold(t: Tensor): Tensor {
  return t.retain().keep();
}

/** Dispose a held tensor, if any; returns null for `x = release(x)`. */
export function release(t: Tensor | null | undefined): null {
  t?.dispose();
  return null;
}

/** The noise a noise-drawing sampler needs, or a LorakitError naming the sampler. */
export function requireNoise(name: string, noise: Tensor | undefined): Tensor {
  if (!noise) {
    throw new LorakitError(
      `sampler ${name}: this step draws noise; pass the seed's noise for every step call`,
    );
  }
  return noise;
}

/** A LorakitError for a timestep the schedule does not contain. */
export function unknownTimestep(name: string, t: number, timesteps: Float64Array): LorakitError {
  return new LorakitError(
    `sampler ${name}: timestep ${t} is not in its schedule [${Array.from(timesteps).join(", ")}]` +
      " (call setTimesteps first and pass its timesteps)",
  );
}

/**
 * x0 and eps coefficients of a model output for the DDPM-parameterised samplers (DDIM, PNDM,
 * DPM-Solver): with alpha = sqrt(acp), sigma = sqrt(1 - acp),
 * epsilon: x0 = (x - sigma e) / alpha; v: x0 = alpha x - sigma v, eps = alpha v + sigma x.
 * Returned as [coefficient of sample, coefficient of model output].
 */
export function ddpmX0(pred: "epsilon" | "v_prediction", acp: number): [number, number] {
  const a = Math.sqrt(acp), s = Math.sqrt(1 - acp);
  return pred === "epsilon" ? [1 / a, -s / a] : [a, -s];
}

/** The eps coefficients [of sample, of model output] (see `ddpmX0`). */
export function ddpmEps(pred: "epsilon" | "v_prediction", acp: number): [number, number] {
  const a = Math.sqrt(acp), s = Math.sqrt(1 - acp);
  return pred === "epsilon" ? [0, 1] : [s, a];
}

/**
 * x0 for the sigma-parameterised (k-diffusion) samplers as [coefficient of sample, of model
 * output]: epsilon: x - sigma e; v: x / (sigma^2 + 1) - sigma / sqrt(sigma^2 + 1) v.
 */
export function kX0(pred: "epsilon" | "v_prediction", sigma: number): [number, number] {
  if (pred === "epsilon") return [1, -sigma];
  return [1 / (sigma * sigma + 1), -sigma / Math.sqrt(sigma * sigma + 1)];
}
