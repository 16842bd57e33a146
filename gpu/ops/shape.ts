/**
 * Shape ops: `reshape` (free: a new handle on the same storage) and `permute`/`transpose` (a
 * gather kernel), each differentiable.
 *
 * @module
 */
import permuteSrc from "../../shaders/permute.wgsl" with { type: "text" };
import stridedSrc from "../../shaders/strided.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { numel, Tensor } from "../tensor.ts";
import { type KernelHeader, withHeader } from "../kernel_header.ts";
import { grid, PACK8, pack8, specKernel } from "../wgsl.ts";
import { check, fmt, stridesOf } from "./check.ts";

const WG = 256;
const PERMUTE: KernelHeader = {
  bindings: "x: T; out: rw T",
  params: `n rank pad0 pad1: u32; outShape inStride: ${PACK8}`,
};

/** Same data, new shape (one dimension may be -1). */
export function reshape(x: Tensor, shape: number[]): Tensor {
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const resolved = shape.map((d) => (d === -1 ? x.size / known : d));
  check(
    numel(resolved) === x.size && resolved.every(Number.isInteger),
    "reshape",
    () => `cannot reshape ${fmt(x)} to [${shape}]`,
  );
  const y = new Tensor(resolved, x.dtype, x.storage.retain());
  return record("reshape", [x], y, [], (g) => [reshape(g, x.shape)]);
}

function permuteRaw(x: Tensor, perm: number[]): Tensor {
  const inStrides = stridesOf(x.shape);
  const outShape = perm.map((p) => x.shape[p]);
  const out = Tensor.empty(outShape, x.dtype);
  const n = x.size;
  if (n === 0) return out;
  const u = uniforms().u(n, perm.length, 0, 0).u(...pack8(outShape))
    .u(...pack8(perm.map((p) => inStrides[p])));
  rt().dispatch(
    specKernel("shape:permuteSrc", () => withHeader(PERMUTE, permuteSrc, stridedSrc), x.dtype, {
      WG,
    }),
    [x.buffer, out.buffer],
    u,
    grid(n, WG),
  );
  return out;
}

/** Reorder axes: output axis k is input axis perm[k]. */
export function permute(x: Tensor, perm: number[]): Tensor {
  check(
    perm.length === x.rank && [...perm].sort().every((p, k) => p === k) && x.rank <= 8,
    "permute",
    () => `perm [${perm}] is not a permutation of the axes of ${fmt(x)}`,
  );
  const inv = new Array(perm.length);
  perm.forEach((p, k) => (inv[p] = k));
  const y = permuteRaw(x, perm);
  return record("permute", [x], y, [], (g) => [permuteRaw(g, inv)]);
}

/** Swap two axes. */
export function transpose(x: Tensor, a: number, b: number): Tensor {
  const perm = x.shape.map((_, k) => k);
  const ra = a < 0 ? x.rank + a : a, rb = b < 0 ? x.rank + b : b;
  [perm[ra], perm[rb]] = [perm[rb], perm[ra]];
  return permute(x, perm);
}
