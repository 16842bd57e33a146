/**
 * All singular values of a float32 matrix: the Gram matrix of the short side (G = W·Wᵀ or Wᵀ·W,
 * at most 1280 x 1280 for Stable Diffusion's modules) is a GPU GEMM; its eigenvalues come from a
 * float64 Householder tridiagonalisation and implicit QL on the host (about 3.5 s at 1280 and
 * 0.1 s at 320 on one core; O(4/3 s³)).
 *
 * Accuracy: forming G in float32 squares the condition number. G carries an absolute error δ of
 * roughly eps32·√n·σ₁² (eps32 = 6e-8), so σᵢ has an absolute error of about δ/(2σᵢ) while
 * σᵢ ≫ √δ, and values at the noise floor (σᵢ ≲ √δ ≈ 3e-4·σ₁, e.g. the zeros of a rank-deficient
 * matrix) come out as noise of that size. Values above ~1e-2·σ₁ are accurate to ~1e-5·σ₁, which
 * is what resize_lora's sv_ratio / sv_fro / sv_cumulative rank choices read; only a sv_ratio
 * threshold at the noise floor (ratio > ~3000) could see the difference.
 *
 * @module
 */
import { rt } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";
import { check, fmt } from "../ops/check.ts";
import { matmul } from "../ops/matmul.ts";
import { symEig } from "./host_eig.ts";

/**
 * The float64 (symmetrised) copy of the float32 Gram matrix of W's short side, computed on the
 * GPU: W·Wᵀ [m, m] when m <= n, else Wᵀ·W [n, n].
 */
export async function gramOfShortSide(w: Tensor): Promise<Float64Array> {
  const [m, n] = w.shape;
  const s = Math.min(m, n);
  const g = m <= n ? matmul(w, w, { transB: true }) : matmul(w, w, { transA: true });
  let host: Float32Array;
  try {
    host = await g.toArray();
  } finally {
    g.dispose();
    rt().flush();
  }
  const sym = new Float64Array(s * s);
  for (let i = 0; i < s; i++) {
    for (let j = 0; j <= i; j++) {
      const v = 0.5 * (host[i * s + j] + host[j * s + i]);
      sym[i * s + j] = v;
      sym[j * s + i] = v;
    }
  }
  return sym;
}

/** The min(m, n) singular values of W (f32 [m, n]), descending, as float64. */
export async function singularValues(w: Tensor): Promise<Float64Array> {
  check(
    w.rank === 2 && w.dtype === "f32",
    "singularValues",
    () => `W must be f32 [m, n], got ${fmt(w)}`,
  );
  const s = Math.min(w.shape[0], w.shape[1]);
  if (s === 0) return new Float64Array(0);
  const { values } = symEig(await gramOfShortSide(w), s, false);
  return Float64Array.from(values, (x) => Math.sqrt(Math.max(x, 0)));
}
