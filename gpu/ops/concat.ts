/**
 * Concatenation and slicing along one axis (`concat`, `slice`, and the NCHW channel forms
 * `concatChannels`, `sliceChannels`), each with its backward: the gradient of a concat is a slice
 * per input, and the gradient of a slice is the window zero-padded back to the input's shape.
 *
 * @module
 */
import concatSrc from "../../shaders/concat.wgsl" with { type: "text" };
import split3Src from "../../shaders/split3.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { headed } from "../kernel_header.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check, fmt } from "./check.ts";

const WG = 256;
const CONCAT = headed(
  { bindings: "src: T; dst: rw T", params: "n inner sLen dLen: u32; off: i32; p0 p1 p2: u32" },
  concatSrc,
  split3Src,
);

function prod(xs: number[]): number {
  return xs.reduce((a, b) => a * b, 1);
}

/** Resolve a possibly negative axis of a rank-`rank` tensor. */
function resolveAxis(op: string, axis: number, rank: number, what: () => string): number {
  const a = axis < 0 ? axis + rank : axis;
  check(
    Number.isInteger(axis) && a >= 0 && a < rank,
    op,
    () => `axis ${axis} out of range: ${what()}`,
  );
  return a;
}

/**
 * `dst = window of src along axis`: dst has `dLen` entries along `axis`, entry d reads src entry
 * `d + off` (zero when outside src). No autograd.
 */
function windowRaw(src: Tensor, axis: number, dLen: number, off: number): Tensor {
  const shape = src.shape.slice();
  shape[axis] = dLen;
  const out = Tensor.empty(shape, src.dtype);
  const n = out.size;
  if (n === 0) return out;
  const inner = prod(src.shape.slice(axis + 1));
  const u = uniforms().u(n, inner, src.shape[axis], dLen).i(off).u(0, 0, 0);
  const pipe = specKernel("concat:concatSrc", CONCAT, src.dtype, { WG }, "window");
  rt().dispatch(pipe, [src.buffer, out.buffer], u, grid(n, WG));
  return out;
}

/** Concatenate along `axis` (negative counts from the end) without autograd. */
export function concatRaw(tensors: Tensor[], axis: number): Tensor {
  const op = "concat";
  const what = () => tensors.map(fmt).join(", ");
  check(tensors.length > 0, op, () => "no tensors to concatenate");
  const first = tensors[0];
  const a = resolveAxis(op, axis, first.rank, what);
  for (const t of tensors) {
    check(t.dtype === first.dtype, op, () => `dtypes differ: ${what()}`);
    check(
      t.rank === first.rank && t.shape.every((d, k) => k === a || d === first.shape[k]),
      op,
      () => `shapes differ outside axis ${a}: ${what()}`,
    );
  }
  const shape = first.shape.slice();
  shape[a] = tensors.reduce((s, t) => s + t.shape[a], 0);
  const out = Tensor.empty(shape, first.dtype);
  const inner = prod(shape.slice(a + 1));
  const pipe = specKernel("concat:concatSrc", CONCAT, first.dtype, { WG }, "place");
  let off = 0;
  for (const t of tensors) {
    const n = t.size;
    if (n > 0) {
      const u = uniforms().u(n, inner, t.shape[a], shape[a]).i(off).u(0, 0, 0);
      rt().dispatch(pipe, [t.buffer, out.buffer], u, grid(n, WG));
    }
    off += t.shape[a];
  }
  return out;
}

/** Concatenate tensors of equal shape outside `axis` (negative counts from the end). */
export function concat(tensors: Tensor[], axis: number): Tensor {
  const y = concatRaw(tensors, axis);
  const a = axis < 0 ? axis + y.rank : axis;
  const offsets: number[] = [];
  let off = 0;
  for (const t of tensors) (offsets.push(off), off += t.shape[a]);
  return record(
    "concat",
    tensors,
    y,
    [],
    (g) => tensors.map((t, k) => t.requiresGrad ? windowRaw(g, a, t.shape[a], offsets[k]) : null),
  );
}

/** Concatenate NCHW tensors along the channel axis (the U-Net's skip connections). */
export function concatChannels(tensors: Tensor[]): Tensor {
  for (const t of tensors) {
    check(
      t.rank === 4,
      "concatChannels",
      () => `expects NCHW (4-D) tensors: ${tensors.map(fmt).join(", ")}`,
    );
  }
  return concat(tensors, 1);
}

/** Entries `[start, end)` of `x` along `axis` (negative axis counts from the end), no autograd. */
export function sliceRaw(x: Tensor, axis: number, start: number, end: number): Tensor {
  const op = "slice";
  const what = () => `${fmt(x)}, axis ${axis}, [${start}, ${end})`;
  const a = resolveAxis(op, axis, x.rank, what);
  check(
    Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end &&
      end <= x.shape[a],
    op,
    () => `range out of bounds: ${what()}`,
  );
  return windowRaw(x, a, end - start, start);
}

/** Entries `[start, end)` of `x` along `axis` (negative axis counts from the end). */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const y = sliceRaw(x, axis, start, end);
  const a = axis < 0 ? axis + x.rank : axis;
  return record("slice", [x], y, [], (g) => [windowRaw(g, a, x.shape[a], -start)]);
}

/** Channels `[start, end)` of an NCHW tensor. */
export function sliceChannels(x: Tensor, start: number, end: number): Tensor {
  check(x.rank === 4, "sliceChannels", () => `expects an NCHW (4-D) tensor: ${fmt(x)}`);
  return slice(x, 1, start, end);
}
