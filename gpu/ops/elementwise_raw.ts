/**
 * Elementwise kernels without autograd: the broadcasting binary kernel and the unary kernel
 * (forward expressions and their backward forms). The differentiable ops wrap these.
 *
 * @module
 */
import binarySrc from "../../shaders/binary.wgsl" with { type: "text" };
import unarySrc from "../../shaders/unary.wgsl" with { type: "text" };
import erfcSrc from "../../shaders/erfc_fit.wgsl" with { type: "text" };
import stridedSrc from "../../shaders/strided.wgsl" with { type: "text" };
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { type KernelHeader, withHeader } from "../kernel_header.ts";
import { grid, PACK8, pack8, specialize } from "../wgsl.ts";
import { broadcastShapes, check, sameDtype, stridesOf } from "./check.ts";

const WG = 256;
const MAX_RANK = 8;

export type BinOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "addScaled"
  | "maximum"
  | "minimum"
  | "maxShare"
  | "minShare";
const BIN_EXPR: Record<BinOp, string> = {
  add: "x + y",
  sub: "x - y",
  mul: "x * y",
  div: "x / y",
  addScaled: "x + p.alpha * y",
  maximum: "max(x, y)",
  minimum: "min(x, y)",
  // The share of max(x, y)'s (min(x, y)'s) gradient that goes to x: all of it where x wins, half
  // on a tie, none where y wins (torch.maximum / torch.minimum's rule).
  maxShare: "select(select(0.0, 0.5, x == y), 1.0, x > y)",
  minShare: "select(select(0.0, 0.5, x == y), 1.0, x < y)",
};

function broadcastStrides(inShape: number[], outShape: number[]): number[] {
  const s = stridesOf(inShape);
  const off = outShape.length - inShape.length;
  return outShape.map((_, k) => {
    const j = k - off;
    return j < 0 || inShape[j] === 1 ? 0 : s[j];
  });
}

const BINARY: KernelHeader = {
  bindings: "a b: T; out: rw T",
  params: `n rank: u32; alpha: f32; pad0: u32; shape sa sb: ${PACK8}`,
};
const UNARY: KernelHeader = {
  bindings: "xs gs: T; out: rw TO",
  params: "n: u32; alpha beta: f32; pad0: u32",
};

export function binaryRaw(op: BinOp, a: Tensor, b: Tensor, alpha = 1): Tensor {
  sameDtype(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  check(shape.length <= MAX_RANK, op, () => `rank ${shape.length} > ${MAX_RANK}`);
  const out = Tensor.empty(shape, a.dtype);
  const n = out.size;
  if (n === 0) return out;
  const u = uniforms().u(n, shape.length).f(alpha).u(0)
    .u(...pack8(shape)).u(...pack8(broadcastStrides(a.shape, shape)))
    .u(...pack8(broadcastStrides(b.shape, shape)));
  const kernel = rt().kernel(
    `binary|${op}|${a.dtype}`,
    () => {
      const body = binarySrc.replaceAll("OPX", BIN_EXPR[op]);
      return specialize(withHeader(BINARY, body, stridedSrc), a.dtype, { WG });
    },
  );
  rt().dispatch(kernel, [a.buffer, b.buffer, out.buffer], u, grid(n, WG));
  return out;
}

export type UnOp =
  | "scale"
  | "affine"
  | "silu"
  | "gelu"
  | "gelu_tanh"
  | "quick_gelu"
  | "square"
  | "sqrt"
  | "exp"
  | "relu"
  | "clamp"
  | "cast";
export const UN_FWD: Record<UnOp, string> = {
  scale: "p.alpha * x",
  affine: "p.alpha * x + p.beta",
  silu: "x * sigmoid_f(x)",
  gelu: "0.5 * x * (1.0 + erf_f(x * INV_SQRT_2))",
  gelu_tanh: "0.5 * x * (1.0 + tanh_f(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))",
  quick_gelu: "x * sigmoid_f(1.702 * x)",
  square: "x * x",
  sqrt: "sqrt(x)",
  exp: "exp(x)",
  relu: "max(x, 0.0)",
  // min(max()) rather than WGSL's clamp(), whose result is undefined for lo > hi; torch.clamp
  // returns hi there, as this does.
  clamp: "min(max(x, p.alpha), p.beta)",
  cast: "x",
};
export const UN_BWD: Partial<Record<UnOp, string>> = {
  silu: "g * (sigmoid_f(x) * (1.0 + x * (1.0 - sigmoid_f(x))))",
  gelu: "g * (0.5 * (1.0 + erf_f(x * INV_SQRT_2)) + x * 0.3989422804014327 * exp(-0.5 * x * x))",
  gelu_tanh: "g * (0.5 * (1.0 + tanh_f(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))) + " +
    "0.5 * x * (1.0 - tanh_f(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)) * " +
    "tanh_f(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))) * SQRT_2_OVER_PI * " +
    "(1.0 + 0.134145 * x * x))",
  quick_gelu: "g * (sigmoid_f(1.702 * x) * (1.0 + 1.702 * x * (1.0 - sigmoid_f(1.702 * x))))",
  square: "g * 2.0 * x",
  sqrt: "g * 0.5 / sqrt(x)",
  exp: "g * exp(x)",
  // PyTorch's conventions at the kinks: relu passes no gradient at 0; clamp passes all of it on
  // the bounds (its subgradient 1 on [lo, hi]).
  relu: "select(0.0, g, x > 0.0)",
  clamp: "select(0.0, g, x >= p.alpha && x <= p.beta)",
};

export function unaryRaw(
  expr: string,
  x: Tensor,
  g: Tensor | null,
  alpha = 1,
  beta = 0,
  outDtype = x.dtype,
): Tensor {
  const out = Tensor.empty(x.shape, outDtype);
  const n = x.size;
  if (n === 0) return out;
  const kernel = rt().kernel(`unary|${x.dtype}|${outDtype}|${expr}`, () => {
    // TO is the output element type; it differs from T only for casts.
    const code = specialize(
      `alias TO = ${outDtype};\n` + withHeader(UNARY, unarySrc.replaceAll("OPX", expr), erfcSrc),
      x.dtype,
      {
        WG,
      },
    );
    return outDtype === "f16" && x.dtype !== "f16" ? "enable f16;\n" + code : code;
  });
  const u = uniforms().u(n).f(alpha, beta).u(0);
  rt().dispatch(kernel, [x.buffer, (g ?? x).buffer, out.buffer], u, grid(n, WG));
  return out;
}
