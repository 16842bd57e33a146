/**
 * Learning-rate schedules, as diffusers' `get_scheduler` makes them: the learning rate before
 * optimizer step `step` (0-based).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** The schedules' names (diffusers' and kohya's). */
export const LR_SCHEDULERS = [
  "constant",
  "constant_with_warmup",
  "linear",
  "cosine",
  "cosine_with_restarts",
  "polynomial",
] as const;
export type LrSchedulerName = typeof LR_SCHEDULERS[number];

/** One schedule. */
export interface LrScheduleOptions {
  name: string;
  /** The base learning rate. */
  lr: number;
  warmupSteps?: number;
  totalSteps: number;
  /** Hard restarts of cosine_with_restarts (default 1). */
  numCycles?: number;
  /** The polynomial's power (default 1). */
  power?: number;
}

/** The polynomial schedule's end value (diffusers' `lr_end`): the base lr must be above it. */
export const POLYNOMIAL_LR_END = 1e-7;

/** A function of the step returning the learning rate. */
export type LrSchedule = (step: number) => number;

/** Build the schedule; an unknown name is an error listing the known ones. */
export function makeLrSchedule(o: LrScheduleOptions): LrSchedule {
  const name = o.name as LrSchedulerName;
  if (!LR_SCHEDULERS.includes(name)) {
    throw new LorakitError(
      `lr schedule: expected one of ${LR_SCHEDULERS.join(", ")}, found '${o.name}'`,
    );
  }
  const lr = o.lr;
  const warm = o.warmupSteps ?? 0;
  const total = o.totalSteps;
  const warmup = (s: number) => s / Math.max(1, warm);
  const progress = (s: number) => (s - warm) / Math.max(1, total - warm);
  switch (name) {
    case "constant":
      return () => lr;
    case "constant_with_warmup":
      return (s) => lr * (s < warm ? warmup(s) : 1);
    case "linear":
      return (s) =>
        lr * (s < warm ? warmup(s) : Math.max(0, (total - s) / Math.max(1, total - warm)));
    case "cosine":
      // diffusers' default num_cycles 0.5: half a cosine from 1 to 0.
      return (s) =>
        lr * (s < warm ? warmup(s) : Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress(s)))));
    case "cosine_with_restarts": {
      const cycles = o.numCycles ?? 1;
      return (s) => {
        if (s < warm) return lr * warmup(s);
        const p = progress(s);
        if (p >= 1) return 0;
        return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * p) % 1))));
      };
    }
    case "polynomial": {
      const power = o.power ?? 1;
      const lrEnd = POLYNOMIAL_LR_END;
      if (lrEnd > lr) {
        throw new LorakitError(
          `learning rate ${lr}: must be above the polynomial schedule's end value ${lrEnd}`,
        );
      }
      return (s) => {
        if (s < warm) return lr * warmup(s);
        if (s > total) return lrEnd;
        const remaining = 1 - (s - warm) / (total - warm);
        return (lr - lrEnd) * remaining ** power + lrEnd;
      };
    }
  }
}
