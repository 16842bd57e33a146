/**
 * lorakit's SVD sign convention. Singular vectors are defined only up to sign, and a
 * clamp-to-quantile of the signed factor values makes the result depend on it; lorakit pins it:
 * in each left singular vector the entry of largest magnitude (the first such) is positive, and
 * its right vector is flipped with it, so U·diag(S)·Vt is unchanged.
 *
 * @module
 */
import signSrc from "../../shaders/linalg_sign.wgsl" with { type: "text" };
import flipSrc from "../../shaders/linalg_flip.wgsl" with { type: "text" };
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { headed } from "../kernel_header.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check, fmt } from "../ops/check.ts";

const WG = 256;
const SIGN = headed(
  { bindings: "src: f32; sgn: rw f32", params: "rows cols n mode: u32" },
  signSrc,
);
const FLIP = headed(
  { bindings: "src sgn: f32; dst: rw f32", params: "rows cols n mode: u32" },
  flipSrc,
);

/**
 * Host variant on float64 rows: `u` holds k left vectors as rows of length m, `v` k right vectors
 * as rows of length n; both are flipped in place.
 */
export function canonicalizeRows(
  u: Float64Array,
  v: Float64Array,
  k: number,
  m: number,
  n: number,
): void {
  for (let i = 0; i < k; i++) {
    let best = -1, at = 0;
    for (let t = 0; t < m; t++) {
      const a = Math.abs(u[i * m + t]);
      if (a > best) (best = a, at = t);
    }
    if (u[i * m + at] < 0) {
      for (let t = 0; t < m; t++) u[i * m + t] = -u[i * m + t];
      for (let t = 0; t < n; t++) v[i * n + t] = -v[i * n + t];
    }
  }
}

/**
 * Apply the sign convention to an SVD's factors on the GPU: `U` f32 [m, k] (left vectors as
 * columns), `Vt` f32 [k, n] (right vectors as rows). Returns new tensors; the inputs are kept.
 */
export function svdSignCanonical(U: Tensor, Vt: Tensor): { U: Tensor; Vt: Tensor } {
  check(
    U.rank === 2 && Vt.rank === 2 && U.dtype === "f32" && Vt.dtype === "f32" &&
      U.shape[1] === Vt.shape[0],
    "svdSignCanonical",
    () => `need U f32 [m, k] and Vt f32 [k, n], got ${fmt(U)} and ${fmt(Vt)}`,
  );
  const [m, k] = U.shape, n = Vt.shape[1];
  if (m * k === 0 || k * n === 0) return { U: Tensor.empty([m, k]), Vt: Tensor.empty([k, n]) };
  const sign = Tensor.empty([k]);
  const r = rt();
  r.dispatch(
    specKernel("linalg_sign", SIGN, "f32", { WG }, "colsign"),
    [U.buffer, sign.buffer],
    uniforms().u(m, k, 0, 0),
    [k],
  );
  const flip = specKernel("linalg_flip", FLIP, "f32", { WG });
  const u2 = Tensor.empty([m, k]), v2 = Tensor.empty([k, n]);
  r.dispatch(
    flip,
    [U.buffer, sign.buffer, u2.buffer],
    uniforms().u(m, k, m * k, 0),
    grid(m * k, WG),
  );
  r.dispatch(
    flip,
    [Vt.buffer, sign.buffer, v2.buffer],
    uniforms().u(k, n, k * n, 1),
    grid(k * n, WG),
  );
  sign.dispose();
  return { U: u2, Vt: v2 };
}
