/**
 * The host path of a training step, counted (exact on any adapter): after the first steps have
 * compiled their pipelines and filled the pool, a step creates no bind group, writes its uniforms
 * once per submit, never waits for the GPU, and stays within its dispatch budget. A change that
 * adds per-dispatch host work or a read-back inside the step fails here, not only on a real GPU.
 */
import assert from "node:assert/strict";
import { getGpu, initGpu, rt } from "../gpu/mod.ts";
import type { HostCounters } from "../gpu/runtime.ts";
import { kernelFamily } from "../gpu/family.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { trainNetwork } from "../core/train/loop.ts";
import { fixture } from "./fixtures.ts";
import { makeDataset, trainArgv } from "../bench/host_path.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");
/** Dispatches of one LoRA step on sd1-tiny at 64x64 px (dim 8, AdamW, clipping). */
const DISPATCH_BUDGET = 2500;
/**
 * The same step under fp16 with the loss scaler: the f32 LoRA factors are read as f16 by the
 * GEMMs (no cast kernels), the loss scale seeds the backward, and the overflow check shares the
 * clipping norm's pass; 2,488 (3,344 when each factor and its gradient were cast).
 */
const FP16_DISPATCH_BUDGET = 2488;

/** Counters as each of 6 steps is encoded. */
async function countSteps(model: string, ...extra: string[]): Promise<HostCounters[]> {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-host-" });
  try {
    await makeDataset(dir, 2);
    const args = await parseTrainArgs(trainArgv(model, dir, 6, ...extra), { onNote: () => {} });
    const at: HostCounters[] = [];
    await trainNetwork(planTrainRun(args), {
      message: () => {},
      remove: (p) => Deno.remove(p, { recursive: true }).catch(() => {}),
      stepEncoded: () => at.push(rt().counters()),
    });
    assert.equal(at.length, 6);
    return at;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("fp16 with the loss scaler and clipping: a steady step never waits either", async () => {
  if (MODEL === null) return;
  await initGpu();
  if (!(await getGpu()).hasF16) return;
  const at = await countSteps(MODEL, "--mixed_precision", "fp16", "--max_grad_norm", "1");
  const a = at[2], b = at[5];
  assert.equal((b.awaitedReads - a.awaitedReads) / 3, 0, "awaited read-backs per step");
  assert.equal((b.bindGroupsCreated - a.bindGroupsCreated) / 3, 0, "new bind groups per step");
  if (kernelFamily() === "software") {
    const per = (b.dispatches - a.dispatches) / 3;
    assert.ok(per <= FP16_DISPATCH_BUDGET, `${per} dispatches per fp16 step`);
  }
});

Deno.test("a steady training step: no bind groups, one uniform write per submit, no waits", async () => {
  if (MODEL === null) return;
  await initGpu();
  const at = await countSteps(MODEL);
  const a = at[2], b = at[5], steps = 3;
  const per = (k: keyof HostCounters) => (b[k] - a[k]) / steps;
  assert.equal(per("bindGroupsCreated"), 0, "new bind groups per step");
  assert.equal(per("awaitedReads"), 0, "awaited read-backs per step");
  assert.equal(per("uniformWrites"), per("submits"), "uniform writes per step = submits");
  // The budget is the software family's (the hardware one adds split-K reduces on small grids).
  if (kernelFamily() === "software") {
    assert.ok(per("dispatches") <= DISPATCH_BUDGET, `${per("dispatches")} dispatches per step`);
  }
});
