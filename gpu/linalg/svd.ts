/**
 * Truncated SVD of a float32 matrix on the GPU: a randomized range finder with subspace (power)
 * iteration and a Rayleigh-Ritz step every iteration (Halko, Martinsson & Tropp 2011, Alg. 4.4 and
 * 5.1), stopped by a residual test, plus an exact method when the oversampled block covers the
 * whole short side.
 *
 * Work split: every product with W (the O(m·n·l) part) is a GPU GEMM; the O((m+n)·l²) part
 * (orthonormalising the l = k+p basis vectors by MGS2 and the l x l eigenproblem of B·Bᵀ) runs on
 * the host in float64 on read-back blocks of l vectors. B·Bᵀ is formed in float64 from the float32
 * B = Qᵀ·W, so singular values down to ~1e-7 of the largest are as accurate as B itself.
 *
 * Flat spectra (a random matrix: the top-k values are within a few percent of each other)
 * converge at (σ_{l+1}/σ_k)² per iteration, i.e. hundreds of iterations for float32 accuracy.
 * After each iteration the remaining count is predicted from the residual's decay; when that
 * would cost more than the "Gram route" (the short side's Gram matrix as one GPU GEMM, its top-l
 * eigenvectors on the host: tridiagonalisation, QL, inverse iteration) the iteration restarts from
 * those eigenvectors, which are as accurate as a float32 SVD's leading vectors, and refines them
 * with one Rayleigh-Ritz step on W. Exactly low-rank inputs (svd_merge's and resize's products)
 * and decaying spectra stop after a few iterations.
 *
 * @module
 */
import { rt } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { check, fmt } from "../ops/check.ts";
import { matmul } from "../ops/matmul.ts";
import { symEig, symEigTop } from "./host_eig.ts";
import { gramOfShortSide } from "./spectrum.ts";
import { Gaussian, orthonormalizeRows } from "./host_qr.ts";
import { canonicalizeRows } from "./sign.ts";

/** Options of `svdTopK`. */
export interface SvdTopKOptions {
  /** Extra basis vectors p (block l = k + p); default max(8, k/2). */
  oversample?: number;
  /**
   * Most power iterations (products with W·Wᵀ) after the first range product; default 24. The
   * switch to the Gram route (see the module doc) may happen before.
   */
  powerIters?: number;
  /** Stop when every kept triplet has ‖W·v - σ·u‖ <= tol·σ₁; default 2e-6 (f32 noise ~1e-7). */
  tol?: number;
  /** Seed of the Gaussian test matrix Ω; default 0x5eed. */
  seed?: number;
}

/** The top-k singular triplets, `W ≈ U·diag(S)·Vt`, in lorakit's sign convention. */
export interface SvdTopK {
  /** f32 [m, k], orthonormal columns. */
  U: Tensor;
  /** The k singular values, descending. */
  S: Float64Array;
  /** f32 [k, n], orthonormal rows. */
  Vt: Tensor;
  /** Power iterations run (0 for the exact method). */
  iterations: number;
  /** max over kept triplets of ‖W·v - σ·u‖ / σ₁ (0 for the exact method, which has no loop). */
  residual: number;
  /**
   * "exact" (k + p covers the short side), "randomized" (subspace iteration converged or ran out
   * of iterations) or "gram" (slow convergence predicted; started again from the eigenvectors of
   * the short side's Gram matrix, then refined).
   */
  method: "exact" | "randomized" | "gram";
}

/** Host copy of a GPU tensor as float64. */
async function download(t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await t.toArray());
}

/** rows x (r x len) -> coefficient combinations: out_i = Σ_j c[i][j] x_j for i < outRows. */
function combine(
  c: Float64Array,
  cCols: number,
  outRows: number,
  x: Float64Array,
  len: number,
): Float64Array {
  const out = new Float64Array(outRows * len);
  for (let i = 0; i < outRows; i++) {
    const oi = i * len;
    for (let j = 0; j < cCols; j++) {
      const cij = c[i * cCols + j];
      if (cij === 0) continue;
      const oj = j * len;
      for (let t = 0; t < len; t++) out[oi + t] += cij * x[oj + t];
    }
  }
  return out;
}

/** Gram matrix x·xᵀ of `count` rows of length `len`, float64. */
function gramRows(x: Float64Array, count: number, len: number): Float64Array {
  const g = new Float64Array(count * count);
  for (let i = 0; i < count; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      const oi = i * len, oj = j * len;
      for (let t = 0; t < len; t++) s += x[oi + t] * x[oj + t];
      g[i * count + j] = s;
      g[j * count + i] = s;
    }
  }
  return g;
}

/**
 * Rayleigh-Ritz: from B (rows: `l` vectors of length `len`, B = Qᵀ·W or W itself) and the basis
 * rows `q` (length `qLen`; null = identity), the Ritz values σ (descending), left vectors
 * u_i = Σ_j E_ij q_j and right vectors v_i = normalised Σ_j E_ij b_j (completed at random where
 * σ is negligible).
 */
function ritz(
  b: Float64Array,
  l: number,
  len: number,
  q: Float64Array | null,
  qLen: number,
  rng: Gaussian,
): { s: Float64Array; u: Float64Array; v: Float64Array } {
  const { values, vectors } = symEig(gramRows(b, l, len), l, true);
  const e = vectors!;
  const s = Float64Array.from(values, (x) => Math.sqrt(Math.max(x, 0)));
  const u = q ? combine(e, l, l, q, qLen) : e.slice();
  const v = combine(e, l, l, b, len);
  orthonormalizeRows(v, l, len, rng);
  return { s, u, v };
}

/** Upload rows [r, len] (row-major) as f32, or their transpose [len, r]. */
function upload(x: Float64Array, r: number, len: number, transpose: boolean): Tensor {
  if (!transpose) return Tensor.fromArray(Float32Array.from(x.subarray(0, r * len)), [r, len]);
  const t = new Float32Array(r * len);
  for (let i = 0; i < r; i++) for (let j = 0; j < len; j++) t[j * r + i] = x[i * len + j];
  return Tensor.fromArray(t, [len, r]);
}

function finish(
  u: Float64Array,
  s: Float64Array,
  v: Float64Array,
  dims: [number, number, number],
  iterations: number,
  residual: number,
  method: SvdTopK["method"],
): SvdTopK {
  const [m, n, k] = dims;
  canonicalizeRows(u, v, k, m, n);
  return {
    U: upload(u, k, m, true),
    S: s.slice(0, k),
    Vt: upload(v, k, n, false),
    iterations,
    residual,
    method,
  };
}

/** Exact SVD through the float64 Gram matrix of the short side of the downloaded W. */
async function exactSvd(w: Tensor, k: number, rng: Gaussian): Promise<SvdTopK> {
  const [m, n] = w.shape;
  const host = await download(w);
  if (m <= n) {
    const { s, u, v } = ritz(host, m, n, null, m, rng);
    return finish(u, s, v, [m, n, k], 0, 0, "exact");
  }
  const t = new Float64Array(m * n); // Wᵀ as n rows of length m
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = host[i * n + j];
  const { s, u, v } = ritz(t, n, m, null, n, rng);
  return finish(v, s, u, [m, n, k], 0, 0, "exact");
}

/**
 * The top-k singular triplets of W (f32 [m, n]): `U` [m, k], `S` (float64, descending), `Vt`
 * [k, n], with each left vector's entry of largest magnitude positive (its right vector flipped
 * with it). k is clamped to min(m, n). When k + oversample >= min(m, n) the result is exact (an
 * eigen-decomposition of the float64 Gram matrix of the short side); otherwise randomized subspace
 * iteration runs until every kept triplet's residual ‖W·v - σ·u‖ is below `tol`·σ₁ or
 * `powerIters` is reached (see `SvdTopK.residual`). Singular vectors of a cluster of equal values
 * are any basis of its span, as with every SVD.
 */
export async function svdTopK(w: Tensor, k: number, opts: SvdTopKOptions = {}): Promise<SvdTopK> {
  check(w.rank === 2 && w.dtype === "f32", "svdTopK", () => `W must be f32 [m, n], got ${fmt(w)}`);
  check(Number.isInteger(k) && k >= 1, "svdTopK", () => `k must be a positive integer, got ${k}`);
  const [m, n] = w.shape;
  const short = Math.min(m, n);
  k = Math.min(k, short);
  const p = opts.oversample ?? Math.max(8, Math.ceil(k / 2));
  const maxIters = opts.powerIters ?? 24;
  const tol = opts.tol ?? 2e-6;
  const rng = new Gaussian(opts.seed ?? 0x5eed);
  const l = Math.min(short, k + p);
  if (l >= short) return exactSvd(w, k, rng);

  // Cost model (in GPU flops; a host float64 flop counts HOST_WEIGHT) to decide when the Gram
  // route beats more iterations: flat spectra converge at (σ_{l+1}/σ_k)² per iteration.
  const big = Math.max(m, n);
  const costIter = 4 * m * n * l + HOST_WEIGHT * 12 * (m + n) * l * l;
  const costGram = 2 * short * short * big +
    HOST_WEIGHT * ((4 / 3) * short ** 3 + 2 * short * short * l) + costIter;
  // Y = W·Ω, kept as rows (Yᵀ = Ωᵀ·Wᵀ), then Q = orth(Y).
  let q = await gpuProduct(rng.fill(l * n), l, n, w, true);
  orthonormalizeRows(q, l, m, rng);
  let prev = Infinity, refine = -1;
  for (let it = 0;; it++) {
    const bt = await gpuProduct(q, l, m, w, false); // B = Qᵀ·W, rows of length n
    const { s, u, v } = ritz(bt, l, n, q, m, rng);
    const y = await gpuProduct(v, l, n, w, true); // (W·V)ᵀ
    let res = 0;
    for (let i = 0; i < k; i++) {
      let r2 = 0;
      for (let t = 0; t < m; t++) {
        const d = y[i * m + t] - s[i] * u[i * m + t];
        r2 += d * d;
      }
      res = Math.max(res, Math.sqrt(r2));
    }
    res /= Math.max(s[0], 1e-300);
    const done = res <= tol || s[0] === 0 || it >= maxIters || refine >= GRAM_REFINE;
    if (done) return finish(u, s, v, [m, n, k], it, res, refine >= 0 ? "gram" : "randomized");
    if (refine >= 0) refine++;
    else {
      const rho = it === 0 ? (s[k - 1] > 0 ? (s[l - 1] / s[k - 1]) ** 2 : 0) : res / prev;
      const need = rho < 1 ? Math.log(tol / res) / Math.log(rho) : Infinity;
      if (need * costIter > costGram) {
        q = await gramBasis(w, l, rng);
        refine = 0;
        continue;
      }
    }
    prev = res;
    q = y;
    orthonormalizeRows(q, l, m, rng);
  }
}

/** Host flops per GPU flop in the cost model (lavapipe: ~0.8 GFLOP/s in JS vs ~6 on the GPU). */
const HOST_WEIGHT = 8;
/** Power iterations allowed after the Gram start before accepting its residual. */
const GRAM_REFINE = 1;

/**
 * An orthonormal basis (rows of length m) of the top-l left singular subspace of W from the
 * float32 Gram matrix of its short side: as accurate as a float32 SVD for the leading vectors
 * (error ~eps32·σ₁/gap), whatever the spectrum.
 */
async function gramBasis(w: Tensor, l: number, rng: Gaussian): Promise<Float64Array> {
  const [m, n] = w.shape;
  const { vectors } = symEigTop(await gramOfShortSide(w), Math.min(m, n), l, rng);
  const basis = m <= n ? vectors! : await gpuProduct(vectors!, l, n, w, true);
  orthonormalizeRows(basis, l, m, rng);
  return basis;
}

/**
 * `rows`·W (rows [r, len=m], `transposed` false: result rows of length n) or `rows`·Wᵀ
 * (rows [r, len=n], `transposed` true: result rows of length m), on the GPU, read back as f64.
 */
async function gpuProduct(
  rows: Float64Array,
  r: number,
  len: number,
  w: Tensor,
  transposed: boolean,
): Promise<Float64Array> {
  const x = upload(rows, r, len, false);
  const y = matmul(x, w, { transB: transposed });
  try {
    return await download(y);
  } finally {
    x.dispose();
    y.dispose();
    rt().flush();
  }
}
