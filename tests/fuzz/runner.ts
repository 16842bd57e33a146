/**
 * A fuzz runner process: `deno run -A tests/fuzz/runner.ts <target> <seed> <from> <to> [reasons]`
 * runs cases `[from, to)` of one target with the allocation guard installed and reports each on
 * stdout (see protocol.ts). A separate process, not a Worker, because a terminated Worker that is
 * inside a long synchronous loop keeps running; a process can always be killed.
 *
 * @module
 */
import { LorakitError } from "../../core/errors.ts";
import { installAllocGuard } from "./alloc_guard.ts";
import type { FailureMessage } from "./protocol.ts";
import { caseRng } from "./rng.ts";
import { makeInput } from "./target.ts";
import { loadTarget } from "./targets.ts";

/** A case slower than this fails (after one re-run, which tells a real cost from a GC pause). */
const SLOW_MS = 1000;

const out = new TextEncoder();
const line = (s: string) => {
  const b = out.encode(s + "\n");
  for (let at = 0; at < b.length;) at += Deno.stdout.writeSync(b.subarray(at));
};

function firstLines(e: unknown, n: number): string {
  if (e instanceof Error) {
    return (e.stack ?? `${e.name}: ${e.message}`).split("\n").slice(0, n).join("\n");
  }
  return `thrown non-Error: ${String(e)}`;
}

let floating: unknown = undefined;
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  floating ??= e.reason;
});

const [name, seedText, fromText, toText, flag] = Deno.args;
const seed = Number(seedText);
const from = Number(fromText);
const to = Number(toText);
const reasons = flag === "reasons";
const fail = (index: number, kind: FailureMessage["kind"], detail: string) =>
  line(`F ${JSON.stringify({ index, kind, detail } satisfies FailureMessage)}`);

const target = await loadTarget(name);
const seeds = await target.seeds();
// Every seed must parse. Parsing them first also fills the parsers' one-time tables (the f16
// conversion table, CRC tables), which are not per-input allocations.
for (const [k, s] of seeds.entries()) {
  try {
    await target.run(s.bytes);
  } catch (e) {
    fail(-1, "crash", `seed ${k} of ${name} is rejected: ${firstLines(e, 6)}`);
  }
}
const guard = installAllocGuard();

/** One run of case `i`: its outcome, time and largest allocation. */
async function once(i: number) {
  const input = await makeInput(target, seeds, caseRng(seed, i));
  floating = undefined;
  guard.arm(target.allocBound(input.length));
  const t0 = performance.now();
  let error: unknown = null;
  try {
    await target.run(input);
  } catch (e) {
    error = e;
  }
  const ms = performance.now() - t0;
  guard.disarm();
  return { input, error, ms, largest: guard.largest, violation: guard.violation };
}

// A case whose promise never settles must be timed out as a hang, not end the process because
// nothing is left to run.
const keepAlive = setInterval(() => {}, 1 << 30);
let peakRss = 0;
for (let i = from; i < to; i++) {
  line(`S ${i}`);
  let res;
  try {
    res = await once(i);
    if (res.ms > SLOW_MS) res = await once(i);
  } catch (e) {
    // Only making the input runs outside the parser's try: a fault of the fuzzer itself.
    guard.disarm();
    fail(i, "crash", `making the input failed: ${firstLines(e, 8)}`);
    line(`E ${i} f 0 0`);
    continue;
  }
  const { error, ms, input } = res;
  const size = `${input.length}-byte input`;
  let outcome = "f";
  if (res.violation !== null) fail(i, "allocation", `${size}: ${res.violation}`);
  else if (ms > SLOW_MS) {
    fail(i, "slow", `${size}: ran ${ms.toFixed(0)} ms (twice over ${SLOW_MS} ms)`);
  } else if (floating !== undefined) {
    fail(i, "crash", `${size}: unhandled rejection: ${firstLines(floating, 8)}`);
  } else if (error === null) outcome = "a";
  else if (error instanceof LorakitError && error.message.length > 0) {
    outcome = "r";
    if (reasons) line(`R ${JSON.stringify(error.message)}`);
  } else fail(i, "crash", `${size}: ${firstLines(error, 12)}`);
  // Resident memory catches what the guard cannot see (WebAssembly memory, strings).
  if (i % 16 === 0) peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
  line(`E ${i} ${outcome} ${ms.toFixed(2)} ${res.largest}`);
}
clearInterval(keepAlive);
line(`D ${Math.max(peakRss, Deno.memoryUsage().rss)}`);
