/**
 * Learning-rate schedules, as kohya's trainer gets them from diffusers' `get_scheduler`: the
 * factor applied to the base learning rate before optimizer step `step` (0-based).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** kohya's `--lr_scheduler` values. */
export const LR_SCHEDULERS = [
  "constant",
  "constant_with_warmup",
  "linear",
  "cosine",
  "cosine_with_restarts",
  "polynomial",
] as const;
export type LrSchedulerName = typeof LR_SCHEDULERS[number];

/** Settings named as kohya's flags. */
export interface LrScheduleOptions {
  lr_scheduler: string;
  learning_rate: number;
  lr_warmup_steps?: number;
  max_train_steps: number;
  /** `--lr_scheduler_num_cycles` (cosine_with_restarts; default 1). */
  lr_scheduler_num_cycles?: number;
  /** `--lr_scheduler_power` (polynomial; default 1). */
  lr_scheduler_power?: number;
}

/** A function of the step returning the learning rate. */
export type LrSchedule = (step: number) => number;

/** Build the schedule; an unknown name is an error listing the known ones. */
export function makeLrSchedule(o: LrScheduleOptions): LrSchedule {
  const name = o.lr_scheduler as LrSchedulerName;
  if (!LR_SCHEDULERS.includes(name)) {
    throw new LorakitError(
      `--lr_scheduler: expected one of ${LR_SCHEDULERS.join(", ")}, found '${o.lr_scheduler}'`,
    );
  }
  const lr = o.learning_rate;
  const warm = o.lr_warmup_steps ?? 0;
  const total = o.max_train_steps;
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
      const cycles = o.lr_scheduler_num_cycles ?? 1;
      return (s) => {
        if (s < warm) return lr * warmup(s);
        const p = progress(s);
        if (p >= 1) return 0;
        return lr * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * ((cycles * p) % 1))));
      };
    }
    case "polynomial": {
      const power = o.lr_scheduler_power ?? 1;
      const lrEnd = 1e-7;
      if (lrEnd > lr) {
        throw new LorakitError(
          `--learning_rate ${lr} must be above the polynomial schedule's end value ${lrEnd}`,
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
