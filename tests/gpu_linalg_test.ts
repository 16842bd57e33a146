/**
 * gpu/linalg: svdTopK, singularValues, svdSignCanonical and quantile against a float64 one-sided
 * Jacobi SVD written here, on small shapes (flat, decaying and rank-deficient spectra).
 */
import assert from "node:assert/strict";
import { initGpu, rt, Tensor } from "../gpu/mod.ts";
import { quantile, singularValues, svdSignCanonical, svdTopK } from "../gpu/linalg/mod.ts";
import { randn, relErr } from "./op_check.ts";

/** Float64 SVD by one-sided Jacobi: u rows (length m), s descending, v rows (length n). */
function jacobiSvd(
  a: ArrayLike<number>,
  m: number,
  n: number,
): { u: Float64Array; s: Float64Array; v: Float64Array } {
  if (m < n) {
    const t = new Float64Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
    const r = jacobiSvd(t, n, m);
    return { u: r.v, s: r.s, v: r.u };
  }
  // Columns of A as rows of `c` (length m); V accumulates the rotations (rows of length n).
  const c = new Float64Array(n * m), v = new Float64Array(n * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) c[j * m + i] = a[i * n + j];
  for (let j = 0; j < n; j++) v[j * n + j] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        let al = 0, be = 0, ga = 0;
        for (let t = 0; t < m; t++) {
          const x = c[p * m + t], y = c[q * m + t];
          al += x * x;
          be += y * y;
          ga += x * y;
        }
        if (Math.abs(ga) <= 1e-15 * Math.sqrt(al * be) || ga === 0) continue;
        off = Math.max(off, Math.abs(ga) / Math.sqrt(al * be));
        const zeta = (be - al) / (2 * ga);
        const tt = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const cs = 1 / Math.sqrt(1 + tt * tt), sn = cs * tt;
        for (const [x, len] of [[c, m], [v, n]] as const) {
          for (let t = 0; t < len; t++) {
            const xp = x[p * len + t], xq = x[q * len + t];
            x[p * len + t] = cs * xp - sn * xq;
            x[q * len + t] = sn * xp + cs * xq;
          }
        }
      }
    }
    if (off < 1e-15) break;
  }
  const norms = Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let t = 0; t < m; t++) s += c[j * m + t] ** 2;
    return Math.sqrt(s);
  });
  const order = norms.map((_, j) => j).sort((x, y) => norms[y] - norms[x]);
  const u = new Float64Array(n * m), s = new Float64Array(n), vv = new Float64Array(n * n);
  order.forEach((j, i) => {
    s[i] = norms[j];
    for (let t = 0; t < m; t++) u[i * m + t] = norms[j] > 0 ? c[j * m + t] / norms[j] : 0;
    // V's columns are the right vectors: row j of the rotation product is column j of V.
    for (let t = 0; t < n; t++) vv[i * n + t] = v[j * n + t];
  });
  return { u, s, v: vv };
}

/** Σ_{i<k} s_i u_i v_iᵀ, row-major [m, n]; `u` as [m, k] columns when `uCols`, else rows. */
function lowRank(
  u: ArrayLike<number>,
  s: ArrayLike<number>,
  v: ArrayLike<number>,
  k: number,
  m: number,
  n: number,
  uCols: boolean,
): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < k; i++) {
    for (let r = 0; r < m; r++) {
      const c = s[i] * (uCols ? u[r * k + i] : u[i * m + r]);
      for (let t = 0; t < n; t++) out[r * n + t] += c * v[i * n + t];
    }
  }
  return out;
}

/** W = A·diag(decay^i)·B (rank `rank`), row-major f32. */
function spectrum(m: number, n: number, rank: number, decay: number, seed: number): Float32Array {
  const a = randn(m * rank, seed), b = randn(rank * n, seed + 1), w = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < rank; t++) {
      const c = a[i * rank + t] * decay ** t;
      for (let j = 0; j < n; j++) w[i * n + j] += c * b[t * n + j];
    }
  }
  return Float32Array.from(w);
}

interface Measured {
  sv: number;
  recon: number;
  orth: number;
}

/** svdTopK vs the Jacobi reference: values, rank-k reconstruction, orthonormality, signs. */
async function checkTopK(
  data: Float32Array,
  m: number,
  n: number,
  k: number,
  opts: Parameters<typeof svdTopK>[2] = {},
): Promise<Measured & { method: string }> {
  await initGpu();
  const before = rt().storage.stats().liveBytes;
  const w = Tensor.fromArray(data, [m, n]);
  const r = await svdTopK(w, k, opts);
  const kk = Math.min(k, m, n);
  assert.deepEqual(r.U.shape, [m, kk]);
  assert.deepEqual(r.Vt.shape, [kk, n]);
  const U = await r.U.toArray(), Vt = await r.Vt.toArray();
  const ref = jacobiSvd(Float64Array.from(data), m, n);
  let sv = 0;
  for (let i = 0; i < kk; i++) sv = Math.max(sv, Math.abs(r.S[i] - ref.s[i]) / ref.s[0]);
  const recon = relErr(
    lowRank(U, r.S, Vt, kk, m, n, true),
    lowRank(ref.u, ref.s, ref.v, kk, m, n, false),
  );
  let orth = 0;
  for (let i = 0; i < kk; i++) {
    for (let j = 0; j < kk; j++) {
      let uu = 0, vv = 0;
      for (let t = 0; t < m; t++) uu += U[t * kk + i] * U[t * kk + j];
      for (let t = 0; t < n; t++) vv += Vt[i * n + t] * Vt[j * n + t];
      orth = Math.max(orth, Math.abs(uu - (i === j ? 1 : 0)), Math.abs(vv - (i === j ? 1 : 0)));
    }
    let best = 0;
    for (let t = 1; t < m; t++) if (Math.abs(U[t * kk + i]) > Math.abs(U[best * kk + i])) best = t;
    assert.ok(U[best * kk + i] > 0, `left vector ${i}: largest entry is negative`);
  }
  r.U.dispose();
  r.Vt.dispose();
  w.dispose();
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before, "pool back to baseline");
  return { sv, recon, orth, method: r.method };
}

function report(name: string, x: Measured & { method: string }): void {
  console.log(
    `${name}: ${x.method}, values ${x.sv.toExponential(1)}, rank-k recon ${
      x.recon.toExponential(1)
    }, orthonormality ${x.orth.toExponential(1)}`,
  );
}

Deno.test("svdTopK: Gaussian (flat spectrum), wide and tall", async () => {
  for (const [m, n, k] of [[40, 30, 5], [64, 200, 8], [200, 64, 8], [120, 160, 16]]) {
    const x = await checkTopK(randn(m * n, m + n), m, n, k);
    report(`flat ${m}x${n} k=${k}`, x);
    assert.ok(x.sv < 1e-5, `singular values ${x.sv}`);
    assert.ok(x.recon < 1e-4, `reconstruction ${x.recon}`);
    assert.ok(x.orth < 1e-5, `orthonormality ${x.orth}`);
  }
});

Deno.test("svdTopK: decaying spectrum takes the randomized path", async () => {
  const x = await checkTopK(spectrum(96, 150, 60, 0.7, 11), 96, 150, 8);
  report("decay 0.7 96x150 k=8", x);
  assert.equal(x.method, "randomized");
  assert.ok(x.sv < 1e-5 && x.recon < 1e-4 && x.orth < 1e-5, JSON.stringify(x));
  // A fixed budget of one power iteration still gives the leading values.
  const y = await checkTopK(spectrum(96, 150, 60, 0.7, 11), 96, 150, 8, { powerIters: 1 });
  assert.ok(y.sv < 1e-3, JSON.stringify(y));
});

Deno.test("svdTopK: k >= min(m, n) is exact (k clamped)", async () => {
  for (const [m, n, k] of [[40, 30, 30], [30, 40, 50], [50, 20, 15]]) {
    const x = await checkTopK(randn(m * n, 5), m, n, k);
    report(`exact ${m}x${n} k=${k}`, x);
    assert.equal(x.method, "exact");
    assert.ok(x.sv < 1e-6 && x.recon < 1e-5 && x.orth < 1e-5, JSON.stringify(x));
  }
});

Deno.test("svdTopK: exact rank 3", async () => {
  const data = spectrum(60, 80, 3, 1, 21);
  for (const k of [3, 6, 40]) {
    const x = await checkTopK(data, 60, 80, k);
    report(`rank 3 60x80 k=${k}`, x);
    assert.ok(x.sv < 1e-5 && x.recon < 1e-5 && x.orth < 1e-5, JSON.stringify(x));
  }
});

Deno.test("singularValues: all values vs the reference", async () => {
  await initGpu();
  for (
    const [m, n, data] of [
      [64, 200, randn(64 * 200, 8)],
      [150, 40, randn(150 * 40, 9)],
      [48, 48, spectrum(48, 48, 48, 0.9, 3)],
      [60, 80, spectrum(60, 80, 3, 1, 21)],
    ] as const
  ) {
    const w = Tensor.fromArray(data, [m, n]);
    const got = await singularValues(w);
    w.dispose();
    const ref = jacobiSvd(Float64Array.from(data), m, n).s;
    assert.equal(got.length, Math.min(m, n));
    // Above the Gram noise floor (~3e-4 of the largest) values match to 1e-5 of the largest;
    // below it (the zeros of the rank-3 matrix) they are noise of the floor's size.
    let err = 0, floor = 0;
    for (let i = 0; i < got.length; i++) {
      if (ref[i] > 1e-2 * ref[0]) err = Math.max(err, Math.abs(got[i] - ref[i]) / ref[0]);
      else floor = Math.max(floor, Math.abs(got[i] - ref[i]) / ref[0]);
    }
    console.log(
      `singularValues ${m}x${n}: ${err.toExponential(1)}, floor ${floor.toExponential(1)}`,
    );
    assert.ok(err < 1e-5, `values ${err}`);
    assert.ok(floor < 1e-3, `floor ${floor}`);
  }
});

Deno.test("svdSignCanonical: largest |entry| of each left vector positive, right flipped", async () => {
  await initGpu();
  const m = 300, k = 5, n = 7;
  const u = randn(m * k, 4), vt = randn(k * n, 6);
  u[2 * k + 1] = -50; // column 1: flips
  u[9 * k + 3] = 40; // column 3: stays
  u[0 * k + 4] = -30; // column 4: tie at rows 0 and 1, the first decides (flip)
  u[1 * k + 4] = 30;
  const U = Tensor.fromArray(u, [m, k]), Vt = Tensor.fromArray(vt, [k, n]);
  const r = svdSignCanonical(U, Vt);
  const u2 = await r.U.toArray(), v2 = await r.Vt.toArray();
  for (let j = 0; j < k; j++) {
    let best = 0;
    for (let t = 1; t < m; t++) if (Math.abs(u[t * k + j]) > Math.abs(u[best * k + j])) best = t;
    const sg = u[best * k + j] < 0 ? -1 : 1;
    if (j === 1 || j === 4) assert.equal(sg, -1);
    if (j === 3) assert.equal(sg, 1);
    for (let t = 0; t < m; t++) assert.equal(u2[t * k + j], sg * u[t * k + j]);
    for (let t = 0; t < n; t++) assert.equal(v2[j * n + t], sg * vt[j * n + t]);
  }
  for (const t of [U, Vt, r.U, r.Vt]) t.dispose();
});

Deno.test("quantile: torch.quantile's linear interpolation", () => {
  // Values printed by torch 1.13: torch.quantile(torch.tensor([0., 1, 2, 3, 10]), q).
  const x = Float32Array.from([3, 0, 10, 2, 1]);
  assert.equal(quantile(x, 0.99), 9.720000267028809);
  assert.equal(quantile(x, 0.3), 1.2000000476837158);
  assert.ok(Math.abs(quantile([3, 0, 10, 2, 1], 0.99) - 9.72) < 1e-12); // float64 arithmetic
  assert.equal(quantile([5], 0.5), 5);
  assert.equal(quantile([1, 2], 1), 2);
  assert.ok(Number.isNaN(quantile([1, NaN, 2], 0.5)));
  assert.throws(() => quantile([1], 1.5), RangeError);
  assert.throws(() => quantile([], 0.5), RangeError);
});
