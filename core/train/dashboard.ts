/**
 * `--dashboard [host:port]`: the state behind the live training page and the page's routes, as a
 * web-standard `Request -> Response` handler (cli/train_dashboard.ts serves it). The page shows the
 * run live (loss and its moving average, learning rate per group, it/s, ETA, GPU pool memory,
 * epoch and bucket progress, sample images with their prompts). It is fed the same per-step
 * records as the JSONL log, so a resumed run can show its earlier steps from the logs of the runs
 * before it. Everything it serves is local (the page, core/plot/line_chart.js, the samples): it
 * works offline.
 *
 * Routes: `/` the page, `/plot.js` the chart code, `/status.json` the latest state,
 * `/history.json?from=<i>` the step records from index `i` on, `/sample/<i>` a sample image.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { readBytes } from "../io/fs.ts";
import { dashboardPage } from "./dashboard_page.ts";

/** One logged step, as the page plots it. */
export interface DashboardPoint {
  step: number;
  loss: number;
  avgLoss: number;
  /** Learning rate per group name ("lr", "lr/group0", ...). */
  lrs: Record<string, number>;
  /** Seconds since this run started training (earlier runs' points: their own clock). */
  time: number;
}

/** A sample image written during training. */
export interface DashboardSample {
  path: string;
  prompt: string;
  step: number;
  epoch: number | null;
}

/** Where a run is. */
export type RunState = "starting" | "training" | "finished" | "interrupted" | "failed";

/** `/status.json`. */
export interface DashboardStatus {
  state: RunState;
  message: string;
  step: number;
  total_steps: number | null;
  epoch: number;
  total_epochs: number | null;
  batch: number | null;
  batches_per_epoch: number | null;
  bucket: string | null;
  loss: number | null;
  avg_loss: number | null;
  lr: number | null;
  lrs: Record<string, number>;
  it_per_s: number | null;
  eta_s: number | null;
  gpu_pool_bytes: number | null;
  gpu_peak_bytes: number | null;
  points: number;
  samples: { path: string; prompt: string; step: number; epoch: number | null; url: string }[];
  finished: boolean;
  updated_at: number;
}

/** Parse `host:port`, `:port`, `port` or `host` (port 0: any free one). */
export function parseListenAddress(text: string | null, flag = "--dashboard"): {
  hostname: string;
  port: number;
} {
  const t = (text ?? "").trim();
  if (t === "") return { hostname: "127.0.0.1", port: 0 };
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(t);
  const bare = /^\d+$/.test(t);
  const hostname = bare ? "127.0.0.1" : (m?.[1] ?? m?.[2] ?? "") || "127.0.0.1";
  const port = bare ? Number(t) : m?.[3] !== undefined ? Number(m[3]) : 0;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new LorakitError(
      `${flag}: expected [host][:port] such as 127.0.0.1:8080 or :8080, found ${JSON.stringify(t)}`,
    );
  }
  return { hostname, port };
}

const num = (v: unknown): number | null => typeof v === "number" && Number.isFinite(v) ? v : null;

/** A JSONL log record (the `logRecord` fields) as a point; null when it has no loss. */
export function pointOfRecord(rec: Record<string, unknown>): DashboardPoint | null {
  const step = num(rec.step), loss = num(rec["loss/current"]) ?? num(rec.loss);
  if (step === null || loss === null) return null;
  const lrs: Record<string, number> = {};
  for (const [k, v] of Object.entries(rec)) {
    if ((k === "lr" || k.startsWith("lr/")) && num(v) !== null) lrs[k] = v as number;
  }
  return {
    step,
    loss,
    avgLoss: num(rec["loss/average"]) ?? loss,
    lrs,
    time: num(rec.time) ?? 0,
  };
}

/** The live state behind the page, and its routes. */
export class Dashboard {
  #points: DashboardPoint[] = [];
  /** Points of this run (after any history from earlier runs). */
  #ownPoints = 0;
  #samples: DashboardSample[] = [];
  #status: DashboardStatus;
  #plotJs: Promise<string> | null = null;

  constructor() {
    this.#status = {
      state: "starting",
      message: "loading the model and the dataset",
      step: 0,
      total_steps: null,
      epoch: 0,
      total_epochs: null,
      batch: null,
      batches_per_epoch: null,
      bucket: null,
      loss: null,
      avg_loss: null,
      lr: null,
      lrs: {},
      it_per_s: null,
      eta_s: null,
      gpu_pool_bytes: null,
      gpu_peak_bytes: null,
      points: 0,
      samples: [],
      finished: false,
      updated_at: Date.now() / 1000,
    };
  }

  /** Earlier runs' records (a resumed run's history), oldest first. */
  addHistory(records: Record<string, unknown>[]): void {
    const pts = records.map(pointOfRecord).filter((p): p is DashboardPoint => p !== null);
    const byStep = new Map<number, DashboardPoint>();
    for (const p of pts) byStep.set(p.step, p);
    const history = [...byStep.values()].sort((a, b) => a.step - b.step);
    this.#points = [...history, ...this.#points.slice(this.#points.length - this.#ownPoints)];
    this.#status.points = this.#points.length;
  }

  /** One JSONL log record of a step. */
  record(rec: Record<string, unknown>): void {
    const p = pointOfRecord(rec);
    if (p === null) return;
    // A resumed run redoes the steps after its state: earlier runs' later points give way.
    if (this.#ownPoints === 0) this.#points = this.#points.filter((q) => q.step < p.step);
    this.#points.push(p);
    this.#ownPoints++;
    const s = this.#status;
    if (s.state === "starting") Object.assign(s, { state: "training", message: "training" });
    s.step = p.step;
    s.epoch = num(rec.epoch) ?? s.epoch;
    s.total_steps = num(rec.total_steps) ?? s.total_steps;
    s.total_epochs = num(rec.total_epochs) ?? s.total_epochs;
    s.batch = num(rec.batch) ?? s.batch;
    s.batches_per_epoch = num(rec.batches_per_epoch) ?? s.batches_per_epoch;
    const bw = num(rec.bucket_width), bh = num(rec.bucket_height);
    if (bw !== null && bh !== null) s.bucket = `${bw}x${bh}`;
    s.loss = p.loss;
    s.avg_loss = p.avgLoss;
    s.lrs = p.lrs;
    s.lr = p.lrs.lr ?? p.lrs["lr/group0"] ?? Object.values(p.lrs)[0] ?? null;
    s.gpu_pool_bytes = num(rec.gpu_live_bytes) ?? s.gpu_pool_bytes;
    s.gpu_peak_bytes = num(rec.gpu_peak_bytes) ?? s.gpu_peak_bytes;
    s.it_per_s = this.#rate();
    s.eta_s = s.it_per_s && s.total_steps !== null
      ? Math.max(0, (s.total_steps - s.step) / s.it_per_s)
      : null;
    s.points = this.#points.length;
    this.#touch();
  }

  /** A sample image was written. */
  sample(s: DashboardSample): void {
    this.#samples.push(s);
    this.#touch();
  }

  /** The run ended: finished, stopped with Ctrl-C, or failed (with the error's message). */
  finish(state: "finished" | "interrupted" | "failed", message: string): void {
    Object.assign(this.#status, { state, message, finished: true, eta_s: null });
    this.#touch();
  }

  /** The current `/status.json`. */
  status(): DashboardStatus {
    return {
      ...this.#status,
      samples: this.#samples.map((s, i) => ({ ...s, url: `/sample/${i}` })),
    };
  }

  /**
   * Steps per second over this run's last (up to) 20 points; losses arrive in bursts (they are
   * read without waiting), so a window shorter than a second falls back to the run's mean rate.
   */
  #rate(): number | null {
    const own = this.#points.slice(this.#points.length - this.#ownPoints);
    if (own.length === 0) return null;
    const recent = own.slice(-20);
    const a = recent[0], b = recent[recent.length - 1];
    if (b.time - a.time >= 1) return (b.step - a.step) / (b.time - a.time);
    return b.time > 0 ? own.length / b.time : null;
  }

  #touch(): void {
    this.#status.updated_at = Date.now() / 1000;
  }

  /** Answer one request of the page (the routes in the module doc). */
  async handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const json = (v: unknown) =>
      new Response(JSON.stringify(v), {
        headers: { "content-type": "application/json", "cache-control": "no-store" },
      });
    if (url.pathname === "/") {
      return new Response(dashboardPage(), {
        headers: { "content-type": "text/html; charset=utf-8" },
      });
    }
    if (url.pathname === "/plot.js") {
      this.#plotJs ??= fetch(new URL("../plot/line_chart.js", import.meta.url)).then((r) =>
        r.text()
      );
      return new Response(await this.#plotJs, {
        headers: { "content-type": "text/javascript; charset=utf-8" },
      });
    }
    if (url.pathname === "/status.json") return json(this.status());
    if (url.pathname === "/history.json") {
      const from = Math.max(0, Number(url.searchParams.get("from") ?? 0) || 0);
      // A resumed run may have replaced later history points: the page starts over then.
      return json({ total: this.#points.length, from, points: this.#points.slice(from) });
    }
    const sample = /^\/sample\/(\d+)$/.exec(url.pathname);
    if (sample) {
      const s = this.#samples[Number(sample[1])];
      if (s) {
        try {
          return new Response((await readBytes(s.path)).slice(), {
            headers: { "content-type": "image/png", "cache-control": "max-age=3600" },
          });
        } catch {
          // Removed since: fall through to 404.
        }
      }
    }
    return new Response("not found", { status: 404 });
  }
}
