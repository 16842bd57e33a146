/**
 * Sums over dimensions: `sumTo` (undo a broadcast), `sum` and `mean` over chosen axes or all.
 *
 * @module
 */
import reduceSrc from "../../shaders/reduce_to.wgsl" with { type: "text" };
import stridedSrc from "../../shaders/strided.wgsl" with { type: "text" };
import wgSumSrc from "../../shaders/wg_sum.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { type KernelHeader, withHeader } from "../kernel_header.ts";
import { grid, PACK8, pack8, specKernel } from "../wgsl.ts";
import { check, stridesOf } from "./check.ts";
import { binaryRaw } from "./elementwise_raw.ts";

const WG = 256;
/** Kept dims (output order): sizes and input strides; reduced dims: sizes and input strides. */
const REDUCE: KernelHeader = {
  bindings: "x: T; out: rw T",
  params: `nOut nRed rank: u32; scale: f32; keepShape keepStride redShape redStride: ${PACK8}; ` +
    "nKeep nRedDims pad0 pad1: u32",
};

/** Sum `x` over `axes` (kept as size-1 when `keepDims`), times `factor`. No autograd. */
export function reduceRaw(x: Tensor, axes: number[], factor = 1, keepDims = false): Tensor {
  const strides = stridesOf(x.shape);
  const red = new Set(axes);
  const keepShape: number[] = [], keepStride: number[] = [];
  const redShape: number[] = [], redStride: number[] = [];
  x.shape.forEach((d, k) => {
    if (red.has(k)) (redShape.push(d), redStride.push(strides[k]));
    else (keepShape.push(d), keepStride.push(strides[k]));
  });
  const outShape = keepDims ? x.shape.map((d, k) => (red.has(k) ? 1 : d)) : keepShape;
  const out = Tensor.empty(outShape, x.dtype);
  const nOut = keepShape.reduce((a, b) => a * b, 1);
  const nRed = redShape.reduce((a, b) => a * b, 1);
  check(x.shape.length <= 8, "sum", () => `rank ${x.shape.length} > 8`);
  const u = uniforms().u(nOut, nRed, x.shape.length).f(factor)
    .u(...pack8(keepShape), ...pack8(keepStride), ...pack8(redShape), ...pack8(redStride))
    .u(keepShape.length, redShape.length, 0, 0);
  const [gx, gy] = grid(nOut, 1);
  rt().dispatch(
    specKernel("reduce_to", () => withHeader(REDUCE, reduceSrc, stridedSrc, wgSumSrc), x.dtype, {
      WG,
    }),
    [x.buffer, out.buffer],
    u,
    [
      gx,
      gy,
    ],
  );
  return out;
}

/** Reduce a gradient of a broadcast result back to `shape` (sum over broadcast dimensions). */
export function sumTo(g: Tensor, shape: number[]): Tensor {
  if (g.shape.join() === shape.join()) return g.retain();
  const off = g.shape.length - shape.length;
  const axes: number[] = [];
  g.shape.forEach((d, k) => {
    const j = k - off;
    if (j < 0 || (shape[j] === 1 && d !== 1)) axes.push(k);
  });
  const r = reduceRaw(g, axes, 1, false);
  return reshapeRaw(r, shape);
}

function reshapeRaw(t: Tensor, shape: number[]): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  check(n === t.size, "reshape", () => `[${t.shape}] -> [${shape}]`);
  const out = new Tensor(shape, t.dtype, t.storage.retain());
  t.dispose();
  return out;
}

/** Sum over `axes` (all axes when omitted). */
export function sum(x: Tensor, axes?: number[], keepDims = false): Tensor {
  const ax = axes ?? x.shape.map((_, k) => k);
  const y = reduceRaw(x, ax, 1, keepDims);
  return record("sum", [x], y, [], (g) => [broadcastBack(g, x.shape, ax, 1)]);
}

/** Mean over `axes` (all axes when omitted). */
export function mean(x: Tensor, axes?: number[], keepDims = false): Tensor {
  const ax = axes ?? x.shape.map((_, k) => k);
  const n = ax.reduce((a, k) => a * x.shape[k], 1);
  const y = reduceRaw(x, ax, 1 / n, keepDims);
  return record("mean", [x], y, [], (g) => [broadcastBack(g, x.shape, ax, 1 / n)]);
}

/** Expand a reduced gradient back to `shape` times `factor` (via a broadcasting multiply). */
function broadcastBack(g: Tensor, shape: number[], axes: number[], factor: number): Tensor {
  const kept = shape.map((d, k) => (axes.includes(k) ? 1 : d));
  const gk = new Tensor(kept, g.dtype, g.storage.retain());
  const ones = Tensor.full(shape, factor, g.dtype);
  const out = binaryRaw("mul", ones, gk);
  ones.dispose();
  gk.dispose();
  return out;
}
