// @ts-check
/**
 * Line charts as SVG text: nice ticks, labelled axes, one polyline per series and a legend. Plain
 * JavaScript with no imports, so the same file runs in Deno (the demo's report.html embeds the
 * SVG it returns) and is served unchanged to the browser by the training dashboard, which redraws
 * with it as steps arrive.
 *
 * @module
 */

/**
 * One line of a chart.
 * @typedef {{ label: string, color: string, points: [number, number][], width?: number }} Series
 */

/**
 * Chart options.
 * @typedef {{ width?: number, height?: number, title?: string, xLabel?: string,
 *   yLabel?: string, logY?: boolean, empty?: string }} ChartOptions
 */

/**
 * A tick step of 1, 2 or 5 times a power of ten giving about `count` ticks over `range`.
 * @param {number} range
 * @param {number} count
 * @returns {number}
 */
export function niceStep(range, count) {
  if (!(range > 0)) return 1;
  const raw = range / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1.5 ? 1 : m <= 3 ? 2 : m <= 7 ? 5 : 10) * p;
}

/**
 * A tick label with few digits and no float noise (`0.30000000000000004` -> `0.3`).
 * @param {number} v
 * @param {number} step
 * @returns {string}
 */
export function tickLabel(v, step) {
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (abs >= 1e5 || abs < 1e-3) return v.toExponential(1).replace("e+", "e");
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(decimals);
}

/**
 * The trailing moving average of `values` over `window` entries (shorter at the start).
 * @param {readonly number[]} values
 * @param {number} window
 * @returns {number[]}
 */
export function movingAverage(values, window) {
  const out = [];
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    if (i >= window) sum -= values[i - window];
    out.push(sum / Math.min(i + 1, window));
  }
  return out;
}

/**
 * Text safe inside SVG/HTML.
 * @param {string} s
 * @returns {string}
 */
function esc(s) {
  return s.replace(
    /[&<>"]/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] ?? c,
  );
}

/**
 * The chart as an `<svg>` element's text. Non-finite points are dropped; with `logY`, so are
 * points at or below zero. A chart without points shows its axes and `empty`.
 * @param {readonly Series[]} series
 * @param {ChartOptions} [opts]
 * @returns {string}
 */
export function lineChartSvg(series, opts = {}) {
  const W = opts.width ?? 720, H = opts.height ?? 320;
  const left = 64, right = W - 16, top = opts.title ? 34 : 14, bottom = H - 40;
  const logY = opts.logY === true;
  const fy = logY ? Math.log10 : (/** @type {number} */ v) => v;
  const clean = series.map((s) => ({
    ...s,
    points: s.points.filter(([x, y]) =>
      Number.isFinite(x) && Number.isFinite(y) && (!logY || y > 0)
    ),
  }));
  const all = clean.flatMap((s) => s.points);
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of all) {
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, fy(y));
    y1 = Math.max(y1, fy(y));
  }
  if (all.length === 0) [x0, x1, y0, y1] = [0, 1, 0, 1];
  if (x1 - x0 < 1e-12) x1 = x0 + 1;
  if (y1 - y0 <= 1e-9 * Math.max(Math.abs(y0), Math.abs(y1))) {
    // A flat series (a constant learning rate): a band around its value, however small.
    const d = y0 !== 0 ? 0.5 * Math.abs(y0) : 0.5;
    y0 -= d;
    y1 += d;
  }
  const pad = 0.05 * (y1 - y0);
  y0 -= pad;
  y1 += pad;
  const sx = (/** @type {number} */ x) => left + ((x - x0) / (x1 - x0)) * (right - left);
  const sy = (/** @type {number} */ y) => bottom - ((fy(y) - y0) / (y1 - y0)) * (bottom - top);
  const sv = (/** @type {number} */ v) => bottom - ((v - y0) / (y1 - y0)) * (bottom - top);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" ` +
    `font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
  ];
  if (opts.title) {
    out.push(
      `<text x="${left}" y="20" font-size="13" font-weight="bold">${esc(opts.title)}</text>`,
    );
  }
  const xs = niceStep(x1 - x0, 8);
  for (let v = Math.ceil(x0 / xs) * xs; v <= x1 + 1e-9; v += xs) {
    const x = sx(v).toFixed(1);
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${bottom}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${x}" y="${bottom + 14}" text-anchor="middle">${tickLabel(v, xs)}</text>`);
  }
  const ys = niceStep(y1 - y0, 6);
  for (let v = Math.ceil(y0 / ys) * ys; v <= y1 + 1e-9; v += ys) {
    const y = sv(v).toFixed(1);
    const label = logY ? tickLabel(10 ** v, 10 ** v) : tickLabel(v, ys);
    out.push(`<line x1="${left}" y1="${y}" x2="${right}" y2="${y}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${left - 6}" y="${y}" text-anchor="end" dy="4">${label}</text>`);
  }
  out.push(
    `<polyline points="${left},${top} ${left},${bottom} ${right},${bottom}" fill="none" ` +
      `stroke="#333"/>`,
  );
  if (opts.xLabel) {
    out.push(
      `<text x="${(left + right) / 2}" y="${H - 6}" text-anchor="middle">${
        esc(opts.xLabel)
      }</text>`,
    );
  }
  if (opts.yLabel) {
    out.push(
      `<text transform="translate(12 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle">` +
        `${esc(opts.yLabel)}</text>`,
    );
  }
  for (const s of clean) {
    if (s.points.length === 0) continue;
    const pts = s.points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
    out.push(
      `<polyline class="series" data-label="${esc(s.label)}" data-points="${s.points.length}" ` +
        `points="${pts}" fill="none" stroke="${esc(s.color)}" stroke-width="${s.width ?? 1.5}" ` +
        `stroke-linejoin="round"/>`,
    );
    if (s.points.length === 1) {
      const [p] = s.points;
      out.push(
        `<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="2.5" ` +
          `fill="${esc(s.color)}"/>`,
      );
    }
  }
  let lx = right;
  for (const s of [...clean].reverse()) {
    const w = 26 + 6.5 * s.label.length;
    lx -= w;
    out.push(
      `<line x1="${lx}" y1="${top + 8}" x2="${lx + 18}" y2="${top + 8}" stroke="${esc(s.color)}" ` +
        `stroke-width="3"/>`,
      `<text x="${lx + 22}" y="${top + 12}">${esc(s.label)}</text>`,
    );
  }
  if (all.length === 0 && opts.empty) {
    out.push(
      `<text x="${(left + right) / 2}" y="${(top + bottom) / 2}" text-anchor="middle" ` +
        `fill="#777">${esc(opts.empty)}</text>`,
    );
  }
  out.push("</svg>");
  return out.join("");
}
