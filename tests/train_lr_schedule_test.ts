import assert from "node:assert/strict";
import { makeLrSchedule } from "../core/train/lr_schedule.ts";
import { LorakitError } from "../core/errors.ts";
import { fixture } from "./fixtures.ts";

Deno.test("lr schedules equal diffusers' get_scheduler at every step", async () => {
  const path = fixture("train/lr_schedules.json");
  if (!path) return;
  const cases = JSON.parse(await Deno.readTextFile(path)) as {
    lr_scheduler: string;
    learning_rate: number;
    lr_warmup_steps: number;
    max_train_steps: number;
    args: { num_cycles?: number; power?: number };
    lr_per_step: number[];
  }[];
  assert.equal(cases.length, 6);
  for (const c of cases) {
    const f = makeLrSchedule({
      name: c.lr_scheduler,
      lr: c.learning_rate,
      warmupSteps: c.lr_warmup_steps,
      totalSteps: c.max_train_steps,
      numCycles: c.args.num_cycles,
      power: c.args.power,
    });
    c.lr_per_step.forEach((want, step) => {
      const got = f(step);
      assert.ok(
        Math.abs(got - want) <= 1e-9 * Math.max(Math.abs(want), 1e-12),
        `${c.lr_scheduler} step ${step}: ${got} vs ${want}`,
      );
    });
  }
});

Deno.test("unknown scheduler is a clear error", () => {
  assert.throws(
    () => makeLrSchedule({ name: "cosine_restart", lr: 1, totalSteps: 1 }),
    (e: Error) => e instanceof LorakitError && /cosine_with_restarts/.test(e.message),
  );
});
