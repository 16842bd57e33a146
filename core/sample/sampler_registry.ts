/**
 * kohya gen_img's `--sampler` choices and how each is built: the diffusers scheduler class, the
 * arguments kohya passes (scaled-linear betas 0.00085..0.012 over 1000 steps; `steps_offset` 1
 * except for dpmsingle; `clip_sample` False where the class has it, which our DDIM never clips;
 * `algorithm_type` for dpmsolver/dpmsolver++; `prediction_type` "v_prediction" under
 * `--v_parameterization`) and how many noises kohya draws per step for it.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { DdimScheduler } from "./schedulers/ddim.ts";
import { Dpm2AncestralScheduler, Dpm2Scheduler } from "./schedulers/dpm2.ts";
import {
  DpmSolverMultistepScheduler,
  DpmSolverSinglestepScheduler,
} from "./schedulers/dpmsolver.ts";
import { EulerAncestralScheduler, EulerScheduler } from "./schedulers/euler.ts";
import { HeunScheduler } from "./schedulers/heun.ts";
import { LmsScheduler } from "./schedulers/lms.ts";
import { PndmScheduler } from "./schedulers/pndm.ts";
import { KOHYA_SCHEDULE, type ScheduleConfig } from "./schedulers/schedule.ts";
import type { Scheduler } from "./schedulers/scheduler.ts";

/** The canonical sampler names (gen_img's choices without the `k_` aliases). */
export const SAMPLERS = [
  "ddim",
  "pndm",
  "lms",
  "euler",
  "euler_a",
  "heun",
  "dpm_2",
  "dpm_2_a",
  "dpmsolver",
  "dpmsolver++",
  "dpmsingle",
] as const;

/** A canonical sampler name. */
export type SamplerName = typeof SAMPLERS[number];

/** gen_img's aliases: `k_lms`, `k_euler`, `k_euler_a`, `k_dpm_2`, `k_dpm_2_a`. */
export const SAMPLER_ALIASES: Readonly<Record<string, SamplerName>> = Object.freeze({
  k_lms: "lms",
  k_euler: "euler",
  k_euler_a: "euler_a",
  k_dpm_2: "dpm_2",
  k_dpm_2_a: "dpm_2_a",
});

/** Every name `--sampler` accepts, in gen_img's order. */
export const SAMPLER_CHOICES: readonly string[] = [...SAMPLERS, ...Object.keys(SAMPLER_ALIASES)];

/** The canonical name for a `--sampler` value (aliases resolved), or a LorakitError. */
export function resolveSampler(name: string): SamplerName {
  if ((SAMPLERS as readonly string[]).includes(name)) return name as SamplerName;
  const alias = SAMPLER_ALIASES[name];
  if (alias) return alias;
  throw new LorakitError(
    `--sampler: expected one of ${SAMPLER_CHOICES.join(", ")}, found '${name}'`,
  );
}

/** Options of {@link createScheduler}. */
export interface CreateSchedulerOptions {
  /** `--v_parameterization` (SD 2.x 768-v models). */
  vPrediction?: boolean;
}

/** The schedule kohya configures for `name` (dpmsingle keeps diffusers' steps_offset 0). */
export function scheduleConfigFor(
  name: string,
  opts: CreateSchedulerOptions = {},
): ScheduleConfig {
  const canonical = resolveSampler(name);
  return {
    ...KOHYA_SCHEDULE,
    predictionType: opts.vPrediction ? "v_prediction" : "epsilon",
    stepsOffset: canonical === "dpmsingle" ? 0 : 1,
  };
}

/** A fresh scheduler for a `--sampler` value, configured as kohya configures diffusers. */
export function createScheduler(name: string, opts: CreateSchedulerOptions = {}): Scheduler {
  const canonical = resolveSampler(name);
  const cfg = scheduleConfigFor(canonical, opts);
  switch (canonical) {
    case "ddim":
      return new DdimScheduler(cfg);
    case "pndm":
      return new PndmScheduler(cfg);
    case "lms":
      return new LmsScheduler(cfg);
    case "euler":
      return new EulerScheduler(cfg);
    case "euler_a":
      return new EulerAncestralScheduler(cfg);
    case "heun":
      return new HeunScheduler(cfg);
    case "dpm_2":
      return new Dpm2Scheduler(cfg);
    case "dpm_2_a":
      return new Dpm2AncestralScheduler(cfg);
    case "dpmsolver":
    case "dpmsolver++":
      return new DpmSolverMultistepScheduler(cfg, canonical);
    case "dpmsingle":
      return new DpmSolverSinglestepScheduler(cfg);
  }
}

/**
 * Noises kohya draws per step for a sampler (`scheduler_num_noises_per_step`): 2 for dpm_2_a
 * (it steps twice per timestep), else 1. A seed's draws are `steps * this` noises after its
 * starting noise, whether or not the sampler uses them.
 */
export function noisesPerStep(name: string): number {
  return resolveSampler(name) === "dpm_2_a" ? 2 : 1;
}
