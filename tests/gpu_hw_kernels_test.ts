/**
 * The hardware kernel family (workgroup-tiled GEMM and implicit-GEMM convolution), forced on the
 * software adapter: every launch shape `gemm()` supports (with its fused epilogue: alpha, bias,
 * residual) and every convolution pass against float64 references, gradients through autograd,
 * both tiles, split-K, and the thread counts.
 */
import assert from "node:assert/strict";
import { conv2d, initGpu, linear, matmul, matmulBias, rt, Tensor } from "../gpu/mod.ts";
import { kernelFamily, setKernelFamily } from "../gpu/family.ts";
import { conv2dGradInput, conv2dGradWeight, type ConvDims, convDims } from "../gpu/ops/conv2d.ts";
import { conv2dThreads, gemmThreads } from "../gpu/ops/launch_threads.ts";
import { gemm, type GemmArgs } from "../gpu/ops/matmul.ts";
import { TILE_128, TILE_64 } from "../gpu/ops/tiled_codegen.ts";
import { forceTile } from "../gpu/ops/tiled_launch.ts";
import { assertClose, checkOp, randn } from "./op_check.ts";
import {
  checkMixedAutograd,
  checkMixedGemm,
  gemmLayoutRef,
  layout,
  MIXES,
} from "./mixed_precision_check.ts";

setKernelFamily("hardware");

/** Run `fn` and assert that it leaves the pool where it found it. */
async function poolNeutral(what: string, fn: () => Promise<void>): Promise<void> {
  await initGpu();
  rt().flush();
  const before = rt().storage.stats().liveBytes;
  await fn();
  rt().flush();
  const after = rt().storage.stats().liveBytes;
  assert.equal(after, before, `${what}: pool not back to baseline (${before} -> ${after} bytes)`);
}

/** Run `fn` with one tile forced (the small shapes of a test would never pick the big one). */
async function withTile(tile: typeof TILE_64 | null, fn: () => Promise<void>): Promise<void> {
  forceTile(tile);
  try {
    await fn();
  } finally {
    forceTile(null);
  }
}

/** One general launch of `gemm()`, with its float64 reference. */
interface GemmCase {
  M: number;
  N: number;
  K: number;
  tA?: boolean;
  tB?: boolean;
  batch?: number;
  nRed?: number;
  /** A (or B) is one matrix shared by every output batch. */
  shareA?: boolean;
  shareB?: boolean;
  bias?: boolean;
  /** Multiplies the product (not the bias or residual). */
  alpha?: number;
  /** Add a residual of the result's shape. */
  residual?: boolean;
  /** The launch is expected to split K (a partial-sum reduce follows the main kernel). */
  split?: boolean;
}

function gemmRef(
  c: Required<GemmCase>,
  a: Float32Array,
  b: Float32Array,
  bias: Float32Array,
  res: Float32Array,
) {
  const { M, N, K, batch, nRed } = c;
  const aOut = c.shareA ? 0 : M * K * nRed, bOut = c.shareB ? 0 : K * N * nRed;
  const out = new Float64Array(batch * M * N);
  for (let z = 0; z < batch; z++) {
    for (let r = 0; r < nRed; r++) {
      const oa = z * aOut + r * M * K, ob = z * bOut + r * K * N;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = 0;
          for (let k = 0; k < K; k++) {
            s += a[oa + (c.tA ? k * M + m : m * K + k)] * b[ob + (c.tB ? n * K + k : k * N + n)];
          }
          out[(z * M + m) * N + n] += s;
        }
      }
    }
    for (let i = z * M * N; i < (z + 1) * M * N; i++) {
      out[i] = c.alpha * out[i] + (c.bias ? bias[i % N] : 0) + (c.residual ? res[i] : 0);
    }
  }
  return out;
}

async function runGemm(g: GemmCase, dtype: "f32" | "f16"): Promise<void> {
  const c: Required<GemmCase> = {
    tA: false,
    tB: false,
    batch: 1,
    nRed: 1,
    shareA: false,
    shareB: false,
    bias: false,
    alpha: 1,
    residual: false,
    split: false,
    ...g,
  };
  const { M, N, K, batch, nRed } = c;
  const nA = c.shareA ? nRed : batch * nRed, nB = c.shareB ? nRed : batch * nRed;
  const a = Tensor.fromArray(randn(nA * M * K, 1), [nA * M * K], dtype);
  const b = Tensor.fromArray(randn(nB * K * N, 2), [nB * K * N], dtype);
  const bias = Tensor.fromArray(randn(N, 3), [N], dtype);
  const res = Tensor.fromArray(randn(batch * M * N, 4), [batch, M, N], dtype);
  const args: GemmArgs = {
    a,
    b,
    M,
    N,
    K,
    transA: c.tA,
    transB: c.tB,
    batch,
    nRed,
    aOut: c.shareA ? 0 : M * K * nRed,
    bOut: c.shareB ? 0 : K * N * nRed,
    aRed: M * K,
    bRed: K * N,
    bias: c.bias ? bias : null,
    alpha: c.alpha,
    residual: c.residual ? res : null,
    outShape: [batch, M, N],
  };
  const r = rt();
  r.profile = [];
  const out = gemm(args);
  const keys = r.profile.map((d) => d.key);
  r.profile = null;
  const name = `gemm ${JSON.stringify(g)} ${dtype}`;
  // The split-K cases are there for the reduce's epilogue: make sure that is what ran.
  const reduced = keys.some((k) => k.startsWith("split_k|"));
  assert.equal(reduced, c.split, `${name}: split-K ${reduced ? "" : "not "}taken (${keys})`);
  const [ah, bh, biasH, resH] = await Promise.all([a, b, bias, res].map((t) => t.toArray()));
  const want = gemmRef(c, ah, bh, biasH, resH);
  assertClose(name, await out.toArray(), want, dtype === "f16" ? 2e-3 : 1e-5);
  for (const t of [a, b, bias, res, out]) t.dispose();
}

// Ragged sizes (scalar loads), aligned ones (vec4 loads on every path), batches, shared operands,
// reduced batches, bias, and K long enough to be split for a grid this small.
const GEMMS: GemmCase[] = [
  { M: 5, N: 7, K: 3 },
  { M: 67, N: 70, K: 33, tA: true, bias: true },
  { M: 17, N: 9, K: 21, tB: true },
  { M: 33, N: 65, K: 19, tA: true, tB: true, bias: true },
  { M: 64, N: 68, K: 40 },
  { M: 12, N: 16, K: 24, tA: true, tB: true },
  { M: 8, N: 20, K: 12, tA: true },
  { M: 9, N: 8, K: 16, tB: true, bias: true },
  { M: 6, N: 5, K: 7, batch: 3, bias: true },
  { M: 8, N: 12, K: 8, batch: 2, shareA: true, tA: true },
  { M: 7, N: 4, K: 9, batch: 3, shareB: true, tB: true },
  { M: 5, N: 6, K: 11, nRed: 4, tA: true },
  { M: 8, N: 8, K: 12, batch: 2, nRed: 3, tB: true, bias: true },
  { M: 5, N: 7, K: 600, bias: true, split: true },
  { M: 16, N: 12, K: 1100, tA: true, tB: true, split: true },
  { M: 3, N: 9, K: 520, batch: 2, nRed: 2, bias: true, split: true },
];

for (const dtype of ["f32", "f16"] as const) {
  for (const tile of [TILE_64, TILE_128]) {
    Deno.test(`hardware gemm: every launch shape, ${tile.bm}x${tile.bn} tile, ${dtype}`, () =>
      poolNeutral("gemm", () =>
        withTile(tile, async () => {
          for (const g of GEMMS) await runGemm(g, dtype);
        })));
  }
}

// The fused epilogue alpha·product + bias + residual: each part alone and together, in the direct
// store (scalar and vec4 loads, batches, a batch folded into one tall GEMM, reduced batches) and
// in the split-K reduce, which must scale the complete sum before adding bias and residual.
const EPILOGUES: GemmCase[] = [
  { M: 5, N: 7, K: 3, alpha: 0.5 },
  { M: 67, N: 70, K: 33, tA: true, residual: true },
  { M: 64, N: 68, K: 40, alpha: -1.5, residual: true },
  { M: 33, N: 65, K: 19, tA: true, tB: true, bias: true, alpha: 2, residual: true },
  { M: 6, N: 5, K: 7, batch: 3, bias: true, alpha: 0.25, residual: true },
  { M: 7, N: 4, K: 9, batch: 3, shareB: true, tB: true, alpha: 3, residual: true },
  { M: 8, N: 8, K: 12, batch: 2, nRed: 3, tB: true, bias: true, alpha: -0.5, residual: true },
  { M: 5, N: 7, K: 600, alpha: 0.5, split: true },
  { M: 16, N: 12, K: 1100, tA: true, tB: true, residual: true, split: true },
  { M: 5, N: 7, K: 600, bias: true, alpha: 1.5, residual: true, split: true },
  {
    M: 3,
    N: 9,
    K: 520,
    batch: 2,
    nRed: 2,
    bias: true,
    alpha: -2,
    residual: true,
    split: true,
  },
];

for (const dtype of ["f32", "f16"] as const) {
  for (const tile of [TILE_64, TILE_128]) {
    Deno.test(`hardware gemm: alpha, bias and residual, ${tile.bm}x${tile.bn} tile, ${dtype}`, () =>
      poolNeutral("gemm epilogue", () =>
        withTile(tile, async () => {
          for (const g of EPILOGUES) await runGemm(g, dtype);
        })));
  }
}

/** Operand shapes for M x K x N with the given transposes and batch prefixes. */
function mmShapes([M, K, N]: number[], tA: boolean, tB: boolean, ba: number[] = []) {
  return [[...ba, ...(tA ? [K, M] : [M, K])], [...(tB ? [N, K] : [K, N])]];
}

/** float64 reference of op(A)·op(B) (+ bias) with B shared by the batch. */
function mmRef(M: number, K: number, N: number, tA: boolean, tB: boolean, nb: number) {
  return ([a, b, bias]: Float64Array[]) => {
    const out = new Float64Array(nb * M * N);
    for (let z = 0; z < nb; z++) {
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = bias ? bias[n] : 0;
          for (let k = 0; k < K; k++) {
            s += a[z * M * K + (tA ? k * M + m : m * K + k)] * b[tB ? n * K + k : k * N + n];
          }
          out[(z * M + m) * N + n] = s;
        }
      }
    }
    return out;
  };
}

// Gradients through autograd: the backward of a shared B sums over the batch inside the kernel.
for (const dtype of ["f32", "f16"] as const) {
  for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
    Deno.test(`hardware matmulBias gradients ${+tA}${+tB} ${dtype}`, async () => {
      const [M, K, N] = [7, 9, 5];
      const s = mmShapes([M, K, N], tA, tB, [2]);
      await checkOp({
        name: "matmulBias",
        dtype,
        shapes: [...s, [N]],
        gpu: ([a, b, c]) => matmulBias(a, b, c, { transA: tA, transB: tB }),
        cpu: mmRef(M, K, N, tA, tB, 2),
        eps: dtype === "f16" ? 1e-2 : 1e-4,
      });
    });
  }
}

Deno.test("hardware linear gradients, K long enough for split-K", async () => {
  await checkOp({
    name: "linear",
    shapes: [[3, 520], [4, 520], [4]],
    gpu: ([x, w, b]) => linear(x, w, b),
    cpu: mmRef(3, 520, 4, false, true, 1),
    gradTol: 2e-3,
  });
});

Deno.test("hardware matmul gradients with the big tile", async () => {
  await withTile(TILE_128, async () => {
    const s = mmShapes([9, 6, 11], true, false);
    await checkOp({
      name: "matmul",
      shapes: s,
      gpu: ([a, b]) => matmul(a, b, { transA: true }),
      cpu: mmRef(9, 6, 11, true, false, 1),
    });
  });
});

/** float64 references of a convolution's three passes, NCHW, weight [Cout, Cin, kh, kw]. */
function convRefs(d: ConvDims, x: Float32Array, w: Float32Array, g: Float32Array) {
  const { n, cin, cout, h, w: wd, kh, kw, ho, wo, stride } = d;
  const [top, , left] = d.pad;
  const y = new Float64Array(n * cout * ho * wo);
  const dx = new Float64Array(x.length), dw = new Float64Array(w.length);
  for (let b = 0; b < n; b++) {
    for (let co = 0; co < cout; co++) {
      for (let oy = 0; oy < ho; oy++) {
        for (let ox = 0; ox < wo; ox++) {
          const oi = ((b * cout + co) * ho + oy) * wo + ox;
          for (let ci = 0; ci < cin; ci++) {
            for (let ky = 0; ky < kh; ky++) {
              for (let kx = 0; kx < kw; kx++) {
                const iy = oy * stride + ky - top, ix = ox * stride + kx - left;
                if (iy < 0 || ix < 0 || iy >= h || ix >= wd) continue;
                const xi = ((b * cin + ci) * h + iy) * wd + ix;
                const wi = ((co * cin + ci) * kh + ky) * kw + kx;
                y[oi] += x[xi] * w[wi];
                dx[xi] += g[oi] * w[wi];
                dw[wi] += g[oi] * x[xi];
              }
            }
          }
        }
      }
    }
  }
  return { y, dx, dw };
}

/** The three passes of one convolution against the references (no autograd). */
async function runConvPasses(
  xs: number[],
  cout: number,
  k: number,
  stride: number,
  pad: number,
  dtype: "f32" | "f16",
): Promise<void> {
  const [n, cin, h, w] = xs;
  const x = Tensor.fromArray(randn(n * cin * h * w, 1), xs, dtype);
  const wt = Tensor.fromArray(randn(cout * cin * k * k, 2), [cout, cin, k, k], dtype);
  const d = convDims(x, wt, null, { stride, padding: pad });
  const g = Tensor.fromArray(randn(n * cout * d.ho * d.wo, 3), [n, cout, d.ho, d.wo], dtype);
  const ref = convRefs(d, await x.toArray(), await wt.toArray(), await g.toArray());
  const y = conv2d(x, wt, null, { stride, padding: pad });
  const dx = conv2dGradInput(g, wt, d), dw = conv2dGradWeight(x, g, d);
  const tol = dtype === "f16" ? 2e-3 : 1e-5;
  const name = `conv x[${xs}] cout ${cout} k${k} s${stride} p${pad} ${dtype}`;
  assertClose(`${name} forward`, await y.toArray(), ref.y, tol);
  assertClose(`${name} grad input`, await dx.toArray(), ref.dx, tol);
  assertClose(`${name} grad weight`, await dw.toArray(), ref.dw, tol);
  for (const t of [x, wt, g, y, dx, dw]) t.dispose();
}

// Channel counts whose K (cin x taps) is split for a grid this small, 1x1 (a plain GEMM), stride 2.
const CONVS: [number[], number, number, number, number][] = [
  [[2, 3, 7, 6], 5, 3, 1, 1],
  [[1, 4, 8, 7], 6, 3, 2, 0],
  [[2, 5, 6, 5], 7, 3, 2, 1],
  [[2, 6, 5, 3], 9, 1, 1, 0],
  [[1, 64, 5, 4], 70, 3, 1, 1],
  [[3, 33, 4, 5], 6, 1, 2, 0],
  [[1, 600, 2, 3], 5, 1, 1, 0],
];

for (const dtype of ["f32", "f16"] as const) {
  for (const tile of [TILE_64, TILE_128]) {
    Deno.test(`hardware conv2d passes, ${tile.bm}x${tile.bn} tile, ${dtype}`, () =>
      poolNeutral("conv2d", () =>
        withTile(tile, async () => {
          for (const [xs, cout, k, s, p] of CONVS) await runConvPasses(xs, cout, k, s, p, dtype);
        })));
  }
}

/** float64 reference convolution (for the autograd check). */
function convFn(xs: number[], cout: number, k: number, stride: number, pad: number) {
  return ([x, w, b]: Float64Array[]) => {
    const [n, cin, h, wd] = xs;
    const ho = Math.floor((h + 2 * pad - k) / stride) + 1;
    const wo = Math.floor((wd + 2 * pad - k) / stride) + 1;
    const y = new Float64Array(n * cout * ho * wo);
    for (let q = 0; q < n; q++) {
      for (let co = 0; co < cout; co++) {
        for (let oy = 0; oy < ho; oy++) {
          for (let ox = 0; ox < wo; ox++) {
            let s = b ? b[co] : 0;
            for (let ci = 0; ci < cin; ci++) {
              for (let ky = 0; ky < k; ky++) {
                for (let kx = 0; kx < k; kx++) {
                  const iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
                  if (iy < 0 || ix < 0 || iy >= h || ix >= wd) continue;
                  s += x[((q * cin + ci) * h + iy) * wd + ix] *
                    w[((co * cin + ci) * k + ky) * k + kx];
                }
              }
            }
            y[((q * cout + co) * ho + oy) * wo + ox] = s;
          }
        }
      }
    }
    return y;
  };
}

for (const dtype of ["f32", "f16"] as const) {
  for (const [xs, cout, k, s, p] of CONVS.slice(0, 4)) {
    Deno.test(`hardware conv2d gradients x[${xs}] k${k} s${s} p${p} bias ${dtype}`, async () => {
      await checkOp({
        name: "conv2d",
        dtype,
        shapes: [xs, [cout, xs[1], k, k], [cout]],
        gpu: ([x, w, b]) => conv2d(x, w, b, { stride: s, padding: p }),
        cpu: convFn(xs, cout, k, s, p),
        eps: dtype === "f16" ? 1e-2 : 1e-4,
      });
    });
  }
}

Deno.test("hardware conv2d with bias on a split K", async () => {
  const xs = [1, 60, 3, 3];
  await checkOp({
    name: "conv2d split-K",
    shapes: [xs, [4, 60, 3, 3], [4]],
    gpu: ([x, w, b]) => conv2d(x, w, b, { padding: 1 }),
    cpu: convFn(xs, 4, 3, 1, 1),
    gradTol: 2e-3,
  });
});

/** Threads the runtime's profile records for the launches of `fn` (main kernels only). */
async function profiled(fn: () => Tensor[]): Promise<number[]> {
  const r = rt();
  r.profile = [];
  const outs = fn();
  const rec = r.profile;
  r.profile = null;
  for (const t of outs) t.dispose();
  await r.sync();
  return rec.filter((d) => d.flops > 0).map((d) => d.threads);
}

for (const family of ["software", "hardware"] as const) {
  Deno.test(`thread counts match the launches, ${family} family`, () =>
    poolNeutral("threads", async () => {
      setKernelFamily(family);
      try {
        for (const [M, K, N] of [[40, 24, 36], [5, 600, 7], [200, 16, 72]]) {
          const a = Tensor.zeros([M, K]), b = Tensor.zeros([K, N]);
          assert.deepEqual(await profiled(() => [matmul(a, b)]), [gemmThreads({ M, N, K })]);
          a.dispose();
          b.dispose();
        }
        for (const [xs, cout, k, s, p] of CONVS) {
          const x = Tensor.zeros(xs), w = Tensor.zeros([cout, xs[1], k, k]);
          const d = convDims(x, w, null, { stride: s, padding: p });
          const g = Tensor.zeros([d.n, d.cout, d.ho, d.wo]);
          const got = await profiled(() => [
            conv2d(x, w, null, { stride: s, padding: p }),
            conv2dGradInput(g, w, d),
            conv2dGradWeight(x, g, d),
          ]);
          const want = (["forward", "input", "weight"] as const).map((q) => conv2dThreads(d, q));
          assert.deepEqual(got, want, `conv x[${xs}] k${k} s${s}`);
          for (const t of [x, w, g]) t.dispose();
        }
      } finally {
        setKernelFamily("hardware");
      }
    }));
}

Deno.test("SD1.5-sized launches start at least 65,536 threads in the hardware family", async () => {
  await initGpu();
  // Attention projections at 64x64 latents, a feed-forward, and the 1280-channel convolutions.
  for (const [M, K, N] of [[4096, 320, 320], [4096, 320, 2560], [1024, 640, 640]]) {
    const t = gemmThreads({ M, N, K }, "hardware");
    assert.ok(t >= 65536, `GEMM ${M}x${K}x${N}: ${t} threads`);
  }
  const conv = (n: number, cin: number, cout: number, hw: number): ConvDims => ({
    n,
    cin,
    cout,
    h: hw,
    w: hw,
    kh: 3,
    kw: 3,
    ho: hw,
    wo: hw,
    stride: 1,
    pad: [1, 1, 1, 1],
  });
  for (const d of [conv(1, 1280, 1280, 8), conv(2, 1280, 1280, 8), conv(1, 320, 320, 64)]) {
    for (const pass of ["forward", "input", "weight"] as const) {
      const t = conv2dThreads(d, pass, "hardware");
      assert.ok(t >= 65536, `conv ${d.cin}->${d.cout} at ${d.h}x${d.w} ${pass}: ${t} threads`);
    }
  }
});

Deno.test("kernelFamily: forced, else LORAKIT_KERNELS, else the adapter", async () => {
  await initGpu();
  try {
    setKernelFamily("software");
    assert.equal(kernelFamily(), "software");
    setKernelFamily(null);
    const env = Deno.env.get("LORAKIT_KERNELS");
    const want = env === "software" || env === "hardware"
      ? env
      : rt().gpu.isSoftware
      ? "software"
      : "hardware";
    assert.equal(kernelFamily(), want);
  } finally {
    setKernelFamily("hardware");
  }
});

// Mixed precision in the tiled kernels: f32 operands read as f16 (scalar and vec4 loads) and an
// f32 result rounded to f16, in the direct store and in the split-K reduce, bit for bit the cast
// kernels around the f16 GEMM.
const MIXED_TILED: [string, ReturnType<typeof layout>, boolean][] = [
  ["ragged", layout(5, 7, 3), false],
  ["aligned (vec4 loads)", layout(64, 68, 40), false],
  ["transposed", layout(12, 16, 24, { tA: true, tB: true }), false],
  ["batches, alpha, residual", layout(6, 5, 7, { batch: 3, alpha: 0.25 }), true],
  ["reduced batches", layout(8, 40, 32, { nRed: 3, tB: true }), false],
  ["split K", layout(5, 7, 600), false],
  [
    "split K transposed, alpha, residual",
    layout(16, 12, 1100, { tA: true, tB: true, alpha: 2 }),
    true,
  ],
];

for (const tile of [TILE_64, TILE_128]) {
  Deno.test(`hardware mixed-precision gemm, ${tile.bm}x${tile.bn} tile: the cast path`, () =>
    poolNeutral("mixed gemm", () =>
      withTile(tile, async () => {
        for (const mix of MIXES) {
          for (const [what, { g, sizes }, res] of MIXED_TILED) {
            await checkMixedGemm(what, g, sizes, mix, gemmLayoutRef(g), res && !mix.out);
          }
        }
      })));
}

Deno.test("hardware linear with an f32 weight: float64 reference and the cast path", async () => {
  await checkOp({
    name: "linear mixed",
    dtype: "f16",
    dtypes: [undefined, "f32"],
    shapes: [[9, 8], [12, 8]],
    gpu: ([x, w]) => linear(x, w),
    cpu: mmRef(9, 8, 12, false, true, 1),
    eps: 1e-2,
  });
  // 520 rows: the weight gradient's K is split, and its f32 result comes from the reduce.
  for (const [rows, nIn, nOut] of [[6, 5, 3], [64, 32, 8], [520, 8, 4]]) {
    await checkMixedAutograd(
      `linear [${rows}, ${nIn}] -> ${nOut}`,
      { x: [rows, nIn], w: [nOut, nIn], out: [rows, nOut] },
      (x, w, r) => linear(x, w, null, { alpha: 0.75, residual: r }),
    );
  }
});
