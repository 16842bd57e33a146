import assert from "node:assert/strict";
import { initGpu, linear, matmul, matmulBias, OpArgumentError, Tensor } from "../gpu/mod.ts";
import { checkOp } from "./op_check.ts";
import {
  checkMixedAutograd,
  checkMixedGemm,
  gemmLayoutRef,
  layout,
  MIXES,
} from "./mixed_precision_check.ts";

/** float64 reference of a batched op(A)·op(B) (+ bias) with batch-1 broadcasting. */
function mmRef(
  sa: number[],
  sb: number[],
  tA: boolean,
  tB: boolean,
): (xs: Float64Array[]) => Float64Array {
  const [ar, ac] = sa.slice(-2), [br, bc] = sb.slice(-2);
  const M = tA ? ac : ar, K = tA ? ar : ac, N = tB ? br : bc;
  const nA = sa.slice(0, -2).reduce((p, q) => p * q, 1);
  const nB = sb.slice(0, -2).reduce((p, q) => p * q, 1);
  const nOut = Math.max(nA, nB);
  return ([a, b, bias]) => {
    const out = new Float64Array(nOut * M * N);
    for (let z = 0; z < nOut; z++) {
      const oa = nA === 1 ? 0 : z * M * K, ob = nB === 1 ? 0 : z * K * N;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = bias ? bias[n] : 0;
          for (let k = 0; k < K; k++) {
            s += a[oa + (tA ? k * M + m : m * K + k)] * b[ob + (tB ? n * K + k : k * N + n)];
          }
          out[z * M * N + m * N + n] = s;
        }
      }
    }
    return out;
  };
}

/** Operand shapes for M x K x N with the given transposes and batch prefixes. */
function shapes(
  [M, K, N]: number[],
  tA: boolean,
  tB: boolean,
  ba: number[] = [],
  bb: number[] = [],
): number[][] {
  return [[...ba, ...(tA ? [K, M] : [M, K])], [...bb, ...(tB ? [N, K] : [K, N])]];
}

const flags = [[false, false], [false, true], [true, false], [true, true]] as const;
const tag = (tA: boolean, tB: boolean) => `${tA ? "T" : "N"}${tB ? "T" : "N"}`;

// Ragged sizes take the scalar-load variants; the aligned ones take every vec4 path.
for (const mkn of [[5, 7, 3], [17, 33, 9], [8, 12, 16]]) {
  for (const [tA, tB] of flags) {
    Deno.test(`matmul ${mkn.join("x")} ${tag(tA, tB)} f32`, async () => {
      const s = shapes(mkn, tA, tB);
      await checkOp({
        name: `matmul ${tag(tA, tB)}`,
        shapes: s,
        gpu: ([a, b]) => matmul(a, b, { transA: tA, transB: tB }),
        cpu: mmRef(s[0], s[1], tA, tB),
      });
    });
  }
}

Deno.test("matmul spanning several workgroups with ragged edges", async () => {
  const s = shapes([53, 8, 101], false, false);
  await checkOp({
    name: "matmul",
    shapes: s,
    gpu: ([a, b]) => matmul(a, b),
    cpu: mmRef(s[0], s[1], false, false),
  });
});

for (const [tA, tB] of flags) {
  Deno.test(`matmul f16 ${tag(tA, tB)}`, async () => {
    const s = shapes([12, 9, 8], tA, tB);
    await checkOp({
      name: `matmul f16 ${tag(tA, tB)}`,
      dtype: "f16",
      shapes: s,
      gpu: ([a, b]) => matmul(a, b, { transA: tA, transB: tB }),
      cpu: mmRef(s[0], s[1], tA, tB),
      eps: 1e-2,
    });
  });
}

Deno.test("matmul f16 aligned (vec4 loads)", async () => {
  const s = shapes([8, 16, 12], true, false);
  await checkOp({
    name: "matmul f16 TN",
    dtype: "f16",
    shapes: s,
    gpu: ([a, b]) => matmul(a, b, { transA: true }),
    cpu: mmRef(s[0], s[1], true, false),
    eps: 1e-2,
  });
});

// Above the small-problem threshold: the f16 default tile with eight-half loads on every path.
for (const [mkn, tA, tB] of [[[24, 16, 200], true, false], [[40, 16, 112], false, true]] as const) {
  Deno.test(`matmul f16 default tile, eight-half loads ${tag(tA, tB)}`, async () => {
    const s = shapes([...mkn], tA, tB);
    await checkOp({
      name: `matmul f16 ${tag(tA, tB)}`,
      dtype: "f16",
      shapes: s,
      gpu: ([a, b]) => matmul(a, b, { transA: tA, transB: tB }),
      cpu: mmRef(s[0], s[1], tA, tB),
      eps: 1e-2,
    });
  });
}

Deno.test("matmul batched", async () => {
  const s = shapes([5, 6, 3], false, true, [2, 2], [2, 2]);
  await checkOp({
    name: "matmul batched",
    shapes: s,
    gpu: ([a, b]) => matmul(a, b, { transB: true }),
    cpu: mmRef(s[0], s[1], false, true),
  });
});

Deno.test("matmul broadcast B: [B,M,K] x [K,N]", async () => {
  const s = shapes([4, 5, 7], false, false, [3]);
  await checkOp({
    name: "matmul bcast B",
    shapes: s,
    gpu: ([a, b]) => matmul(a, b),
    cpu: mmRef(s[0], s[1], false, false),
  });
});

Deno.test("matmul broadcast A: [M,K] x [B,K,N], transposed", async () => {
  const s = shapes([4, 8, 6], true, true, [], [3]);
  await checkOp({
    name: "matmul bcast A",
    shapes: s,
    gpu: ([a, b]) => matmul(a, b, { transA: true, transB: true }),
    cpu: mmRef(s[0], s[1], true, true),
  });
});

Deno.test("matmulBias fused epilogue", async () => {
  const s = shapes([6, 5, 7], false, true, [2]);
  await checkOp({
    name: "matmulBias",
    shapes: [...s, [7]],
    gpu: ([a, b, c]) => matmulBias(a, b, c, { transB: true }),
    cpu: mmRef(s[0], s[1], false, true),
  });
});

for (const withBias of [true, false]) {
  Deno.test(`linear ${withBias ? "with" : "without"} bias`, async () => {
    const ref = mmRef([6, 5], [4, 5], false, true);
    await checkOp({
      name: "linear",
      shapes: withBias ? [[2, 3, 5], [4, 5], [4]] : [[2, 3, 5], [4, 5]],
      gpu: ([x, w, b]) => linear(x, w, b),
      cpu: ref,
    });
  });
}

Deno.test("linear f16 with bias", async () => {
  await checkOp({
    name: "linear f16",
    dtype: "f16",
    shapes: [[7, 8], [12, 8], [12]],
    gpu: ([x, w, b]) => linear(x, w, b),
    cpu: mmRef([7, 8], [12, 8], false, true),
    eps: 1e-2,
  });
});

Deno.test("matmul and linear reject bad shapes naming the op and both shapes", async () => {
  await initGpu();
  const a = Tensor.zeros([2, 3]), b = Tensor.zeros([4, 5]), w = Tensor.zeros([6, 4]);
  const hit = (re: RegExp) => (e: unknown) => e instanceof OpArgumentError && re.test(e.message);
  assert.throws(() => matmul(a, b), hit(/^matmul: .*f32\[2,3\].*f32\[4,5\]/));
  assert.throws(() => matmul(a, b, { transA: true }), hit(/^matmul: .*f32\[2,3\].*f32\[4,5\]/));
  assert.throws(() => linear(a, w), hit(/^linear: .*f32\[2,3\].*f32\[6,4\]/));
  const x = Tensor.zeros([2, 3, 4]), y = Tensor.zeros([3, 4, 5]);
  assert.throws(() => matmul(x, y), hit(/^matmul: batch .*f32\[2,3,4\].*f32\[3,4,5\]/));
  for (const t of [a, b, w, x, y]) t.dispose();
});

// Mixed precision (an f32 LoRA factor against f16 activations, its f32 gradient): the software
// GEMM reads f32 operands as f16 and rounds an f32 result to f16, bit for bit what cast kernels
// around the f16 GEMM give; small (scalar and vec4 loads) and default tiles (eight-half loads of
// the f16 operand against vec4 loads of the f32 one), every transpose pair, batches, reduced
// batches, alpha and a residual.
const MIXED_LAYOUTS: [string, ReturnType<typeof layout>, boolean][] = [
  ["ragged", layout(5, 7, 3), false],
  ["aligned small tile", layout(8, 12, 16, { tB: true }), false],
  ...[[false, false], [true, true]].map((
    [tA, tB],
  ): [string, ReturnType<typeof layout>, boolean] => [
    `default tile ${tag(tA, tB)}`,
    layout(72, 80, 24, { tA, tB }),
    false,
  ]),
  ["ragged default tile", layout(70, 67, 21, { tA: true }), false],
  ["batches, alpha, residual", layout(24, 32, 16, { batch: 3, alpha: 0.5 }), true],
  ["reduced batches (a weight gradient)", layout(8, 40, 32, { nRed: 3, tB: true }), false],
];

for (const mix of MIXES) {
  Deno.test(`mixed-precision gemm ${JSON.stringify(mix)}: the cast path, bit for bit`, async () => {
    for (const [what, { g, sizes }, res] of MIXED_LAYOUTS) {
      // A residual has the result's dtype: the cast path has only an f16 one.
      const withRes = res && !mix.out;
      await checkMixedGemm(what, g, sizes, mix, gemmLayoutRef(g), withRes);
    }
  });
}

Deno.test("linear with an f32 weight and f16 x: f16 result, f32 weight gradient", async () => {
  await checkOp({
    name: "linear mixed",
    dtype: "f16",
    dtypes: [undefined, "f32"],
    shapes: [[2, 7, 8], [12, 8]],
    gpu: ([x, w]) => linear(x, w),
    cpu: mmRef([14, 8], [12, 8], false, true),
    eps: 1e-2,
  });
});

Deno.test("linear with an f32 weight, alpha and a residual: the cast path, bit for bit", async () => {
  for (const [rows, nIn, nOut] of [[6, 5, 3], [64, 32, 8], [64, 8, 32]]) {
    await checkMixedAutograd(
      `linear [${rows}, ${nIn}] -> ${nOut}`,
      { x: [rows, nIn], w: [nOut, nIn], out: [rows, nOut] },
      (x, w, r) => linear(x, w, null, { alpha: 0.75, residual: r }),
    );
  }
});
