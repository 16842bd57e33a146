/**
 * Softmax over the last axis with its backward `dx = y * (g - sum(g * y))`; f32 arithmetic for
 * f32 and f16 storage. (Attention does not use it: its softmax is fused, see `attention.ts`.)
 *
 * @module
 */
import fwdSrc from "../../shaders/softmax.wgsl" with { type: "text" };
import bwdSrc from "../../shaders/softmax_bwd.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { headed } from "../kernel_header.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check, fmt } from "./check.ts";

/** Rows per workgroup (one invocation per row). */
const WG = 64;
const ROWS = "rows n pad0 pad1: u32";
const FWD = headed({ bindings: "x: T; y: rw T", params: ROWS }, fwdSrc);
const BWD = headed({ bindings: "y g: T; dx: rw T", params: ROWS }, bwdSrc);

function rowsOf(x: Tensor): [number, number] {
  const n = x.shape[x.rank - 1];
  return [x.size / n, n];
}

/** Softmax without autograd. */
export function softmaxRaw(x: Tensor): Tensor {
  const [rows, n] = rowsOf(x);
  const y = Tensor.empty(x.shape.slice(), x.dtype);
  rt().dispatch(
    specKernel("softmax:fwd", FWD, x.dtype, { WG }),
    [x.buffer, y.buffer],
    uniforms().u(rows, n, 0, 0),
    grid(rows, WG),
  );
  return y;
}

/** Softmax backward without autograd: `y * (g - rowsum(g * y))`. */
export function softmaxBackwardRaw(y: Tensor, g: Tensor): Tensor {
  check(
    y.shape.join() === g.shape.join() && y.dtype === g.dtype,
    "softmax backward",
    () => `gradient ${fmt(g)} does not match output ${fmt(y)}`,
  );
  const [rows, n] = rowsOf(y);
  const dx = Tensor.empty(y.shape.slice(), y.dtype);
  rt().dispatch(
    specKernel("softmax:bwd", BWD, y.dtype, { WG }),
    [y.buffer, g.buffer, dx.buffer],
    uniforms().u(rows, n, 0, 0),
    grid(rows, WG),
  );
  return dx;
}

/** Softmax over `axis` (only the last axis, -1 or rank - 1, is supported). */
export function softmax(x: Tensor, axis = -1): Tensor {
  check(x.rank >= 1 && x.size > 0, "softmax", () => `needs a non-empty tensor, got ${fmt(x)}`);
  check(
    axis === -1 || axis === x.rank - 1,
    "softmax",
    () => `only the last axis is supported, got axis ${axis} for ${fmt(x)}`,
  );
  const y = softmaxRaw(x);
  return record("softmax", [x], y, [y], (g, [sy]) => [softmaxBackwardRaw(sy, g)]);
}
