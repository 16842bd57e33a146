/**
 * Elementwise ops: broadcasting add/sub/mul/div/maximum/minimum, scalar scale, offset and clamp,
 * activations (ReLU, SiLU, GELU erf/tanh, QuickGELU), each with its backward; `sumTo` reduces a
 * broadcast gradient back to an input's shape. Where a function has a kink (ReLU at 0, clamp at
 * its bounds, maximum/minimum on ties) the gradient follows PyTorch's choice there.
 *
 * @module
 */
import { record, registerGradHelpers } from "../autograd.ts";
import { Tensor } from "../tensor.ts";
import { check, fmt } from "./check.ts";
import { binaryRaw, UN_BWD, UN_FWD, unaryRaw, type UnOp } from "./elementwise_raw.ts";
import { sumTo } from "./reduce.ts";

/** a + b (broadcasting). */
export function add(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("add", a, b);
  return record("add", [a, b], y, [], (g) => [sumTo(g, a.shape), sumTo(g, b.shape)]);
}

/** a - b (broadcasting). */
export function sub(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("sub", a, b);
  return record("sub", [a, b], y, [], (g) => [sumTo(g, a.shape), sumTo(scale(g, -1), b.shape)]);
}

/** a * b (broadcasting). */
export function mul(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("mul", a, b);
  return record("mul", [a, b], y, [a, b], (g, [sa, sb]) => [
    a.requiresGrad ? sumTo(binaryRaw("mul", g, sb), a.shape) : null,
    b.requiresGrad ? sumTo(binaryRaw("mul", g, sa), b.shape) : null,
  ]);
}

/** a / b (broadcasting). */
export function div(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("div", a, b);
  return record("div", [a, b], y, [a, b], (g, [sa, sb]) => {
    const ga = a.requiresGrad ? sumTo(binaryRaw("div", g, sb), a.shape) : null;
    let gb: Tensor | null = null;
    if (b.requiresGrad) {
      // d(a/b)/db = -a / b^2
      const q = binaryRaw("div", binaryRaw("div", sa, sb), sb);
      gb = sumTo(scale(binaryRaw("mul", g, q), -1), b.shape);
    }
    return [ga, gb];
  });
}

/**
 * The gradients of a broadcasting `maximum` (share "maxShare") or `minimum` ("minShare"): each
 * input gets `g` where it won, half of `g` on a tie (torch.maximum's rule), summed back to its
 * shape.
 */
function extremumGrads(
  share: "maxShare" | "minShare",
  a: Tensor,
  b: Tensor,
  g: Tensor,
  [sa, sb]: Tensor[],
): (Tensor | null)[] {
  const part = (x: Tensor, sx: Tensor, sy: Tensor) =>
    x.requiresGrad ? sumTo(binaryRaw("mul", g, binaryRaw(share, sx, sy)), x.shape) : null;
  return [part(a, sa, sb), part(b, sb, sa)];
}

/** max(a, b) elementwise (broadcasting); a tie sends half the gradient to each input. */
export function maximum(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("maximum", a, b);
  return record("maximum", [a, b], y, [a, b], (g, s) => extremumGrads("maxShare", a, b, g, s));
}

/** min(a, b) elementwise (broadcasting); a tie sends half the gradient to each input. */
export function minimum(a: Tensor, b: Tensor): Tensor {
  const y = binaryRaw("minimum", a, b);
  return record("minimum", [a, b], y, [a, b], (g, s) => extremumGrads("minShare", a, b, g, s));
}

/** a + alpha * b, same shapes (no broadcasting); used by optimizers and grad accumulation. */
export function addScaled(a: Tensor, b: Tensor, alpha: number): Tensor {
  check(a.shape.join() === b.shape.join(), "addScaled", () => `${fmt(a)} vs ${fmt(b)}`);
  const y = binaryRaw("addScaled", a, b, alpha);
  return record(
    "addScaled",
    [a, b],
    y,
    [],
    (g) => [g.retain(), alpha === 1 ? g.retain() : scale(g, alpha)],
  );
}

function activation(op: UnOp, x: Tensor): Tensor {
  const y = unaryRaw(UN_FWD[op], x, null);
  return record(op, [x], y, [x], (g, [sx]) => [unaryRaw(UN_BWD[op]!, sx, g)]);
}

/** alpha * x. */
export function scale(x: Tensor, alpha: number): Tensor {
  const y = unaryRaw(UN_FWD.scale, x, null, alpha);
  return record("scale", [x], y, [], (g) => [unaryRaw(UN_FWD.scale, g, null, alpha)]);
}

/** alpha * x + beta. */
export function affine(x: Tensor, alpha: number, beta: number): Tensor {
  const y = unaryRaw(UN_FWD.affine, x, null, alpha, beta);
  return record("affine", [x], y, [], (g) => [unaryRaw(UN_FWD.scale, g, null, alpha)]);
}

/**
 * x limited to [lo, hi] (`torch.clamp`: `min(max(x, lo), hi)`, so hi wins when lo > hi). The
 * gradient passes where lo <= x <= hi, bounds included, as in PyTorch.
 */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  const y = unaryRaw(UN_FWD.clamp, x, null, lo, hi);
  return record("clamp", [x], y, [x], (g, [sx]) => [unaryRaw(UN_BWD.clamp!, sx, g, lo, hi)]);
}

/** max(x, 0); no gradient at 0 (PyTorch's choice). */
export const relu = (x: Tensor): Tensor => activation("relu", x);
/** x * sigmoid(x). */
export const silu = (x: Tensor): Tensor => activation("silu", x);
/** GELU with the exact erf form (SD2's text encoder, the U-Net's GEGLU). */
export const gelu = (x: Tensor): Tensor => activation("gelu", x);
/** GELU with the tanh approximation. */
export const geluTanh = (x: Tensor): Tensor => activation("gelu_tanh", x);
/** x * sigmoid(1.702 x) (CLIP ViT-L/14, SD1's text encoder). */
export const quickGelu = (x: Tensor): Tensor => activation("quick_gelu", x);
/** x^2. */
export const square = (x: Tensor): Tensor => activation("square", x);
/** sqrt(x). */
export const sqrt = (x: Tensor): Tensor => activation("sqrt", x);
/** exp(x). */
export const exp = (x: Tensor): Tensor => activation("exp", x);

/** Convert between f32 and f16 (a copy when the dtype already matches). */
export function cast(x: Tensor, dtype: "f32" | "f16"): Tensor {
  const y = unaryRaw(UN_FWD.cast, x, null, 1, 0, dtype);
  return record("cast", [x], y, [], (g) => [unaryRaw(UN_FWD.cast, g, null, 1, 0, x.dtype)]);
}

/** A tensor of ones shaped like `t`. */
export function onesLike(t: Tensor): Tensor {
  return Tensor.full(t.shape, 1, t.dtype);
}

registerGradHelpers((a, b) => binaryRaw("add", a, b), onesLike);
