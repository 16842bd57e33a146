/**
 * What the training tool leaves behind, read back for the report: the sample PNGs of
 * `--sample_every_n_steps`, and the per-step log, JSON Lines under `--logging_dir` (one object
 * per line), summarised with its loss plot. The step is `step` or `global_step` (else the line's position); the loss is `loss`,
 * else kohya's TensorBoard tag `loss/current`. Lines without a finite loss (headers, epoch
 * summaries) are skipped; a line that is not JSON is an error naming the file and line.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { encodePng } from "../image/encode.ts";
import { joinPath, listDir, readBytes, readText } from "../io/fs.ts";
import { lineChartSvg, movingAverage } from "../plot/line_chart.js";
import { drawLossPlot, type LossPoint } from "./loss_plot.ts";
import type { CaptionedPng, LossSummary } from "./report.ts";

function finite(v: unknown): number | null {
  const n = typeof v === "string" ? Number(v) : v;
  return typeof n === "number" && Number.isFinite(n) ? n : null;
}

/** The loss points of one JSONL log's text; `where` names it in errors. */
export function parseLossLog(text: string, where: string): LossPoint[] {
  const out: LossPoint[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new LorakitError(
        `${where}:${i + 1}: expected one JSON object per line, found ${
          JSON.stringify(line.slice(0, 60))
        } ` +
          `(${(e as Error).message})`,
      );
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) continue;
    const rec = obj as Record<string, unknown>;
    const loss = finite(rec.loss) ?? finite(rec["loss/current"]);
    if (loss === null) continue;
    const step = finite(rec.step) ?? finite(rec.global_step) ?? out.length + 1;
    out.push({ step, loss });
  }
  return out;
}

/** Every `*.jsonl` file under `dir` (recursively), sorted by path. */
export async function findJsonlFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    let entries: { name: string; isDirectory: boolean }[];
    try {
      entries = await listDir(d);
    } catch {
      return;
    }
    for (const e of entries) {
      const p = joinPath(d, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.name.toLowerCase().endsWith(".jsonl")) found.push(p);
    }
  };
  await walk(dir);
  return found.sort();
}

/** The loss points of the log under `dir` with the most points (the latest run's on a tie). */
export async function readLossLog(
  dir: string,
): Promise<{ path: string; points: LossPoint[] } | null> {
  let best: { path: string; points: LossPoint[] } | null = null;
  for (const path of await findJsonlFiles(dir)) {
    const points = parseLossLog(await readText(path), path);
    if (best === null || points.length >= best.points.length) best = { path, points };
  }
  return best !== null && best.points.length > 0 ? best : null;
}

function meanOf(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}

/**
 * The loss per step and its moving average (a twentieth of the run) as SVG, drawn by the same
 * code as the training dashboard's chart.
 */
export function lossChartSvg(points: readonly LossPoint[]): string {
  const window = Math.max(1, Math.round(points.length / 20));
  const avg = movingAverage(points.map((p) => p.loss), window);
  return lineChartSvg([
    { label: "loss", color: "#93b4e6", points: points.map((p) => [p.step, p.loss]), width: 1 },
    {
      label: `moving average (${window})`,
      color: "#c82828",
      points: points.map((p, i) => [p.step, avg[i]]),
      width: 2,
    },
  ], { title: "training loss", xLabel: "step", empty: "no logged steps" });
}

/** The loss plot and the mean loss of the first and last tenth of the run. */
export async function summarizeLoss(points: LossPoint[], logPath: string): Promise<LossSummary> {
  const tenth = Math.max(1, Math.floor(points.length / 10));
  const losses = points.map((p) => p.loss);
  return {
    png: await encodePng(drawLossPlot(points)),
    svg: lossChartSvg(points),
    points: points.length,
    firstMean: meanOf(losses.slice(0, tenth)),
    lastMean: meanOf(losses.slice(-tenth)),
    logPath,
  };
}

/** PNG files in `dir` (training samples), sorted by name; none when the folder is absent. */
export async function pngsIn(dir: string): Promise<CaptionedPng[]> {
  let names: string[];
  try {
    names = (await listDir(dir)).filter((e) => !e.isDirectory && e.name.endsWith(".png"))
      .map((e) => e.name).sort();
  } catch {
    return [];
  }
  return await Promise.all(
    names.map(async (n) => ({ caption: n, png: await readBytes(joinPath(dir, n)) })),
  );
}
