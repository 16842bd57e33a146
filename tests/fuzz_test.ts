/**
 * The CI slice of the fuzzing campaign (tests/fuzz/): every parser of untrusted input gets 2,000
 * mutated inputs from a fixed seed, plus 200 from a seed taken from the clock (printed when it
 * fails). Each must end in a result or a LorakitError, within 1 s, without a buffer over the
 * target's bound; accepted and rejected inputs must both be common, or the mutations are not
 * reaching the parser. `deno task fuzz` runs the long campaign. Also the harness's own checks.
 */
import assert from "node:assert/strict";
import { failureLines, runTarget, summaryLine, type TargetReport } from "./fuzz/campaign.ts";
import { caseRng } from "./fuzz/rng.ts";
import { makeInput } from "./fuzz/target.ts";
import { loadTarget, TARGET_NAMES } from "./fuzz/targets.ts";
import { SELFTEST } from "./fuzz/targets/selftest.ts";

const SEED = 0x10ba;
const CASES = 2000;
const CLOCK_CASES = 200;
/** Each outcome must be at least this share of the cases. */
const COMMON = 0.03;

function assertClean(r: TargetReport): void {
  assert.equal(r.failures.length, 0, `\n${summaryLine(r)}\n${failureLines(r).join("\n")}`);
}

for (const name of TARGET_NAMES) {
  Deno.test(`fuzz ${name}: ${CASES} mutated inputs end in a result or a LorakitError`, async () => {
    const r = await runTarget(name, { seed: SEED, cases: CASES });
    console.log(summaryLine(r));
    assertClean(r);
    assert.equal(r.accepted + r.rejected, CASES);
    assert.ok(r.accepted >= COMMON * CASES, `only ${r.accepted} of ${CASES} inputs accepted`);
    assert.ok(r.rejected >= COMMON * CASES, `only ${r.rejected} of ${CASES} inputs rejected`);
    const clock = Date.now() % 2 ** 32;
    assertClean(await runTarget(name, { seed: clock, cases: CLOCK_CASES }));
  });
}

Deno.test("fuzz harness: a case replays from the seed and its index alone", async () => {
  for (const name of ["safetensors", "dataset_config", "ckpt_zip"]) {
    const t = await loadTarget(name);
    const seeds = await t.seeds();
    const a = await makeInput(t, seeds, caseRng(7, 123));
    await makeInput(t, seeds, caseRng(7, 5)); // another case in between changes nothing
    const b = await makeInput(t, await t.seeds(), caseRng(7, 123));
    assert.deepEqual(a, b, name);
    assert.notDeepEqual(a, await makeInput(t, seeds, caseRng(8, 123)), name);
  }
});

Deno.test("fuzz harness: the allocation guard measures, refuses and keeps instanceof", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./fuzz/guard_check.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.equal(out.code, 0);
  const got = JSON.parse(new TextDecoder().decode(out.stdout));
  assert.deepEqual(got, {
    instanceof: true,
    constructorIdentity: true,
    viewOfBuffer: true,
    largestSoFar: 16,
    overBound: "refused",
    violation: "new Float64Array of 8000 bytes is over the bound of 1024 bytes",
    unarmed: true,
    reset: true,
  });
});

Deno.test("fuzz harness: hangs, over-bound allocations and crashes are reported by case", async () => {
  const t = await loadTarget("selftest");
  const seeds = await t.seeds();
  const first = new Map<number, number>();
  const kinds = new Map<number, number>();
  for (let i = 0; i < 400; i++) {
    const k = (await makeInput(t, seeds, caseRng(SEED, i)))[0];
    kinds.set(i, k);
    if (!first.has(k)) first.set(k, i);
  }
  const expect: [number, string][] = [
    [SELFTEST.syncHang, "hang"],
    [SELFTEST.asyncHang, "hang"],
    [SELFTEST.allocation, "allocation"],
    [SELFTEST.crash, "crash"],
  ];
  const kindOf = (j: number) => expect.find(([x]) => x === kinds.get(j))?.[1];
  for (const [k] of expect) {
    const i = first.get(k);
    assert.ok(i !== undefined && i > 0, `no case starts with ${k}`);
    // The case with one on either side: the campaign goes on after a failure.
    const r = await runTarget("selftest", { seed: SEED, cases: 3, from: i - 1, hangMs: 300 });
    const want = [i - 1, i, i + 1].filter((j) => kindOf(j)).map((j) => [j, kindOf(j)]);
    assert.deepEqual(r.failures.map((f) => [f.index, f.kind]), want, failureLines(r).join("\n"));
    assert.equal(r.accepted + r.rejected, 3 - want.length);
  }
});
