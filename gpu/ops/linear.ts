/**
 * `linear`: PyTorch's `nn.Linear` layout, x [..., in] · weight[out, in]ᵀ + bias[out], as one GEMM
 * over all leading rows with the weight read transposed and the bias added in the epilogue.
 * Also the public entry for `matmul` and `matmulBias` (one registry line covers both files).
 *
 * @module
 */
import { record } from "../autograd.ts";
import type { Tensor } from "../tensor.ts";
import { check, fmt, sameDtype } from "./check.ts";
import { gemm } from "./matmul.ts";
import { sumTo } from "./reduce.ts";

export { matmul, matmulBias, type MatmulOptions } from "./matmul.ts";

/** Options of `linear` beyond PyTorch's: a scale of the product and a residual added to it. */
export interface LinearOptions {
  /** Multiplies x·Wᵀ (not the bias or residual); default 1. */
  alpha?: number;
  /** Added to the result, same shape: `residual + alpha·x·Wᵀ (+ b)` in one GEMM. */
  residual?: Tensor | null;
}

/**
 * y = x·Wᵀ (+ b): x [..., in], weight [out, in], bias [out] -> [..., out]; with `opts`,
 * `residual + alpha·x·Wᵀ (+ b)` (a LoRA branch added to its layer's output) in the same GEMM.
 * The input gradient is accumulated in the GEMM epilogue when x already has one.
 * Mixed precision: an f32 weight with f16 x is read as f16 by the GEMMs and its gradient is the
 * f16 one widened to f32, exactly what casting the weight to f16 first gives, without the casts.
 */
export function linear(
  x: Tensor,
  weight: Tensor,
  bias?: Tensor | null,
  opts: LinearOptions = {},
): Tensor {
  const b = bias ?? null;
  const alpha = opts.alpha ?? 1;
  const res = opts.residual ?? null;
  const desc = () => `${fmt(x)}, weight ${fmt(weight)}${b ? `, bias ${fmt(b)}` : ""}`;
  sameDtype("linear", x, ...(b ? [b] : []), ...(res ? [res] : []));
  check(
    weight.dtype === x.dtype || (weight.dtype === "f32" && x.dtype === "f16"),
    "linear",
    () => `dtypes differ (an f32 weight may meet f16 x, no other mix): ${desc()}`,
  );
  check(
    x.rank >= 1 && weight.rank === 2,
    "linear",
    () => `expected x [..., in], weight [out, in]: ${desc()}`,
  );
  const [nOut, nIn] = weight.shape;
  check(x.shape[x.rank - 1] === nIn, "linear", () => `in-features differ: ${desc()}`);
  check(
    !b || (b.rank === 1 && b.shape[0] === nOut),
    "linear",
    () => `bias must be [${nOut}]: ${desc()}`,
  );
  const rows = x.size / nIn;
  const outShape = [...x.shape.slice(0, -1), nOut];
  check(
    !res || res.shape.join() === outShape.join(),
    "linear",
    () => `residual ${res ? fmt(res) : ""} must be [${outShape}]: ${desc()}`,
  );
  const flat = { batch: 1, nRed: 1, aOut: 0, bOut: 0, aRed: 0, bRed: 0 };
  const y = gemm({
    a: x,
    b: weight,
    M: rows,
    N: nOut,
    K: nIn,
    transA: false,
    transB: true,
    ...flat,
    bias: b,
    alpha,
    residual: res,
    outShape,
  });
  const inputs = [x, weight];
  if (b) inputs.push(b);
  if (res) inputs.push(res);
  return record("linear", inputs, y, [x, weight], (g, [sx, sw], acc) => {
    // dx = α·g·W ([rows, out]·[out, in]) plus what x has gathered already; dW = α·gᵀ·x
    // ([out, rows]·[rows, in]); db = Σ_rows g; d residual = g.
    const dx = x.requiresGrad
      ? gemm({
        a: g,
        b: sw,
        M: rows,
        N: nIn,
        K: nOut,
        transA: false,
        transB: false,
        ...flat,
        alpha,
        residual: acc.take(0),
        outShape: x.shape,
      })
      : null;
    const dw = weight.requiresGrad
      ? gemm({
        a: g,
        b: sx,
        M: nOut,
        N: nIn,
        K: rows,
        transA: true,
        transB: false,
        ...flat,
        alpha,
        outShape: weight.shape,
        outDtype: weight.dtype,
      })
      : null;
    const grads: (Tensor | null)[] = [dx, dw];
    if (b) grads.push(b.requiresGrad ? sumTo(g, b.shape) : null);
    if (res) grads.push(res.requiresGrad ? g.retain() : null);
    return grads;
  });
}
