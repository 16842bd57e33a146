/**
 * Argument checks shared by the ops: a bad shape or dtype is an error naming the op and the
 * shapes, raised before anything reaches WebGPU validation.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";

/** A shape or dtype error in an op's arguments. */
export class OpArgumentError extends Error {
  constructor(op: string, detail: string) {
    super(`${op}: ${detail}`);
    this.name = "OpArgumentError";
  }
}

/** Format a tensor for messages: `f32[2,3]`. */
export function fmt(t: Tensor): string {
  return `${t.dtype}[${t.shape.join(",")}]`;
}

/** Throw an OpArgumentError unless `cond`. */
export function check(cond: boolean, op: string, detail: () => string): asserts cond {
  if (!cond) throw new OpArgumentError(op, detail());
}

/** All tensors share a dtype. */
export function sameDtype(op: string, ...ts: Tensor[]): void {
  const d = ts[0].dtype;
  check(ts.every((t) => t.dtype === d), op, () => `dtypes differ: ${ts.map(fmt).join(", ")}`);
}

/** Broadcast two shapes numpy-style; throws naming the op. */
export function broadcastShapes(op: string, a: number[], b: number[]): number[] {
  const r = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < r; i++) {
    const x = a[a.length - r + i] ?? 1;
    const y = b[b.length - r + i] ?? 1;
    check(
      x === y || x === 1 || y === 1,
      op,
      () => `shapes [${a}] and [${b}] do not broadcast`,
    );
    out.push(Math.max(x, y));
  }
  return out;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}
