/**
 * The noise schedule every gen_img sampler shares, computed on the host the way diffusers 0.21
 * computes it in PyTorch float32: scaled-linear betas (`linspace(sqrt(b0), sqrt(b1), T) ** 2`),
 * `alphas_cumprod` (a float64 running product rounded to float32 per entry, as torch's CPU
 * cumprod does), the k-diffusion sigmas `sqrt((1 - a) / a)`, numpy's `interp`, and the
 * sigma -> timestep inversion the DPM2 samplers use. Values that diffusers keeps in float32 are
 * rounded with `Math.fround` here so timesteps match its to about 1e-7.
 *
 * @module
 */
import { LorakitError } from "../../errors.ts";

/** What the model predicts: the noise (SD 1.x, SD 2.x base) or the velocity (SD 2.x 768-v). */
export type PredictionType = "epsilon" | "v_prediction";

/** The scheduler arguments kohya's gen_img passes to diffusers. */
export interface ScheduleConfig {
  /** Training timesteps (1000). */
  numTrainTimesteps: number;
  /** First beta of the scaled-linear schedule (0.00085). */
  betaStart: number;
  /** Last beta (0.012). */
  betaEnd: number;
  /** `prediction_type` (`v_prediction` under `--v_parameterization`). */
  predictionType: PredictionType;
  /** `steps_offset`: 1 for every sampler but dpmsingle, which kohya leaves at 0. */
  stepsOffset: number;
}

/** kohya's `SCHEDULER_*` constants with epsilon prediction and steps_offset 1. */
export const KOHYA_SCHEDULE: Readonly<ScheduleConfig> = Object.freeze({
  numTrainTimesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
  predictionType: "epsilon",
  stepsOffset: 1,
});

const f = Math.fround;

/**
 * `alphas_cumprod` [T] of the scaled-linear schedule, each value a float32 (held in f64).
 * torch.linspace in float32 fills the first half from the start and the second from the end.
 */
export function alphasCumprod(cfg: ScheduleConfig): Float64Array {
  const n = cfg.numTrainTimesteps;
  if (!Number.isInteger(n) || n < 2) {
    throw new LorakitError(`scheduler: num_train_timesteps must be an integer >= 2, found ${n}`);
  }
  const start = f(Math.sqrt(cfg.betaStart)), end = f(Math.sqrt(cfg.betaEnd));
  const step = f(f(end - start) / (n - 1));
  const half = Math.floor(n / 2);
  const out = new Float64Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) {
    const root = i < half ? f(start + f(step * i)) : f(end - f(step * (n - 1 - i)));
    const beta = f(root * root);
    acc *= f(1 - beta);
    out[i] = f(acc);
  }
  return out;
}

/** k-diffusion sigmas `sqrt((1 - a) / a)` per training timestep, in float32. */
export function trainSigmas(acp: Float64Array): Float64Array {
  return acp.map((a) => f(Math.sqrt(f(f(1 - a) / a))));
}

/** numpy's `linspace(start, stop, num)` in float64 (endpoint included). */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  if (num === 1) {
    out[0] = start;
    return out;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  out[num - 1] = stop;
  return out;
}

/** numpy's `round` (half to even). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy's `interp(x, arange(len(fp)), fp)` (clamped at both ends). */
export function interpIndex(x: number, fp: Float64Array): number {
  const last = fp.length - 1;
  if (x <= 0) return fp[0];
  if (x >= last) return fp[last];
  const j = Math.floor(x);
  return (fp[j + 1] - fp[j]) * (x - j) + fp[j];
}

/** Check a step count the way every scheduler needs it. */
export function checkSteps(steps: number, cfg: ScheduleConfig): void {
  if (!Number.isInteger(steps) || steps < 1 || steps > cfg.numTrainTimesteps) {
    throw new LorakitError(
      `--steps: expected an integer from 1 to ${cfg.numTrainTimesteps}, found ${steps}`,
    );
  }
}

/** "leading" spacing (DDIM, PNDM): `arange(n) * (T // n) + steps_offset`, ascending. */
export function leadingTimesteps(steps: number, cfg: ScheduleConfig): Float64Array {
  const ratio = Math.floor(cfg.numTrainTimesteps / steps);
  return Float64Array.from({ length: steps }, (_, i) => i * ratio + cfg.stepsOffset);
}

/**
 * The k-diffusion samplers' schedule ("linspace" spacing): timesteps
 * `linspace(0, T - 1, n)` descending, and their sigmas interpolated from the training sigmas,
 * rounded to float32, with a final 0 appended (n + 1 values).
 */
export function kSchedule(
  steps: number,
  cfg: ScheduleConfig,
  sigmasTrain: Float64Array,
): { timesteps: Float64Array; sigmas: Float64Array } {
  const timesteps = linspace(0, cfg.numTrainTimesteps - 1, steps).reverse();
  const sigmas = new Float64Array(steps + 1);
  timesteps.forEach((t, i) => sigmas[i] = f(interpIndex(t, sigmasTrain)));
  return { timesteps, sigmas };
}

/**
 * diffusers' `sigma_to_t`: the fractional training timestep whose log-sigma (linearly
 * interpolated between neighbours) equals log(sigma); clamped to [0, T - 1].
 */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const logSigma = Math.log(sigma);
  // low index: the last training step whose log-sigma is <= log(sigma) (cumsum/argmax in torch).
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (logSigma - logSigmas[i] >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const lo = logSigmas[low], hi = logSigmas[low + 1];
  const w = Math.min(1, Math.max(0, (lo - logSigma) / (lo - hi)));
  return (1 - w) * low + w * (low + 1);
}
