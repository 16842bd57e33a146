/**
 * Benchmark helpers: GPU timing (wall clock around a synced run; timestamp queries read 0 on
 * lavapipe) and a PyTorch peer run in a subprocess during the same bench run, so every row is a
 * ratio measured on one machine at one time.
 */
import { initGpu, rt } from "../gpu/mod.ts";

/** One line of the results table. */
export interface BenchRow {
  name: string;
  /** Our median seconds per iteration. */
  seconds: number;
  /** Work per iteration, for the rate column. */
  flops?: number;
  bytes?: number;
  /** Peer median seconds, when a peer ran. */
  peerSeconds?: number;
  peer?: string;
  note?: string;
}

/**
 * Median seconds per run of `fn` (GPU work synced) after `warmup` runs. Completion is observed
 * through the device's poll, which adds ~10 ms on some drivers: when one run is shorter than
 * 50 ms, each timed sample encodes enough runs back to back to last about 100 ms and is divided
 * by their count, so fast GPUs are not measured as the poll interval.
 */
export async function timeGpu(
  fn: () => void | Promise<void>,
  opts: { warmup?: number; iters?: number; minSeconds?: number } = {},
): Promise<number> {
  await initGpu();
  const warmup = opts.warmup ?? 1;
  const iters = opts.iters ?? 3;
  let first = Infinity;
  for (let i = 0; i < warmup; i++) {
    const s = performance.now();
    await fn();
    await rt().sync();
    first = Math.min(first, (performance.now() - s) / 1000);
  }
  const reps = first < 0.05 ? Math.min(200, Math.ceil(0.1 / Math.max(first, 5e-4))) : 1;
  const times: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) {
    const s = performance.now();
    for (let r = 0; r < reps; r++) await fn();
    await rt().sync();
    times.push((performance.now() - s) / 1000 / reps);
    if (opts.minSeconds && (performance.now() - t0) / 1000 > opts.minSeconds && i >= 1) break;
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** The first line of an error's message, for a "did not run" note in a table row. */
export function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0];
}

/** `n` values uniform in [-1, 1) from `Math.random` (a kernel bench's input). */
export function randomSigned(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

/** Our measurement of one case, before the peer joins it. */
export interface Measured<C> {
  case: C;
  seconds: number;
  note: string;
}

/**
 * `run`'s measurements of `cases`; when it throws (out of memory, a missing feature), every case
 * as not run, with the error's first line in its note.
 */
export async function measureCases<C>(
  cases: readonly C[],
  run: () => Promise<Measured<C>[]>,
): Promise<Measured<C>[]> {
  try {
    return await run();
  } catch (e) {
    return cases.map((c) => ({ case: c, seconds: NaN, note: `did not run: ${firstLine(e)}` }));
  }
}

/**
 * Before a peer runs: wait for our work and hand the pool's cached buffers back to the driver,
 * since a CUDA peer shares the GPU. Returns whether the peer runs on the CPU.
 */
export async function releaseForPeer(): Promise<boolean> {
  await rt().sync();
  rt().storage.trim();
  return (Deno.env.get("LORAKIT_PEER_DEVICE") ?? "cpu") === "cpu";
}

/** How a PyTorch peer describes itself in the table: version, device, threads. */
export function peerLabel(peer: Record<string, unknown> | null): string | undefined {
  if (!peer) return undefined;
  const dev = Deno.env.get("LORAKIT_PEER_DEVICE") ?? "cpu";
  return `torch ${peer.torch} ${dev === "cpu" ? `cpu x${peer.threads}` : dev}`;
}

/**
 * The peer's Python: Debian's (python3-torch, python3-opencv) by default, not a user's pyenv;
 * `LORAKIT_PEER_PYTHON` overrides it (e.g. a GPU machine's PyTorch environment).
 */
export const PYTHON = Deno.env.get("LORAKIT_PEER_PYTHON") ?? "/usr/bin/python3";

/**
 * Run `bench/peer/<script>` with a JSON spec on stdin; it prints a JSON object on its last stdout
 * line. Returns null (and a note) when Python or PyTorch is missing.
 */
export async function runPeer(
  script: string,
  spec: unknown,
): Promise<Record<string, unknown> | null> {
  const path = new URL(`./peer/${script}`, import.meta.url).pathname;
  try {
    const cmd = new Deno.Command(PYTHON, {
      args: [path],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    });
    const child = cmd.spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(JSON.stringify(spec)));
    await w.close();
    const out = await child.output();
    if (!out.success) {
      console.error(`peer ${script} failed: ${new TextDecoder().decode(out.stderr).slice(-500)}`);
      return null;
    }
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    return JSON.parse(lines[lines.length - 1]);
  } catch (e) {
    console.error(`peer ${script} unavailable: ${(e as Error).message}`);
    return null;
  }
}

/** Format rows as a Markdown table with rates and the peer ratio (peer time / our time). */
export function table(rows: BenchRow[]): string {
  const head =
    "| bench | ours (s) | rate | peer | peer (s) | speed vs peer |\n|---|---|---|---|---|---|";
  const body = rows.map((r) => {
    const rate = r.flops
      ? `${(r.flops / r.seconds / 1e9).toFixed(2)} GFLOP/s`
      : r.bytes
      ? `${(r.bytes / r.seconds / 1e9).toFixed(2)} GB/s`
      : "";
    const ratio = r.peerSeconds ? `${(r.peerSeconds / r.seconds).toFixed(3)}x` : "n/a";
    return `| ${r.name} | ${r.seconds.toFixed(4)} | ${rate} | ${r.peer ?? ""} | ${
      r.peerSeconds?.toFixed(4) ?? ""
    } | ${ratio}${r.note ? ` (${r.note})` : ""} |`;
  });
  return [head, ...body].join("\n");
}
