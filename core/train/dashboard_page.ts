/**
 * The training dashboard's page: one HTML document with its style and script inline, drawing its
 * charts with `/plot.js` (core/plot/line_chart.js). It polls `/status.json` and `/history.json`
 * once a second; "Pause" freezes the view (the run goes on) and "Resume" catches up. When the
 * server stops answering, the page says the run has ended or died and keeps what it showed.
 *
 * The elements a test or a script can read: `#state` (data-state), `#loss-chart svg polyline`
 * (data-points), `#samples img` (data-loaded once the image has loaded).
 *
 * @module
 */

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #222; }
header { background: #1f2933; color: #fff; padding: 10px 18px; display: flex; gap: 16px;
  align-items: center; }
header h1 { font-size: 17px; margin: 0; flex: 1; }
button { font: inherit; padding: 4px 14px; }
#banner { padding: 8px 18px; font-weight: 600; }
#banner[data-state=training], #banner[data-state=starting] { background: #e3f1ff; }
#banner[data-state=finished] { background: #dcf5dc; }
#banner[data-state=interrupted] { background: #fff3cd; }
#banner[data-state=failed], #banner[data-state=lost] { background: #fbd9d9; }
main { padding: 12px 18px; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
.tile { background: #fff; border-radius: 6px; padding: 8px 10px; box-shadow: 0 1px 2px #0002; }
.tile b { display: block; font-size: 18px; }
.tile span { color: #666; font-size: 12px; }
.bar { height: 4px; background: #e5e7eb; border-radius: 2px; margin-top: 4px; }
.bar i { display: block; height: 4px; background: #3b82f6; border-radius: 2px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 12px; }
.charts > div { background: #fff; border-radius: 6px; box-shadow: 0 1px 2px #0002; }
svg { max-width: 100%; height: auto; display: block; }
#samples { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 12px; }
figure { margin: 0; background: #fff; border-radius: 6px; padding: 6px; max-width: 260px;
  box-shadow: 0 1px 2px #0002; }
figure img { width: 256px; image-rendering: pixelated; display: block; }
figcaption { font-size: 12px; color: #444; word-break: break-word; }
`;

const SCRIPT = `
import { lineChartSvg, movingAverage } from "/plot.js";
const $ = (id) => document.getElementById(id);
const points = [];
let status = null, paused = false, lastOk = Date.now(), lost = false;
const COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2"];
function fmtTime(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
}
function fmtBytes(b) {
  if (b === null || b === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB"]; let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
}
const fmt = (v, d = 4) => v === null || v === undefined ? "–"
  : v !== 0 && Math.abs(v) < 1e-3 ? Number(v).toExponential(d - 1) : Number(v).toPrecision(d);
function tile(label, value, frac) {
  const bar = frac === undefined ? "" :
    '<div class="bar"><i style="width:' + Math.max(0, Math.min(100, 100 * frac)).toFixed(1) + '%"></i></div>';
  return '<div class="tile"><span>' + label + "</span><b>" + value + "</b>" + bar + "</div>";
}
function render() {
  if (!status) return;
  const s = status;
  const state = lost ? "lost" : s.state;
  const banner = $("state");
  banner.dataset.state = state;
  banner.textContent = lost
    ? "Lost contact with the training process at " + new Date(lastOk).toLocaleTimeString() +
      ": the run has ended or died. The view keeps what it last showed."
    : s.state === "finished" ? "The run finished at step " + s.step + "."
    : s.state === "interrupted" ? "The run was stopped at step " + s.step + ". " + s.message
    : s.state === "failed" ? "The run failed: " + s.message
    : s.state === "starting" ? "Starting: " + s.message
    : "Training" + (paused ? " (view paused)" : "");
  $("tiles").innerHTML = [
    tile("step", s.step + (s.total_steps ? " / " + s.total_steps : ""),
      s.total_steps ? s.step / s.total_steps : undefined),
    tile("epoch", s.epoch + (s.total_epochs ? " / " + s.total_epochs : ""),
      s.total_epochs ? s.epoch / s.total_epochs : undefined),
    tile("batch in epoch", (s.batch ?? "–") + (s.batches_per_epoch ? " / " + s.batches_per_epoch : "") +
      (s.bucket ? " · " + s.bucket : ""), s.batches_per_epoch && s.batch ? s.batch / s.batches_per_epoch : undefined),
    tile("loss", fmt(s.loss)),
    tile("average loss", fmt(s.avg_loss)),
    tile("learning rate", fmt(s.lr, 3)),
    tile("it/s", s.it_per_s ? s.it_per_s.toFixed(2) : "–"),
    tile("ETA", s.finished ? "–" : fmtTime(s.eta_s)),
    tile("GPU pool", fmtBytes(s.gpu_pool_bytes) + " (peak " + fmtBytes(s.gpu_peak_bytes) + ")"),
  ].join("");
  const window = Math.max(1, Math.round(points.length / 20));
  const avg = movingAverage(points.map((p) => p.loss), window);
  $("loss-chart").innerHTML = lineChartSvg([
    { label: "loss", color: "#93b4e6", points: points.map((p) => [p.step, p.loss]), width: 1 },
    { label: "moving average (" + window + ")", color: "#c82828",
      points: points.map((p, i) => [p.step, avg[i]]), width: 2 },
  ], { title: "loss", xLabel: "step", empty: "waiting for the first step" });
  const groups = [...new Set(points.flatMap((p) => Object.keys(p.lrs)))];
  $("lr-chart").innerHTML = lineChartSvg(groups.map((g, i) => ({
    label: g, color: COLORS[i % COLORS.length],
    points: points.filter((p) => g in p.lrs).map((p) => [p.step, p.lrs[g]]),
  })), { title: "learning rate", xLabel: "step", width: 480, empty: "no steps yet" });
  const box = $("samples");
  for (let i = box.children.length; i < s.samples.length; i++) {
    const sm = s.samples[i];
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = sm.prompt;
    img.dataset.step = String(sm.step);
    img.onload = () => { img.dataset.loaded = "1"; };
    img.src = sm.url;
    const cap = document.createElement("figcaption");
    cap.textContent = (sm.epoch !== null ? "epoch " + sm.epoch : "step " + sm.step) + ": " + sm.prompt;
    fig.append(img, cap);
    box.append(fig);
  }
  $("no-samples").hidden = s.samples.length > 0;
}
async function poll() {
  if (paused) return;
  try {
    const st = await (await fetch("/status.json", { cache: "no-store" })).json();
    const h = await (await fetch("/history.json?from=" + points.length, { cache: "no-store" })).json();
    if (h.total < points.length) {
      points.length = 0;
      const all = await (await fetch("/history.json?from=0", { cache: "no-store" })).json();
      points.push(...all.points);
    } else points.push(...h.points);
    status = st;
    lastOk = Date.now();
    lost = false;
  } catch {
    lost = status !== null;
  }
  render();
}
$("pause").onclick = () => {
  paused = !paused;
  $("pause").textContent = paused ? "Resume view" : "Pause view";
  if (!paused) poll();
  render();
};
setInterval(poll, 1000);
poll();
`;

/** The page's HTML. */
export function dashboardPage(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lorakit training</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style></head>
<body>
<header><h1>lorakit — training dashboard</h1><button id="pause">Pause view</button></header>
<div id="banner"><span id="state" data-state="starting">Connecting…</span></div>
<main>
<div class="tiles" id="tiles"></div>
<div class="charts"><div id="loss-chart"></div><div id="lr-chart"></div></div>
<h2>Samples</h2><p id="no-samples">No sample images yet (they come with --sample_prompts and
--sample_every_n_steps or --sample_every_n_epochs).</p>
<div id="samples"></div>
</main>
<script type="module">${SCRIPT}</script>
</body></html>
`;
}
