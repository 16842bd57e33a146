/**
 * Runs one target's cases in a runner process under a watchdog: a case still running after the
 * hang limit has its process killed, is run once more in a fresh process, and if it hangs again
 * is reported (target, seed, case index) while the campaign goes on with the next case.
 *
 * @module
 */
import type { FailureMessage } from "./protocol.ts";
import { formatBytes } from "./target.ts";

/** Options of {@link runTarget}. */
export interface CampaignOptions {
  seed: number;
  cases: number;
  /** First case index (default 0). */
  from?: number;
  /** A case running longer than this is stopped as a hang (default 1000 ms). */
  hangMs?: number;
  /** Collect rejection messages (counts by message shape). */
  reasons?: boolean;
  /** Called about once a second with the cases finished. */
  onProgress?: (done: number) => void;
}

/** What a target's campaign found. */
export interface TargetReport {
  target: string;
  seed: number;
  cases: number;
  accepted: number;
  rejected: number;
  maxMs: number;
  maxMsCase: number;
  largest: number;
  largestCase: number;
  /** Largest resident memory of a runner process (sampled), in bytes. */
  peakRss: number;
  failures: FailureMessage[];
  /** Rejection messages with numbers and quoted text blanked, by count (when asked). */
  reasons: Map<string, number>;
  seconds: number;
}

const RUNNER = new URL("./runner.ts", import.meta.url).pathname;
const ROOT = new URL("../../", import.meta.url).pathname;

/** Messages differ in numbers and names; their shape tells which check rejected the input. */
function reasonShape(m: string): string {
  return m.replace(/^[^:]*: /, "").replace(/'[^']*'|"[^"]*"/g, "'…'").replace(/\d+/g, "N")
    .slice(0, 90);
}

/** Run cases `[from, from + cases)` of `target` and report. */
export async function runTarget(target: string, o: CampaignOptions): Promise<TargetReport> {
  const t0 = performance.now();
  const hangMs = o.hangMs ?? 1000;
  const r: TargetReport = {
    target,
    seed: o.seed,
    cases: o.cases,
    accepted: 0,
    rejected: 0,
    maxMs: 0,
    maxMsCase: -1,
    largest: 0,
    largestCase: -1,
    peakRss: 0,
    failures: [],
    reasons: new Map(),
    seconds: 0,
  };
  const end = (o.from ?? 0) + o.cases;
  let next = o.from ?? 0;
  let retried = -1;
  let done = 0;
  let lastProgress = performance.now();
  while (next < end) {
    const args = ["run", "-A", RUNNER, target, String(o.seed), String(next), String(end)];
    if (o.reasons) args.push("reasons");
    const child = new Deno.Command(Deno.execPath(), {
      args,
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stderr = new Response(child.stderr).text();
    let running = -1;
    let startedAt = 0;
    let finished = false;
    let killedAt = -1;
    const watchdog = setInterval(() => {
      if (o.onProgress && performance.now() - lastProgress > 1000) {
        lastProgress = performance.now();
        o.onProgress(done);
      }
      if (running >= 0 && performance.now() - startedAt > hangMs) {
        killedAt = running;
        running = -1;
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }
    }, 20);
    const lines = child.stdout.pipeThrough(new TextDecoderStream());
    let pending = "";
    for await (const chunk of lines) {
      pending += chunk;
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        const l = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const kind = l[0];
        const rest = l.slice(2);
        if (kind === "S") {
          running = Number(rest);
          startedAt = performance.now();
        } else if (kind === "E") {
          const [i, outcome, ms, bytes] = rest.split(" ");
          running = -1;
          done++;
          if (outcome === "a") r.accepted++;
          else if (outcome === "r") r.rejected++;
          if (Number(ms) > r.maxMs) (r.maxMs = Number(ms)), (r.maxMsCase = Number(i));
          if (Number(bytes) > r.largest) (r.largest = Number(bytes)), (r.largestCase = Number(i));
          next = Number(i) + 1;
        } else if (kind === "F") r.failures.push(JSON.parse(rest));
        else if (kind === "R") {
          const k = reasonShape(JSON.parse(rest));
          r.reasons.set(k, (r.reasons.get(k) ?? 0) + 1);
        } else if (kind === "D") {
          finished = true;
          r.peakRss = Math.max(r.peakRss, Number(rest));
        }
      }
    }
    clearInterval(watchdog);
    const status = await child.status;
    const errText = await stderr;
    if (finished) break;
    if (killedAt >= 0) {
      if (retried === killedAt) {
        r.failures.push({
          index: killedAt,
          kind: "hang",
          detail: `still running after ${hangMs} ms, twice; process killed`,
        });
        done++;
        next = killedAt + 1;
      } else {
        retried = killedAt;
        next = killedAt;
      }
      continue;
    }
    // The process died on its own: inside a case (that case crashed it) or before any.
    const detail =
      `runner exited with ${status.code}${status.signal ? ` (${status.signal})` : ""}: ` +
      errText.trim().split("\n").slice(-12).join("\n");
    if (running < 0) {
      r.failures.push({ index: -1, kind: "crash", detail });
      break;
    }
    r.failures.push({ index: running, kind: "crash", detail });
    done++;
    next = running + 1;
  }
  r.seconds = (performance.now() - t0) / 1000;
  return r;
}

/** The one-line summary of a report. */
export function summaryLine(r: TargetReport): string {
  return [
    r.target.padEnd(16),
    `cases ${r.cases}`,
    `accepted ${r.accepted}`,
    `rejected ${r.rejected}`,
    `max ${r.maxMs.toFixed(1)} ms (case ${r.maxMsCase})`,
    `largest alloc ${formatBytes(r.largest)} (case ${r.largestCase})`,
    `peak RSS ${formatBytes(r.peakRss)}`,
    `failures ${r.failures.length}`,
    `${r.seconds.toFixed(1)} s`,
  ].join(", ");
}

/** One line per failure, with what replays it. */
export function failureLines(r: TargetReport, limit = 20): string[] {
  const out = r.failures.slice(0, limit).map((f) =>
    `  ${f.kind} in ${r.target}, seed ${r.seed}, case ${f.index} ` +
    `(replay: deno task fuzz --only ${r.target} --seed ${r.seed} --case ${f.index}):\n    ` +
    f.detail.split("\n").join("\n    ")
  );
  if (r.failures.length > limit) out.push(`  ... ${r.failures.length - limit} more`);
  return out;
}
