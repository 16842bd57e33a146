/**
 * Symmetric eigen-decomposition on the host in float64: Householder reduction to tridiagonal form
 * followed by the implicit QL algorithm with Wilkinson shifts (the EISPACK tred2/tql2 pair, as in
 * JAMA). Used for the small (k+p)x(k+p) Rayleigh-Ritz problems of the randomized SVD (with
 * vectors) and for the spectrum of a Gram matrix up to ~1280 (values only, O(4/3 n^3)).
 *
 * @module
 */

import type { Gaussian } from "./host_qr.ts";

/** Eigenvalues in descending order; `vectors` row i (length n) is the unit eigenvector of value i. */
export interface SymEig {
  values: Float64Array;
  vectors: Float64Array | null;
}

/**
 * Reduce the symmetric row-major matrix `a` (n x n, destroyed) to tridiagonal form: `d` the
 * diagonal, `e[i]` the subdiagonal entry between rows i-1 and i (e[0] = 0). The Householder
 * vector of step i is left in row i, columns 0..i-1, of `a`, its 2/(v.v) in `tau[i]`.
 */
function tridiagonalize(
  a: Float64Array,
  n: number,
): { d: Float64Array; e: Float64Array; tau: Float64Array } {
  const d = new Float64Array(n), e = new Float64Array(n), tau = new Float64Array(n);
  const p = new Float64Array(n);
  for (let i = n - 1; i >= 2; i--) {
    const row = i * n;
    let norm2 = 0;
    for (let k = 0; k < i; k++) norm2 += a[row + k] * a[row + k];
    const x1 = a[row + i - 1];
    const rest = norm2 - x1 * x1;
    d[i] = a[row + i];
    if (rest <= 0) {
      e[i] = x1; // already tridiagonal in this row
      tau[i] = 0;
      continue;
    }
    const alpha = x1 >= 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2);
    a[row + i - 1] = x1 - alpha; // v = x - alpha * e_{i-1}, stored in place
    const vv = rest + (x1 - alpha) * (x1 - alpha);
    const t = 2 / vv;
    tau[i] = t;
    e[i] = alpha;
    // p = t * B v over the leading i x i block B (lower triangle only, row by row); then
    // q = p - (t/2)(v.p) v; B -= v q' + q v' (lower triangle). The upper triangle goes stale.
    p.fill(0, 0, i);
    for (let j = 0; j < i; j++) {
      const rj = j * n, vj = a[row + j];
      let s = 0;
      for (let k = 0; k < j; k++) {
        const ajk = a[rj + k];
        s += ajk * a[row + k];
        p[k] += ajk * vj;
      }
      p[j] += s + a[rj + j] * vj;
    }
    let vp = 0;
    for (let j = 0; j < i; j++) {
      p[j] *= t;
      vp += a[row + j] * p[j];
    }
    const kk = 0.5 * t * vp;
    for (let j = 0; j < i; j++) p[j] -= kk * a[row + j];
    for (let j = 0; j < i; j++) {
      const rj = j * n, vj = a[row + j], qj = p[j];
      for (let k = 0; k <= j; k++) a[rj + k] -= vj * p[k] + qj * a[row + k];
    }
  }
  if (n >= 2) {
    d[1] = a[n + 1];
    e[1] = a[n];
  }
  if (n >= 1) d[0] = a[0];
  return { d, e, tau };
}

/** Qᵀ of the reduction (rows are Q's columns), from the reflectors left in `a`. */
function reflectorsTransposed(a: Float64Array, n: number, tau: Float64Array): Float64Array {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) m[i * n + i] = 1;
  const w = new Float64Array(n);
  // Qᵀ = H_2 H_3 ... H_{n-1}: apply H_i on the left, i from n-1 down to 2.
  for (let i = n - 1; i >= 2; i--) {
    const t = tau[i];
    if (t === 0) continue;
    const row = i * n;
    w.fill(0);
    for (let r = 0; r < i; r++) {
      const vr = a[row + r];
      if (vr === 0) continue;
      const mr = r * n;
      for (let c = 0; c < n; c++) w[c] += vr * m[mr + c];
    }
    for (let r = 0; r < i; r++) {
      const f = t * a[row + r];
      if (f === 0) continue;
      const mr = r * n;
      for (let c = 0; c < n; c++) m[mr + c] -= f * w[c];
    }
  }
  return m;
}

/**
 * Implicit QL on the tridiagonal (d, e) (EISPACK tql2). When `vt` is given (rows are the current
 * basis vectors), the rotations are applied to its rows. Throws if an eigenvalue fails to
 * converge in 60 sweeps.
 */
function tql(d: Float64Array, e: Float64Array, n: number, vt: Float64Array | null): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  if (n > 0) e[n - 1] = 0;
  let f = 0, tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n - 1 && Math.abs(e[m]) > eps * tst1) m++;
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60) throw new Error("symmetric eigensolver: QL did not converge");
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1, c2 = 1, c3 = 1, s = 0, s2 = 0;
        const el1 = e[l + 1];
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = Math.hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          if (vt) {
            const ri = i * n, rj = (i + 1) * n;
            for (let k = 0; k < n; k++) {
              const hk = vt[rj + k];
              vt[rj + k] = s * vt[ri + k] + c * hk;
              vt[ri + k] = c * vt[ri + k] - s * hk;
            }
          }
        }
        p = -s * s2 * c3 * el1 * e[l] / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > eps * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
}

/**
 * Eigenvalues (descending) and, when `wantVectors`, unit eigenvectors of the symmetric row-major
 * matrix `a` (n x n; not modified). Only the lower triangle's symmetric part is assumed: pass a
 * symmetric matrix.
 */
export function symEig(a: ArrayLike<number>, n: number, wantVectors: boolean): SymEig {
  const work = Float64Array.from(a);
  const { d, e, tau } = tridiagonalize(work, n);
  const vt = wantVectors ? reflectorsTransposed(work, n, tau) : null;
  tql(d, e, n, vt);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x]);
  const values = Float64Array.from(order, (i) => d[i]);
  let vectors: Float64Array | null = null;
  if (vt) {
    vectors = new Float64Array(n * n);
    order.forEach((src, dst) => vectors!.set(vt.subarray(src * n, src * n + n), dst * n));
  }
  return { values, vectors };
}

/**
 * Solve (T - λI)x = b in place for the tridiagonal T (diagonal `d`, subdiagonal `e[i]` between
 * rows i-1 and i) by Gaussian elimination with partial pivoting (LAPACK dgttrf/dgtts2); a zero
 * pivot is replaced by `tiny`.
 */
function tridiagSolve(
  d: Float64Array,
  e: Float64Array,
  lambda: number,
  b: Float64Array,
  tiny: number,
): void {
  const n = d.length;
  const dd = new Float64Array(n), dl = new Float64Array(n), du = new Float64Array(n);
  const du2 = new Float64Array(n), swap = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    dd[i] = d[i] - lambda;
    if (i + 1 < n) dl[i] = du[i] = e[i + 1];
  }
  for (let i = 0; i < n - 1; i++) {
    if (Math.abs(dd[i]) >= Math.abs(dl[i])) {
      if (dd[i] === 0) dd[i] = tiny;
      const f = dl[i] / dd[i];
      dl[i] = f;
      dd[i + 1] -= f * du[i];
    } else {
      const f = dd[i] / dl[i];
      dd[i] = dl[i];
      dl[i] = f;
      const t = du[i];
      du[i] = dd[i + 1];
      dd[i + 1] = t - f * dd[i + 1];
      if (i < n - 2) {
        du2[i] = du[i + 1];
        du[i + 1] = -f * du[i + 1];
      }
      swap[i] = 1;
    }
  }
  if (dd[n - 1] === 0) dd[n - 1] = tiny;
  for (let i = 0; i < n - 1; i++) {
    if (swap[i]) {
      const t = b[i] - dl[i] * b[i + 1];
      b[i] = b[i + 1];
      b[i + 1] = t;
    } else b[i + 1] -= dl[i] * b[i];
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i];
    if (i + 1 < n) s -= du[i] * b[i + 1];
    if (i + 2 < n) s -= du2[i] * b[i + 2];
    b[i] = s / (dd[i] === 0 ? tiny : dd[i]);
  }
}

/**
 * The `count` largest eigenvalues (descending) and their unit eigenvectors (rows) of the symmetric
 * row-major n x n matrix `a` (not modified): tridiagonalisation, QL for the values, inverse
 * iteration on the tridiagonal for the vectors (vectors of values closer than 1e-3·‖T‖ are
 * reorthogonalised against each other, as LAPACK's dstein does), and back-transformation by the
 * Householder reflectors. O(4/3 n³ + 2 n²·count).
 */
export function symEigTop(a: ArrayLike<number>, n: number, count: number, rng: Gaussian): SymEig {
  const work = Float64Array.from(a);
  const { d, e, tau } = tridiagonalize(work, n);
  const d0 = d.slice(), e0 = e.slice();
  tql(d, e, n, null);
  const values = d.sort().reverse().slice(0, count);
  let norm = 0;
  for (let i = 0; i < n; i++) {
    norm = Math.max(
      norm,
      Math.abs(d0[i]) + Math.abs(e0[i]) + (i + 1 < n ? Math.abs(e0[i + 1]) : 0),
    );
  }
  const tiny = Math.max(norm, 1e-300) * 2 ** -52;
  const vectors = new Float64Array(count * n);
  let clusterStart = 0;
  for (let j = 0; j < count; j++) {
    if (j > 0 && values[j - 1] - values[j] > 1e-3 * norm) clusterStart = j;
    // A shift just off the eigenvalue keeps the factorisation finite.
    const lambda = values[j] + tiny * (j - clusterStart + 1) * n;
    const x = vectors.subarray(j * n, (j + 1) * n);
    x.set(rng.fill(n));
    for (let it = 0; it < 4; it++) {
      tridiagSolve(d0, e0, lambda, x, tiny);
      for (let c = clusterStart; c < j; c++) {
        const y = vectors.subarray(c * n, (c + 1) * n);
        let s = 0;
        for (let t = 0; t < n; t++) s += x[t] * y[t];
        for (let t = 0; t < n; t++) x[t] -= s * y[t];
      }
      let nrm = 0;
      for (let t = 0; t < n; t++) nrm += x[t] * x[t];
      nrm = Math.sqrt(nrm);
      for (let t = 0; t < n; t++) x[t] /= nrm;
    }
  }
  // x <- Q x with Q = H_{n-1} ... H_2: apply H_2 first.
  for (let i = 2; i < n; i++) {
    const t = tau[i];
    if (t === 0) continue;
    const row = i * n;
    for (let j = 0; j < count; j++) {
      const o = j * n;
      let s = 0;
      for (let r = 0; r < i; r++) s += work[row + r] * vectors[o + r];
      s *= t;
      for (let r = 0; r < i; r++) vectors[o + r] -= s * work[row + r];
    }
  }
  return { values, vectors };
}
