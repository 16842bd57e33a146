/**
 * Launchers for the optimizers' reductions (shaders/optim_reduce.wgsl): partial sums of squares
 * with a bounded workgroup count and their final sum into a slot of a small tensor. Nothing
 * here reads back.
 *
 * @module
 */
import { REDUCE } from "./sources.ts";
import { type Kernel, rt, uniforms } from "../runtime.ts";
import type { DType, Tensor } from "../tensor.ts";
import { specKernel } from "../wgsl.ts";

/** Threads per workgroup of every reduction here. */
export const RED_WG = 256;
/** The most partial sums one tensor contributes (bounds the second stage). */
export const MAX_PARTS = 256;

/** Workgroups (= partial sums) used for a tensor of `n` elements. */
export function partsFor(n: number): number {
  // Several elements per thread: barriers of the tree sum cost more than the serial adds.
  return Math.max(1, Math.min(MAX_PARTS, Math.ceil(n / (RED_WG * 16))));
}

/** The reduction kernel `entry` specialised for a dtype. */
export function reduceKernel(dtype: DType, entry: string): Kernel {
  return specKernel("optim_reduce", REDUCE, dtype, { WG: RED_WG }, entry);
}

/** Write `partsFor(x.size)` partial sums of (x*scale)^2 into `out[off..]`. */
export function encodeSumsq(x: Tensor, out: Tensor, off: number, scale = 1): number {
  const parts = partsFor(x.size);
  rt().dispatch(
    reduceKernel(x.dtype, "sumsq"),
    [x.buffer, out.buffer],
    uniforms().u(x.size, off).f(scale).u(0),
    [parts],
  );
  return parts;
}

/** `out[slot] = sum(partials[0..count))`. */
export function encodeSumFinal(partials: Tensor, count: number, out: Tensor, slot: number): void {
  rt().dispatch(
    reduceKernel("f32", "sum_final"),
    [partials.buffer, out.buffer],
    uniforms().u(count, slot).f(0, 0),
    [1],
  );
}
