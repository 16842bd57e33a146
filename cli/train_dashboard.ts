/**
 * train_network's `--dashboard`: serves the page (core/train/dashboard.ts) over HTTP, prints its
 * address, and on `--resume` loads the steps of the earlier runs from the JSONL logs under
 * `--logging_dir` so the charts continue where they left off.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { joinPath } from "../core/io/fs.ts";
import { Dashboard, parseListenAddress } from "../core/train/dashboard.ts";
import type { TrainArgs } from "../core/kohya/train_args.ts";

/** How long the server outlives the run, so an open page sees how it ended. */
const GRACE_MS = 2500;

/** The running dashboard, fed by the CLI's hooks. */
export interface RunDashboard {
  readonly url: string;
  /** One JSONL log line. */
  record(line: string): void;
  sample(s: { path: string; prompt: string; step: number; epoch: number | null }): void;
  finish(state: "finished" | "interrupted" | "failed", message: string): void;
  close(): Promise<void>;
}

/** A dashboard's page served over HTTP. */
export interface DashboardServer {
  readonly url: string;
  /** Stop serving, after `graceMs` so that an open page can see how the run ended. */
  close(graceMs?: number): Promise<void>;
}

/** Serve `dash` at `address` (`host:port`; null: 127.0.0.1 and a free port). */
export function serveDashboard(dash: Dashboard, address: string | null): DashboardServer {
  const { hostname, port } = parseListenAddress(address);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname, port, onListen: () => {} }, (req) => dash.handle(req));
  } catch (e) {
    throw new LorakitError(
      `--dashboard: cannot listen on ${hostname}:${port} (${(e as Error).message})`,
    );
  }
  const a = server.addr;
  const host = a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname;
  return {
    url: `http://${host}:${a.port}/`,
    close: async (graceMs = 0) => {
      if (graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
      await server.shutdown();
    },
  };
}

/** Every `*.jsonl` under `dir` (recursively) except `own`, oldest name first. */
async function logFiles(dir: string, own: string | null): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    try {
      for await (const e of Deno.readDir(d)) {
        const p = joinPath(d, e.name);
        if (e.isDirectory) await walk(p);
        else if (e.name.endsWith(".jsonl") && p !== own) out.push(p);
      }
    } catch {
      // An unreadable folder has no history to give.
    }
  };
  await walk(dir);
  return out.sort();
}

/** The step records of the JSONL logs in `files`; lines that are not JSON objects are skipped. */
export async function readLogRecords(files: string[]): Promise<Record<string, unknown>[]> {
  const out: Record<string, unknown>[] = [];
  for (const f of files) {
    let text: string;
    try {
      text = await Deno.readTextFile(f);
    } catch {
      continue;
    }
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      try {
        const v = JSON.parse(line);
        if (v && typeof v === "object" && !Array.isArray(v)) out.push(v);
      } catch {
        // A line cut short by a killed run.
      }
    }
  }
  return out;
}

/** Start the dashboard when `--dashboard` is given; `ownLog` is this run's JSONL log. */
export async function startDashboard(
  args: TrainArgs,
  ownLog: string | null,
): Promise<RunDashboard | null> {
  const flag = args.dashboard;
  if (flag === null) return null;
  if (flag.length > 1) {
    throw new LorakitError(
      `--dashboard: expected at most one [host][:port], found ${flag.length}: ${flag.join(" ")}`,
    );
  }
  const dash = new Dashboard();
  if (args.resume !== null && args.logging_dir !== null) {
    dash.addHistory(await readLogRecords(await logFiles(args.logging_dir, ownLog)));
  }
  const server = serveDashboard(dash, flag[0] ?? null);
  console.error(`dashboard: ${server.url}`);
  return {
    url: server.url,
    record: (line) => {
      try {
        dash.record(JSON.parse(line));
      } catch {
        // Not a step record.
      }
    },
    sample: (s) => dash.sample(s),
    finish: (state, message) => dash.finish(state, message),
    close: () => server.close(GRACE_MS),
  };
}
