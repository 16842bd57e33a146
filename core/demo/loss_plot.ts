/**
 * The training loss curve as an RGBA image: axes with "nice" ticks and numeric labels, the
 * per-step loss (light) and its trailing moving average (dark), drawn into a plain buffer with
 * our own rasteriser and pixel font, ready for `encodePng`.
 *
 * @module
 */
import { makeImage, type RasterImage } from "../image/image.ts";
import { movingAverage, niceStep, tickLabel } from "../plot/line_chart.js";
import { drawText, textHeight, textWidth } from "./pixel_font.ts";

export { movingAverage, niceStep, tickLabel };

/** One point of the curve. */
export interface LossPoint {
  step: number;
  loss: number;
}

/** Options of {@link drawLossPlot}. */
export interface LossPlotOptions {
  width?: number;
  height?: number;
  /** Moving-average window in steps (default: about a twentieth of the run, at least 1). */
  window?: number;
}

type Rgb = readonly [number, number, number];

const WHITE: Rgb = [255, 255, 255];
const AXIS: Rgb = [40, 40, 40];
const GRID: Rgb = [228, 228, 228];
const RAW: Rgb = [150, 185, 230];
const AVG: Rgb = [200, 40, 40];

/** A minimal RGBA canvas. */
class Canvas {
  readonly img: RasterImage;
  constructor(readonly width: number, readonly height: number, bg: Rgb) {
    this.img = makeImage(width, height, 4);
    for (let i = 0; i < width * height; i++) this.img.data.set([...bg, 255], i * 4);
  }
  put(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.img.data.set(c, (y * this.width + x) * 4);
  }
  hline(x0: number, x1: number, y: number, c: Rgb): void {
    for (let x = Math.round(x0); x <= Math.round(x1); x++) this.put(x, y, c);
  }
  vline(x: number, y0: number, y1: number, c: Rgb): void {
    for (let y = Math.round(y0); y <= Math.round(y1); y++) this.put(x, y, c);
  }
  /** A line of the given thickness (a square brush stepped along the longer axis). */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thick = 1): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    const r = (thick - 1) / 2;
    for (let i = 0; i <= n; i++) {
      const x = x0 + ((x1 - x0) * i) / n, y = y0 + ((y1 - y0) * i) / n;
      for (let dy = -Math.floor(r); dy <= Math.ceil(r); dy++) {
        for (let dx = -Math.floor(r); dx <= Math.ceil(r); dx++) this.put(x + dx, y + dy, c);
      }
    }
  }
  text(s: string, x: number, y: number, c: Rgb, scale = 2): void {
    drawText(s, Math.round(x), Math.round(y), scale, (px, py) => this.put(px, py, c));
  }
}

/** Draw the loss curve; an empty or all-non-finite list gives the axes alone. */
export function drawLossPlot(
  points: readonly LossPoint[],
  opts: LossPlotOptions = {},
): RasterImage {
  const W = opts.width ?? 720, H = opts.height ?? 360;
  const cv = new Canvas(W, H, WHITE);
  const pts = points.filter((p) => Number.isFinite(p.loss) && Number.isFinite(p.step));
  const window = opts.window ?? Math.max(1, Math.round(pts.length / 20));
  const avg = movingAverage(pts.map((p) => p.loss), window);
  const left = 70, right = W - 20, top = 36, bottom = H - 44;
  const x0 = pts.length > 0 ? Math.min(...pts.map((p) => p.step)) : 0;
  const x1 = pts.length > 0 ? Math.max(...pts.map((p) => p.step)) : 1;
  let y0 = pts.length > 0 ? Math.min(...pts.map((p) => p.loss)) : 0;
  let y1 = pts.length > 0 ? Math.max(...pts.map((p) => p.loss)) : 1;
  if (y1 - y0 < 1e-12) {
    y0 -= 0.5 * Math.max(Math.abs(y0), 1e-3);
    y1 += 0.5 * Math.max(Math.abs(y1), 1e-3);
  }
  const pad = 0.05 * (y1 - y0);
  y0 -= pad;
  y1 += pad;
  const xs = x1 > x0 ? x1 - x0 : 1;
  const sx = (s: number) => left + ((s - x0) / xs) * (right - left);
  const sy = (v: number) => bottom - ((v - y0) / (y1 - y0)) * (bottom - top);
  // Grid and ticks.
  const ys = niceStep(y1 - y0, 5);
  for (let v = Math.ceil(y0 / ys) * ys; v <= y1 + 1e-12; v += ys) {
    const y = sy(v);
    cv.hline(left + 1, right, y, GRID);
    cv.hline(left - 5, left, y, AXIS);
    const label = tickLabel(v, ys);
    cv.text(label, left - 9 - textWidth(label, 2), y - textHeight(2) / 2, AXIS);
  }
  const xstep = Math.max(1, niceStep(xs, 6));
  for (let s = Math.ceil(x0 / xstep) * xstep; s <= x1 + 1e-9; s += xstep) {
    const x = sx(s);
    cv.vline(x, top, bottom - 1, GRID);
    cv.vline(x, bottom, bottom + 5, AXIS);
    const label = tickLabel(s, xstep);
    cv.text(label, x - textWidth(label, 2) / 2, bottom + 10, AXIS);
  }
  cv.vline(left, top, bottom, AXIS);
  cv.hline(left, right, bottom, AXIS);
  cv.text("step", (left + right) / 2 - textWidth("step", 2) / 2, H - 16, AXIS);
  cv.text("loss", 8, 10, AXIS);
  // Curves: raw loss first, the average over it.
  for (let i = 1; i < pts.length; i++) {
    cv.line(sx(pts[i - 1].step), sy(pts[i - 1].loss), sx(pts[i].step), sy(pts[i].loss), RAW);
  }
  if (pts.length === 1) {
    cv.line(sx(pts[0].step), sy(pts[0].loss), sx(pts[0].step), sy(pts[0].loss), RAW, 3);
  }
  for (let i = 1; i < pts.length; i++) {
    cv.line(sx(pts[i - 1].step), sy(avg[i - 1]), sx(pts[i].step), sy(avg[i]), AVG, 2);
  }
  // Legend, top right.
  const legend: [string, Rgb][] = [["loss per step", RAW], [`moving avg (${window})`, AVG]];
  let ly = 10;
  for (const [label, colour] of legend) {
    const lx = right - textWidth(label, 2) - 30;
    cv.line(lx, ly + 5, lx + 20, ly + 5, colour, 3);
    cv.text(label, lx + 26, ly, AXIS);
    ly += 14;
  }
  return cv.img;
}
