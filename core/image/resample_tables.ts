/**
 * Per-axis coefficient tables that reproduce OpenCV's `cv::resize` (4.x) for 8-bit images.
 *
 * A resize is separable: a horizontal pass then a vertical pass, each described by one table
 * giving, for every output index, the first source index and `taps` weights. Source indices
 * outside the image are clamped to the edge (OpenCV's replicate border). The same tables feed
 * the CPU apply in `resample.ts` and, later, a WGSL kernel, so both agree by construction.
 *
 * How the 8-bit result is rounded depends on the path OpenCV takes, recorded in `kind`. Weights of
 * the interpolating kinds are `round(w * 2048)` (11-bit fixed point, *not* renormalised, exactly as
 * OpenCV stores them), so the horizontal sums are exact integers scaled by 2048.
 * - `fixed` (INTER_LANCZOS4): the pixel is `(sum + 2^21) >> 22`, clamped to 0..255.
 * - `cubic` (INTER_CUBIC): OpenCV's SIMD row code converts the sums to float32, multiplies by
 *   `w / 2^22` and adds taps 3, 2, 1, 0 in that order, rounding half to even; the last
 *   `rowLength % 8` values of a row use the `fixed` rule (its scalar tail).
 * - `linear` (INTER_AREA while enlarging, a 2-tap linear filter): OpenCV's SIMD formula
 *   `((s0 >> 4) * w0 >> 16) + ((s1 >> 4) * w1 >> 16)`, then `(v + 2) >> 2`.
 * - `float` (INTER_AREA shrinking by a non-integer factor): float32 weights `overlap / cellWidth`
 *   accumulated in float32; the pixel is rounded half to even (OpenCV's `cvRound`).
 * - `box` (INTER_AREA shrinking by an exact integer factor k): unit weights; the integer box sum
 *   becomes `(s + 2) >> 2` for 2x2 and `cvRound(s * float(1 / k^2))` otherwise.
 * All five were checked bit-exact against OpenCV 4.6's `cv2.resize` on random 1-, 3- and
 * 4-channel images (other SIMD widths may round a rare tie differently).
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** The filters kohya's tools offer, named as its `--interpolation` flag names them. */
export type Interpolation = "area" | "cubic" | "lanczos4";

/** How the weighted sums of a plan become 8-bit pixels (see the module comment). */
export type ResampleKind = "fixed" | "cubic" | "linear" | "float" | "box";

/** One axis of a separable resize. */
export interface AxisTable {
  readonly inSize: number;
  readonly outSize: number;
  /** Weights per output index; unused trailing taps carry weight 0. */
  readonly taps: number;
  /** First source index for each output (may be < 0 or run past the end: clamp when reading). */
  readonly start: Int32Array;
  /** `outSize * taps` weights: integers for `fixed` and `box`, float32 values for `float`. */
  readonly weights: Float32Array;
}

/** A full 2-D resize: horizontal table, vertical table and the rounding rule. */
export interface ResamplePlan {
  readonly kind: ResampleKind;
  readonly x: AxisTable;
  readonly y: AxisTable;
}

/** Fixed-point scale of OpenCV's 8-bit resize coefficients (INTER_RESIZE_COEF_BITS = 11). */
export const COEF_BITS = 11;
const COEF_SCALE = 1 << COEF_BITS;

const f32 = Math.fround;

/** `cvRound` / `saturate_cast<short>(float)`: round half to even. */
export function roundHalfEven(v: number): number {
  let r = Math.round(v);
  if (r - v === 0.5 && (r & 1) !== 0) r -= 1;
  return r;
}

/** OpenCV's `interpolateCubic` (Keys, a = -0.75), evaluated in float32 as the C++ code does. */
export function cubicCoefficients(x: number, out: Float32Array): void {
  const A = -0.75;
  const x1 = f32(x + 1);
  out[0] = f32(f32(f32(f32(f32(f32(A * x1) - f32(5 * A)) * x1) + f32(8 * A)) * x1) - f32(4 * A));
  out[1] = f32(f32(f32(f32(f32((A + 2) * x) - (A + 3)) * x) * x) + 1);
  const y = f32(1 - x);
  out[2] = f32(f32(f32(f32(f32((A + 2) * y) - (A + 3)) * y) * y) + 1);
  out[3] = f32(f32(f32(1 - out[0]) - out[1]) - out[2]);
}

const S45 = 0.70710678118654752440084436210485;
const LANCZOS_CS: readonly (readonly [number, number])[] = [
  [1, 0],
  [-S45, -S45],
  [0, 1],
  [S45, -S45],
  [-1, 0],
  [S45, S45],
  [0, -1],
  [-S45, S45],
];

/**
 * OpenCV's `interpolateLanczos4`: an 8-tap windowed sinc from one sin/cos pair (the other taps
 * follow by the angle-addition rotations in LANCZOS_CS), normalised to sum 1 in float32.
 */
export function lanczos4Coefficients(x: number, out: Float32Array): void {
  const y0 = -(x + 3) * Math.PI * 0.25;
  const s0 = Math.sin(y0);
  const c0 = Math.cos(y0);
  let sum = 0;
  for (let i = 0; i < 8; i++) {
    const d = f32(x + 3 - i);
    if (Math.abs(d) >= 1e-6) {
      const y = -d * Math.PI * 0.25;
      out[i] = f32((LANCZOS_CS[i][0] * s0 + LANCZOS_CS[i][1] * c0) / (y * y));
    } else {
      // A tap exactly on a source pixel: OpenCV gives it a huge weight so it normalises to 1.
      out[i] = f32(1e30);
    }
    sum = f32(sum + out[i]);
  }
  const inv = f32(1 / sum);
  for (let i = 0; i < 8; i++) out[i] = f32(out[i] * inv);
}

function checkSizes(inSize: number, outSize: number): void {
  if (!Number.isInteger(inSize) || !Number.isInteger(outSize) || inSize < 1 || outSize < 1) {
    throw new LorakitError(`resize sizes must be positive integers, found ${inSize} -> ${outSize}`);
  }
}

/**
 * The interpolating table of OpenCV's generic resize path (`resizeGeneric_`): cubic (4 taps),
 * Lanczos-4 (8 taps), or the 2-tap "area while enlarging" variant, in 11-bit fixed point.
 */
export function interpolatingAxis(
  inSize: number,
  outSize: number,
  filter: "cubic" | "lanczos4" | "area-up",
): AxisTable {
  checkSizes(inSize, outSize);
  const invScale = outSize / inSize;
  const scale = 1 / invScale;
  const taps = filter === "cubic" ? 4 : filter === "lanczos4" ? 8 : 2;
  const half = taps / 2;
  const start = new Int32Array(outSize);
  const weights = new Float32Array(outSize * taps);
  const cbuf = new Float32Array(taps);
  for (let d = 0; d < outSize; d++) {
    let fx: number;
    let sx: number;
    if (filter !== "area-up") {
      fx = f32((d + 0.5) * scale - 0.5);
      sx = Math.floor(fx);
      fx = f32(fx - sx);
    } else {
      sx = Math.floor(d * scale);
      fx = f32(d + 1 - (sx + 1) * invScale);
      fx = fx <= 0 ? 0 : f32(fx - Math.floor(fx));
      // Linear taps that would fall off an edge snap to the edge pixel with full weight.
      if (sx < 0) (fx = 0), (sx = 0);
      if (sx >= inSize - 1) (fx = 0), (sx = inSize - 1);
    }
    if (filter === "cubic") cubicCoefficients(fx, cbuf);
    else if (filter === "lanczos4") lanczos4Coefficients(fx, cbuf);
    else (cbuf[0] = f32(1 - fx)), (cbuf[1] = fx);
    start[d] = sx - half + 1;
    for (let k = 0; k < taps; k++) {
      // saturate_cast<short>(coef * 2048): each tap rounded on its own; the sum may miss 2048.
      weights[d * taps + k] = roundHalfEven(f32(cbuf[k] * COEF_SCALE));
    }
  }
  return { inSize, outSize, taps, start, weights };
}

/**
 * The table of OpenCV's `computeResizeAreaTab` for shrinking by a non-integer factor: each output
 * averages the source cells it overlaps, partial cells weighted by the overlap, over the cell
 * width (clipped at the image end).
 */
export function areaAxis(inSize: number, outSize: number): AxisTable {
  checkSizes(inSize, outSize);
  const scale = 1 / (outSize / inSize);
  const starts: number[] = [];
  const lists: number[][] = [];
  let taps = 1;
  for (let d = 0; d < outSize; d++) {
    const fsx1 = d * scale;
    const fsx2 = fsx1 + scale;
    const cellWidth = Math.min(scale, inSize - fsx1);
    let sx2 = Math.floor(fsx2);
    let sx1 = Math.ceil(fsx1);
    sx2 = Math.min(sx2, inSize - 1);
    sx1 = Math.min(sx1, sx2);
    const w: number[] = [];
    let first = sx1;
    if (sx1 - fsx1 > 1e-3) {
      first = sx1 - 1;
      w.push(f32((sx1 - fsx1) / cellWidth));
    }
    for (let s = sx1; s < sx2; s++) w.push(f32(1 / cellWidth));
    if (fsx2 - sx2 > 1e-3) w.push(f32(Math.min(Math.min(fsx2 - sx2, 1), cellWidth) / cellWidth));
    starts.push(first);
    lists.push(w);
    taps = Math.max(taps, w.length);
  }
  const start = Int32Array.from(starts);
  const weights = new Float32Array(outSize * taps);
  lists.forEach((w, d) => weights.set(w, d * taps));
  return { inSize, outSize, taps, start, weights };
}

/** Unit-weight box of width `k` (OpenCV's fast area path for an exact integer factor). */
export function boxAxis(inSize: number, outSize: number, k: number): AxisTable {
  checkSizes(inSize, outSize);
  const start = new Int32Array(outSize);
  for (let d = 0; d < outSize; d++) start[d] = d * k;
  return { inSize, outSize, taps: k, start, weights: new Float32Array(outSize * k).fill(1) };
}

/**
 * The plan `cv::resize(src, (outW, outH), interpolation)` follows for an 8-bit image of
 * `inW` x `inH`, including OpenCV's choice between its area paths.
 */
export function planResize(
  inW: number,
  inH: number,
  outW: number,
  outH: number,
  interpolation: Interpolation,
): ResamplePlan {
  checkSizes(inW, outW);
  checkSizes(inH, outH);
  if (interpolation === "area") {
    const scaleX = 1 / (outW / inW);
    const scaleY = 1 / (outH / inH);
    if (scaleX >= 1 && scaleY >= 1) {
      const kx = Math.round(scaleX);
      const ky = Math.round(scaleY);
      const exact = Math.abs(scaleX - kx) < Number.EPSILON &&
        Math.abs(scaleY - ky) < Number.EPSILON;
      if (exact) return { kind: "box", x: boxAxis(inW, outW, kx), y: boxAxis(inH, outH, ky) };
      return { kind: "float", x: areaAxis(inW, outW), y: areaAxis(inH, outH) };
    }
    // Enlarging along either axis: OpenCV switches both axes to its linear "area" variant.
    return {
      kind: "linear",
      x: interpolatingAxis(inW, outW, "area-up"),
      y: interpolatingAxis(inH, outH, "area-up"),
    };
  }
  if (interpolation !== "cubic" && interpolation !== "lanczos4") {
    throw new LorakitError(
      `unknown interpolation "${interpolation}": expected area, cubic or lanczos4`,
    );
  }
  return {
    kind: interpolation === "cubic" ? "cubic" : "fixed",
    x: interpolatingAxis(inW, outW, interpolation),
    y: interpolatingAxis(inH, outH, interpolation),
  };
}
