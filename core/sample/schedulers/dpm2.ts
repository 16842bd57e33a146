/**
 * DPM-Solver-2 in k-diffusion's form (diffusers `KDPM2DiscreteScheduler`, kohya's `dpm_2`/`k_dpm_2`)
 * and its ancestral variant (`KDPM2AncestralDiscreteScheduler`, `dpm_2_a`/`k_dpm_2_a`). Each step
 * first evaluates the model at the sigma halfway (in log space) to the next one, so the timestep
 * list interleaves those midpoint timesteps (`sigma_to_t`) with the regular ones. Sigma tables are
 * computed with float32 rounding after each tensor op, as diffusers does in torch, so the
 * midpoint timesteps match its to float32 precision.
 *
 * @module
 */
import type { Tensor } from "../../../gpu/mod.ts";
import { derivativeCoeffs, KScheduler } from "./k_base.ts";
import { kSchedule } from "./schedule.ts";
import { hold, lincomb, release, requireNoise } from "./scheduler.ts";

const f = Math.fround;

/** exp(lerp(log a, log b, 0.5)) in float32 (0 when either is 0, as torch gives via -inf). */
function logMid(a: number, b: number): number {
  if (a === 0 || b === 0) return 0;
  const la = f(Math.log(a)), lb = f(Math.log(b));
  return f(Math.exp(f(la + f(0.5 * f(lb - la)))));
}

/** `cat([x[:1], x[1:].repeat_interleave(2), x[-1:]])`. */
function interleave(x: Float64Array): Float64Array {
  const out = new Float64Array(2 * x.length);
  out[0] = x[0];
  for (let k = 1; k < x.length; k++) out[2 * k - 1] = out[2 * k] = x[k];
  out[out.length - 1] = x[x.length - 1];
  return out;
}

/** State shared by both: the sample saved by the first-order half of a step. */
abstract class Dpm2Base extends KScheduler {
  /** Sigmas at the log-midpoints, laid out like `sigmas`. */
  sigmasInterpol: Float64Array = new Float64Array(0);
  protected saved: Tensor | null = null;

  /** True when the next call is the first half of a step. */
  get stateInFirstOrder(): boolean {
    return this.saved === null;
  }

  override dispose(): void {
    this.saved = release(this.saved);
  }
}

/** diffusers' KDPM2DiscreteScheduler. */
export class Dpm2Scheduler extends Dpm2Base {
  readonly name = "dpm_2";
  readonly drawsNoise = false;

  protected schedule(steps: number): void {
    const base = kSchedule(steps, this.config, this.trainSigmas);
    const s = base.sigmas, n = s.length;
    // sigmas_interpol[i] = midpoint of sigmas[i] and sigmas[i - 1] (roll(1)); 0 at both ends.
    const mid = Float64Array.from(s, (v, i) => logMid(v, s[(i - 1 + n) % n]));
    this.sigmas = interleave(s);
    this.sigmasInterpol = interleave(mid);
    const ts = base.timesteps.map(f);
    const out: number[] = [ts[0]];
    for (let k = 1; k < ts.length; k++) out.push(this.sigmaToT(mid[k]), ts[k]);
    this.timesteps = Float64Array.from(out);
  }

  protected override inputSigma(index: number): number {
    return this.stateInFirstOrder ? this.sigmas[index] : this.sigmasInterpol[index];
  }

  step(modelOutput: Tensor, t: number, sample: Tensor): Tensor {
    const i = this.indexFor(t);
    const pred = this.config.predictionType;
    this.advance();
    if (this.saved === null) {
      const sigma = this.sigmas[i], interpol = this.sigmasInterpol[i + 1];
      const [dx, dm] = derivativeCoeffs(pred, sigma, sigma);
      const dt = interpol - sigma;
      this.saved = hold(sample);
      return lincomb([[1 + dt * dx, sample], [dt * dm, modelOutput]]);
    }
    const sigma = this.sigmas[i - 1], interpol = this.sigmasInterpol[i];
    const next = this.sigmas[i];
    const [dx, dm] = derivativeCoeffs(pred, interpol, interpol);
    const dt = next - sigma;
    const out = lincomb([[1, this.saved], [dt * dx, sample], [dt * dm, modelOutput]]);
    this.dispose();
    return out;
  }
}

/** diffusers' KDPM2AncestralDiscreteScheduler: noise `sigma_up` after each second half. */
export class Dpm2AncestralScheduler extends Dpm2Base {
  readonly name = "dpm_2_a";
  readonly drawsNoise = true;
  sigmasUp: Float64Array = new Float64Array(0);
  sigmasDown: Float64Array = new Float64Array(0);

  protected schedule(steps: number): void {
    const base = kSchedule(steps, this.config, this.trainSigmas);
    const s = base.sigmas, n = s.length;
    const up = new Float64Array(n), down = new Float64Array(n), mid = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const from2 = f(s[i] * s[i]), to = i + 1 < n ? s[i + 1] : 0, to2 = f(to * to);
      // NaN at the final 0 sigma as in torch (0 / 0); never read.
      up[i] = f(Math.sqrt(f(f(to2 * f(from2 - to2)) / from2)));
      down[i] = i === n - 1 ? 0 : f(Math.sqrt(f(to2 - f(up[i] * up[i]))));
      mid[i] = logMid(s[i], down[i]);
    }
    mid[n - 1] = mid[n - 2] = 0;
    this.sigmas = interleave(s);
    this.sigmasInterpol = interleave(mid);
    this.sigmasUp = interleave(up);
    this.sigmasDown = interleave(down);
    const ts = base.timesteps.map(f);
    const out: number[] = [ts[0]];
    for (let k = 1; k < ts.length; k++) out.push(this.sigmaToT(mid[k - 1]), ts[k]);
    this.timesteps = Float64Array.from(out);
  }

  protected override inputSigma(index: number): number {
    return this.stateInFirstOrder ? this.sigmas[index] : this.sigmasInterpol[index - 1];
  }

  step(modelOutput: Tensor, t: number, sample: Tensor, noise?: Tensor): Tensor {
    const z = requireNoise(this.name, noise);
    const i = this.indexFor(t);
    const pred = this.config.predictionType;
    this.advance();
    if (this.saved === null) {
      const sigma = this.sigmas[i], interpol = this.sigmasInterpol[i];
      const [dx, dm] = derivativeCoeffs(pred, sigma, sigma);
      const dt = interpol - sigma;
      this.saved = hold(sample);
      return lincomb([[1 + dt * dx, sample], [dt * dm, modelOutput]]);
    }
    const sigma = this.sigmas[i - 1], interpol = this.sigmasInterpol[i - 1];
    const up = this.sigmasUp[i - 1], down = this.sigmasDown[i - 1];
    const [dx, dm] = derivativeCoeffs(pred, interpol, interpol);
    const dt = down - sigma;
    const out = lincomb([[1, this.saved], [dt * dx, sample], [dt * dm, modelOutput], [up, z]]);
    this.dispose();
    return out;
  }
}
