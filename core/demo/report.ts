/**
 * The demo's self-contained HTML report: every image is embedded as a base64 PNG data URI, so
 * the one file can be opened or mailed on its own. Sections: what the demo shows (and whether
 * the LoRA's orange appears where it should), the run (stages and timings, the training command line), the dataset, the loss
 * curve, sample grids across LoRA multipliers, the U-Net's response to the multiplier, and the
 * merge/extract round trip.
 *
 * @module
 */
import type { LoraDeltaComparison } from "./lora_compare.ts";
import type { MultiplierResponse } from "./lora_effect.ts";
import type { MergeCheck } from "./merge_check.ts";

/** A PNG with a caption. */
export interface CaptionedPng {
  png: Uint8Array;
  caption: string;
}

/** One prompt's row of the sample grid. */
export interface SampleRow {
  prompt: string;
  seed: number;
  /** One PNG per multiplier, in the order of {@link SampleGrid.multipliers}. */
  images: Uint8Array[];
  /** Fraction of orange pixels of each image (same order), when measured. */
  orange?: number[];
  /** The merged model's image for this prompt and seed, when made. */
  merged?: Uint8Array;
  /** Its orange fraction. */
  mergedOrange?: number;
}

/** The sample grid. */
export interface SampleGrid {
  multipliers: number[];
  rows: SampleRow[];
  /** How the images were made (sampler, steps, scale, size). */
  settings: string;
}

/** The merge/extract round trip's results. */
export interface RoundTripResult {
  /** LoRA modules merged into the checkpoint and weights changed. */
  modulesMerged: number;
  weightsChanged: number;
  /** merged − base against the LoRA's deltas. */
  mergeCheck: MergeCheck;
  /** Rank asked of the extraction. */
  extractDim: number;
  /** The extraction's `--clamp_quantile`. */
  /** The extraction's clamp quantile, or null when the clamp is off. */
  clampQuantile: number | null;
  extractedModules: number;
  textEncoderIncluded: boolean;
  comparison: LoraDeltaComparison;
  /** Merged model's images against the LoRA-applied ones at multiplier 1, over all prompts. */
  mergedVsApplied: { maxAbs: number; rms: number } | null;
}

/** The loss summary. */
export interface LossSummary {
  /** The loss plot as a PNG (written beside the report). */
  png: Uint8Array;
  /** The same plot as SVG (what the report shows). */
  svg: string;
  points: number;
  /** Mean loss of the first and last tenth of the run. */
  firstMean: number;
  lastMean: number;
  logPath: string;
}

/** Minimum fraction of orange pixels for an image to count as having an orange object. */
export const ORANGE_OBJECT_MIN = 0.03;

/** How many images of one column (a multiplier, or the merged model) show an orange object. */
export interface OrangeCount {
  label: string;
  withOrange: number;
  total: number;
  meanFraction: number;
}

/** The demo's check of what the LoRA learned: orange at x1 (and merged), not at x0. */
export interface OrangeCheck {
  counts: OrangeCount[];
  /** At least 80% of the x1 images orange and at most 10% of the x0 ones. */
  passed: boolean;
}

/** Count orange images per column of the grid. */
export function orangeCheck(grid: SampleGrid): OrangeCheck {
  const counts: OrangeCount[] = [];
  const add = (label: string, fractions: number[]) => {
    if (fractions.length === 0) return;
    counts.push({
      label,
      withOrange: fractions.filter((f) => f >= ORANGE_OBJECT_MIN).length,
      total: fractions.length,
      meanFraction: fractions.reduce((a, b) => a + b, 0) / fractions.length,
    });
  };
  grid.multipliers.forEach((m, i) =>
    add(`LoRA × ${m}`, grid.rows.flatMap((r) => (r.orange ? [r.orange[i]] : [])))
  );
  add(
    "merged model",
    grid.rows.flatMap((r) => (r.mergedOrange !== undefined ? [r.mergedOrange] : [])),
  );
  const at = (m: number) => counts.find((c) => c.label === `LoRA × ${m}`);
  const one = at(1), zero = at(0);
  const passed = one !== undefined && zero !== undefined &&
    one.withOrange >= 0.8 * one.total && zero.withOrange <= 0.1 * zero.total;
  return { counts, passed };
}

/** Everything the report shows. */
export interface DemoReportData {
  generatedAt: string;
  totalSeconds: number;
  stages: { name: string; seconds: number }[];
  settings: [string, string][];
  trainCommand: string[];
  dataset: CaptionedPng[];
  datasetNote: string;
  loss: LossSummary | null;
  trainingSamples: CaptionedPng[];
  samples: SampleGrid | null;
  /** The trigger word (shown in the explanation). */
  trigger: string;
  response: MultiplierResponse[];
  roundTrip: RoundTripResult | null;
  /** Things left out or that went wrong, said plainly. */
  notes: string[];
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 of bytes. */
export function base64(bytes: Uint8Array): string {
  const parts: string[] = [];
  let s = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i], b = bytes[i + 1] ?? 0, c = bytes[i + 2] ?? 0;
    const n = (a << 16) | (b << 8) | c;
    s += B64[n >> 18] + B64[(n >> 12) & 63] +
      (i + 1 < bytes.length ? B64[(n >> 6) & 63] : "=") +
      (i + 2 < bytes.length ? B64[n & 63] : "=");
    if (s.length >= 8192) {
      parts.push(s);
      s = "";
    }
  }
  parts.push(s);
  return parts.join("");
}

/** Escape text for HTML content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function img(png: Uint8Array, alt: string, cls = ""): string {
  return `<img${cls ? ` class="${cls}"` : ""} alt="${escapeHtml(alt)}" ` +
    `src="data:image/png;base64,${base64(png)}">`;
}

function num(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) < 1e-3 || Math.abs(v) >= 1e5)) return v.toExponential(2);
  return v.toFixed(digits);
}

const STYLE = `body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:4px 8px;
vertical-align:top}th{background:#f4f4f4;text-align:left}code,pre{background:#f6f6f6}
pre{padding:.6em;white-space:pre-wrap;word-break:break-all}.px{image-rendering:pixelated;
height:128px}.big{image-rendering:pixelated;width:192px;height:192px}.thumbs figure{display:inline-block;margin:4px;text-align:center;font-size:12px;
max-width:260px}.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.5em 1em}
.ok{color:#176b2c}.bad{color:#a01010}.chart svg{max-width:100%;height:auto}`;

function sectionWhat(d: DemoReportData): string {
  const g = d.samples;
  const check = g === null ? null : orangeCheck(g);
  const rows =
    check?.counts.map((c) =>
      `<tr><td>${escapeHtml(c.label)}</td><td>${c.withOrange} / ${c.total}</td><td>${
        (100 * c.meanFraction).toFixed(1)
      }%</td></tr>`
    ).join("") ?? "";
  const verdict = check === null
    ? ""
    : check.passed
    ? `<p><b class="ok">The LoRA taught the new colour:</b> orange objects in at least 80% of the
images at multiplier 1 and in at most 10% at multiplier 0.</p>`
    : `<p><b class="bad">The LoRA did not clearly teach the new colour</b> (wanted orange objects
in at least 80% of the images at multiplier 1 and in at most 10% at multiplier 0).</p>`;
  return `<h2>What this demo shows</h2>
<p>The base model is a tiny Stable Diffusion 1.x (the full architecture at narrow widths) whose
U-Net and VAE were trained on a synthetic world of flat shapes in seven colours, captioned with
what is where ("a red circle on a blue background"); it never saw orange. The LoRA is trained on
a dozen pictures whose objects are orange, captioned with the trigger word
"${escapeHtml(d.trigger)}" where the base world's captions say "a &lt;colour&gt;"
("${
    escapeHtml(d.trigger)
  } circle on a blue background"). If it learned, the prompts below draw orange
objects with the LoRA at multiplier 1 and with the merged model, not at multiplier 0, and
something in between at 0.5.</p>
${
    check === null
      ? ""
      : `<table><tr><th>images</th><th>with an orange object (at least ${
        100 * ORANGE_OBJECT_MIN
      }% orange pixels)</th><th>mean orange fraction</th></tr>${rows}</table>${verdict}`
  }`;
}

function sectionRun(d: DemoReportData): string {
  const stages = d.stages.map((s) =>
    `<tr><td>${escapeHtml(s.name)}</td><td>${s.seconds.toFixed(1)} s</td></tr>`
  )
    .join("");
  const settings = d.settings.map(([k, v]) =>
    `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`
  )
    .join("");
  const cmd = d.trainCommand.map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(" ");
  return `<h2>The run</h2><table><tr><th>stage</th><th>time</th></tr>${stages}
<tr><th>total</th><th>${d.totalSeconds.toFixed(1)} s</th></tr></table>
<table>${settings}</table>
<p>Training command (kohya's flags, run in-process):</p><pre>${escapeHtml(cmd)}</pre>`;
}

function sectionDataset(d: DemoReportData): string {
  const figs = d.dataset.map((t) =>
    `<figure>${img(t.png, t.caption, "px")}<figcaption>${
      escapeHtml(t.caption)
    }</figcaption></figure>`
  ).join("");
  return `<h2>Dataset</h2><p>${escapeHtml(d.datasetNote)}</p><div class="thumbs">${figs}</div>`;
}

function sectionLoss(d: DemoReportData): string {
  if (d.loss === null) return `<h2>Training loss</h2><p class="bad">No loss log was found.</p>`;
  const l = d.loss;
  const fell = l.lastMean < l.firstMean;
  return `<h2>Training loss</h2><div class="chart">${l.svg}</div>
<p>${l.points} logged steps (<code>${escapeHtml(l.logPath)}</code>). Mean loss over the first
tenth of the run ${num(l.firstMean, 4)}, over the last tenth ${num(l.lastMean, 4)}:
<b class="${fell ? "ok" : "bad"}">${fell ? "the loss fell" : "the loss did not fall"}</b>
(${num((100 * (l.firstMean - l.lastMean)) / l.firstMean, 1)}%).</p>`;
}

function sectionSamples(d: DemoReportData): string {
  const parts: string[] = [];
  if (d.trainingSamples.length > 0) {
    const figs = d.trainingSamples.map((t) =>
      `<figure>${img(t.png, t.caption, "px")}<figcaption>${
        escapeHtml(t.caption)
      }</figcaption></figure>`
    ).join("");
    parts.push(`<h2>Samples written during training</h2><div class="thumbs">${figs}</div>`);
  }
  const g = d.samples;
  if (g === null) return parts.join("") + `<h2>Samples</h2><p class="bad">Not generated.</p>`;
  const hasMerged = g.rows.some((r) => r.merged !== undefined);
  const head = g.multipliers.map((m) => `<th>LoRA × ${m}</th>`).join("") +
    (hasMerged ? "<th>merged model</th>" : "");
  const rows = g.rows.map((r) => {
    const frac = (f: number | undefined) =>
      f === undefined ? "" : `<br><small>orange ${(100 * f).toFixed(1)}%</small>`;
    const cells = r.images.map((p, i) =>
      `<td>${img(p, `${r.prompt} x${g.multipliers[i]}`, "big")}${frac(r.orange?.[i])}</td>`
    )
      .join("");
    const merged = hasMerged
      ? `<td>${r.merged ? img(r.merged, `${r.prompt} merged`, "big") : ""}${
        frac(r.mergedOrange)
      }</td>`
      : "";
    return `<tr><th>${
      escapeHtml(r.prompt)
    }<br><small>seed ${r.seed}</small></th>${cells}${merged}</tr>`;
  }).join("");
  parts.push(`<h2>Samples across LoRA multipliers</h2><p>${escapeHtml(g.settings)}. Same prompt
and seed across each row; only the multiplier changes. Images are 64x64, shown three times larger
without smoothing; the percentage under each is its share of orange pixels.</p><table><tr><th>prompt</th>${head}</tr>
${rows}</table>`);
  return parts.join("");
}

function sectionResponse(d: DemoReportData): string {
  if (d.response.length === 0) return "";
  const rows = d.response.map((r) =>
    `<tr><td>${r.multiplier}</td><td>${num(r.rmsChange, 6)}</td><td>${
      num(r.relativeToOne, 3)
    }</td></tr>`
  ).join("");
  const grows = d.response.every((r, i, a) => i === 0 || r.rmsChange >= a[i - 1].rmsChange);
  return `<h2>The LoRA's effect follows its multiplier</h2><p>One U-Net noise prediction for a
fixed latent, timestep and prompt, compared with the base model's (multiplier 0). A LoRA adds
<i>m</i>·ΔW to each layer it wraps, so the change starts out proportional to <i>m</i> (for small
<i>m</i> the last column reads close to <i>m</i>); with a strongly trained LoRA the network's
non-linearity bends the curve at larger <i>m</i>. Here the change
${grows ? "grows with every step of the multiplier" : "does not grow monotonically"}.</p>
<table><tr><th>multiplier</th><th>RMS change of the U-Net output</th><th>relative to ×1</th></tr>
${rows}</table>`;
}

function sectionRoundTrip(d: DemoReportData): string {
  const r = d.roundTrip;
  if (r === null) return `<h2>Merge and extract</h2><p class="bad">Not run.</p>`;
  const c = r.comparison;
  const worst = [...c.modules].sort((a, b) => b.relError - a.relError).slice(0, 5)
    .map((m) =>
      `<tr><td><code>${escapeHtml(m.prefix)}</code></td><td>${num(m.norm, 5)}</td>` +
      `<td>${num(m.relError, 6)}</td></tr>`
    ).join("");
  const mv = r.mergedVsApplied;
  const mvText = mv === null
    ? "not compared"
    : `max |difference| ${num(mv.maxAbs, 7)}, RMS ${num(mv.rms, 8)} (pixel values in ` +
      `[-1, 1]): ${
        mv.maxAbs <= 1e-3
          ? '<b class="ok">equal within float32 tolerance</b>'
          : '<b class="bad">larger than float32 rounding explains</b>'
      }`;
  const mc = r.mergeCheck;
  const exact = c.overallRelError <= 1e-4;
  return `<h2>Merge and extract round trip</h2>
<p><b>Merge.</b> The trained LoRA was merged into the base checkpoint at ratio 1
(<code>merge_lora</code>'s code: ${r.modulesMerged} modules, ${r.weightsChanged} weights changed).
For every module, merged − base equals the LoRA's ΔW = (alpha/rank)·up·down to a relative error of
${num(mc.overallRelError, 8)} overall and ${num(mc.maxRelError, 8)} in the worst module (float32
rounding of W + ΔW).</p>
<p><b>Images.</b> The merged model against the LoRA applied at multiplier 1, same prompts and
seeds: ${mvText}.</p>
<p><b>Extract.</b> A LoRA of rank ${r.extractDim} was extracted from merged − base by SVD
(<code>extract_lora_from_models</code>'s code, ${
    r.clampQuantile === null
      ? "with kohya's clamp turned off"
      : `<code>--clamp_quantile ${r.clampQuantile}</code>`
  },
<code>--min_diff 0</code>: ${r.extractedModules} modules, text encoder
${r.textEncoderIncluded ? "included" : "left out: unchanged"}). Per-module relative error
‖ΔW<sub>extracted</sub> − ΔW<sub>trained</sub>‖ / ‖ΔW<sub>trained</sub>‖:</p>
<table><tr><td>over all modules</td><td>${num(c.overallRelError, 6)}</td></tr>
<tr><td>median module</td><td>${num(c.medianRelError, 6)}</td></tr>
<tr><td>worst module</td><td>${num(c.maxRelError, 6)}</td></tr>
<tr><td>modules compared / missing / extra</td><td>${c.modules.length} / ${c.missing.length} /
${c.extra.length}</td></tr></table>
<p>${
    exact
      ? "The extraction recovers the trained deltas to float32 precision."
      : `The rank-${r.extractDim} SVD of a rank-${r.extractDim} difference is exact; what is left
is kohya's clamp, which the tool applies whatever the quantile: both factors are clipped to
±h with h the quantile of their <i>signed</i> values, so at quantile 1 the entries more negative
than −max(value) are clipped. The modules below are where that bites.`
  }</p>
<table><tr><th>module</th><th>‖ΔW<sub>trained</sub>‖</th><th>relative error</th></tr>${worst}
</table>`;
}

/** The whole report as one HTML document. */
export function renderReport(d: DemoReportData): string {
  const notes = d.notes.length === 0
    ? ""
    : `<h2>Notes</h2><ul>${d.notes.map((n) => `<li>${escapeHtml(n)}</li>`).join("")}</ul>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lorakit demo report</title>
<style>${STYLE}</style></head><body>
<h1>lorakit demo</h1><p>Generated ${escapeHtml(d.generatedAt)}; the whole run took
${d.totalSeconds.toFixed(1)} s.</p>
${sectionWhat(d)}${sectionRun(d)}${sectionDataset(d)}${sectionLoss(d)}${sectionSamples(d)}
${sectionResponse(d)}${sectionRoundTrip(d)}${notes}
</body></html>
`;
}
