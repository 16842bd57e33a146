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

/** y = x·Wᵀ (+ b): x [..., in], weight [out, in], bias [out] -> [..., out]. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const b = bias ?? null;
  const desc = () => `${fmt(x)}, weight ${fmt(weight)}${b ? `, bias ${fmt(b)}` : ""}`;
  sameDtype("linear", x, weight, ...(b ? [b] : []));
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
    outShape,
  });
  const inputs = b ? [x, weight, b] : [x, weight];
  return record("linear", inputs, y, [x, weight], (g, [sx, sw]) => {
    // dx = g·W ([rows, out]·[out, in]); dW = gᵀ·x ([out, rows]·[rows, in]); db = Σ_rows g.
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
        outShape: weight.shape,
      })
      : null;
    const grads: (Tensor | null)[] = [dx, dw];
    if (b) grads.push(b.requiresGrad ? sumTo(g, b.shape) : null);
    return grads;
  });
}
