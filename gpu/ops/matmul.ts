/**
 * Batched matrix multiply with optional transposed operands and a fused bias, and its backward
 * (the same kernel with transpose flags; a broadcast operand's gradient is summed over the batch
 * inside the kernel).
 *
 * @module
 */
import { record } from "../autograd.ts";
import { kernelFamily } from "../family.ts";
import { rt, uniforms } from "../runtime.ts";
import { type DType, dtypeBytes, numel, Tensor } from "../tensor.ts";
import { check, fmt, sameDtype } from "./check.ts";
import { type GemmArgs, gemmDtype, gemmOutDtype, type GemmTile } from "./gemm_args.ts";
import { gemmSource, type GemmVariant } from "./matmul_codegen.ts";
import { tiledGemm } from "./matmul_tiled.ts";
import { sumTo } from "./reduce.ts";

export type { GemmArgs, GemmTile };

/** Transpose flags: `transA` reads `a` as its last-two-dims transpose, `transB` likewise. */
export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
}

/**
 * The default tiles, the fastest in bench/matmul.ts on lavapipe: f16 takes 16 columns so that
 * both operands get 8-half loads.
 */
export const DEFAULT_TILE: Record<DType, GemmTile> = {
  f32: { tm: 12, tn: 12, wx: 8, wy: 4 },
  f16: { tm: 8, tn: 16, wx: 8, wy: 4 },
};

/** Tiny products (a few thousand outputs) compile a small tile: they are launch-bound anyway. */
const SMALL_TILE: GemmTile = { tm: 4, tn: 4, wx: 8, wy: 8 };
const SMALL_OUTPUTS = 4096;

/** Elements per load for a contiguous extent `n` and a tile extent `t` along it. */
function loadWidth(dtype: DType, n: number, t: number): 1 | 4 | 8 {
  if (dtype === "f16" && n % 8 === 0 && t % 8 === 0) return 8;
  return n % 4 === 0 && t % 4 === 0 ? 4 : 1;
}

/** Launch one GEMM (no autograd). */
export function gemm(g: GemmArgs): Tensor {
  let { M, batch } = g;
  const { N, K } = g;
  // A batch of row-major A against one shared B is one tall GEMM: more rows per dispatch.
  if (batch > 1 && g.nRed === 1 && g.bOut === 0 && !g.transA && g.aOut === M * K) {
    M *= batch;
    batch = 1;
  }
  // Checks come before the output is allocated, so a refused launch leaks nothing.
  const lim = rt().gpu.limits;
  // Operands stored in f32 against f16 ones are read as f16 (see gemmDtype).
  const dtype = gemmDtype(g), outDtype = gemmOutDtype(g);
  const outBytes = numel(g.outShape) * dtypeBytes(outDtype);
  for (const [what, bytes] of [[fmt(g.a), g.a.buffer.size], [fmt(g.b), g.b.buffer.size]] as const) {
    check(
      bytes <= lim.maxStorageBufferBindingSize,
      "matmul",
      () => `${what} is larger than one storage binding (${lim.maxStorageBufferBindingSize} bytes)`,
    );
  }
  check(
    outBytes <= lim.maxStorageBufferBindingSize,
    "matmul",
    () => `the result [${g.outShape}] is larger than one storage binding`,
  );
  // An explicit tile asks for the software kernel (benchmarks compare its variants).
  if (!g.tile && kernelFamily() === "hardware") return tiledGemm({ ...g, M, batch });
  const tile = g.tile ?? (M * N * batch <= SMALL_OUTPUTS ? SMALL_TILE : DEFAULT_TILE[dtype]);
  const v: GemmVariant = {
    dtype,
    ...tile,
    transA: g.transA,
    transB: g.transB,
    // Vector reads need the contiguous dimension (so every batch offset) to be a multiple of the
    // width, and a transposed-A read along M a tile height that is one too.
    widthA: loadWidth(g.a.dtype, g.transA ? M : K, g.transA ? tile.tm : 8),
    widthB: loadWidth(g.b.dtype, g.transB ? K : N, g.transB ? 8 : tile.tn),
    bias: !!g.bias,
    scaled: (g.alpha ?? 1) !== 1,
    residual: !!g.residual,
    dtypeA: g.a.dtype,
    dtypeB: g.b.dtype,
    dtypeC: outDtype,
  };
  const wg: [number, number, number] = [
    Math.ceil(N / (tile.tn * tile.wx)),
    Math.ceil(M / (tile.tm * tile.wy)),
    batch,
  ];
  check(
    wg.every((x) => x <= lim.maxComputeWorkgroupsPerDimension),
    "matmul",
    () => `[${M}, ${K}] x [${K}, ${N}] in ${batch} batches needs a grid of [${wg}] workgroups`,
  );
  const out = Tensor.empty(g.outShape, outDtype);
  if (M === 0 || N === 0 || batch === 0) return out;
  const buffers = [g.a.buffer, g.b.buffer, out.buffer];
  if (g.bias) buffers.push(g.bias.buffer);
  if (g.residual) buffers.push(g.residual.buffer);
  if (v.widthA > 1) buffers.push(g.a.buffer);
  if (v.widthB > 1) buffers.push(g.b.buffer);
  const u = uniforms().u(M, N, K, g.nRed, g.aOut, g.bOut, g.aRed, g.bRed).f(g.alpha ?? 1)
    .u(0, 0, 0);
  const key = `gemm|${v.dtype}|${v.tm}|${v.tn}|${v.wx}|${v.wy}|${+v.transA}${+v.transB}|` +
    `${v.widthA}|${v.widthB}|${+v.bias}${+v.scaled}${+v.residual}` +
    (g.a.dtype === dtype && g.b.dtype === dtype && outDtype === dtype
      ? ""
      : `|${g.a.dtype}${g.b.dtype}${outDtype}`);
  const flops = 2 * M * N * K * batch * g.nRed;
  rt().dispatch(rt().kernel(key, () => gemmSource(v)), buffers, u, wg, flops);
  return out;
}

/** Shapes of a matmul: batch dims of each operand and of the result, and M, N, K. */
interface Plan {
  M: number;
  N: number;
  K: number;
  nA: number;
  nB: number;
  nOut: number;
  outShape: number[];
}

function plan(op: string, a: Tensor, b: Tensor, tA: boolean, tB: boolean): Plan {
  sameDtype(op, a, b);
  const both = () => `${fmt(a)} x ${fmt(b)}${tA ? " (transA)" : ""}${tB ? " (transB)" : ""}`;
  check(a.rank >= 2 && b.rank >= 2, op, () => `operands must be at least 2-D: ${both()}`);
  const [ar, ac] = a.shape.slice(-2), [br, bc] = b.shape.slice(-2);
  const M = tA ? ac : ar, Ka = tA ? ar : ac, Kb = tB ? bc : br, N = tB ? br : bc;
  check(Ka === Kb, op, () => `inner dimensions differ (${Ka} vs ${Kb}): ${both()}`);
  const ab = a.shape.slice(0, -2), bb = b.shape.slice(0, -2);
  const r = Math.max(ab.length, bb.length);
  const pa = [...new Array(r - ab.length).fill(1), ...ab];
  const pb = [...new Array(r - bb.length).fill(1), ...bb];
  const ob = pa.map((x, i) => Math.max(x, pb[i]));
  const nA = numel(ab), nB = numel(bb), nOut = numel(ob);
  // Each operand's batch is either the full batch or a single matrix shared by all of it.
  const fits = (p: number[], n: number) => n === 1 || p.every((x, i) => x === ob[i]);
  check(
    fits(pa, nA) && fits(pb, nB),
    op,
    () => `batch dimensions do not broadcast (each must match or be all 1): ${both()}`,
  );
  return { M, N, K: Ka, nA, nB, nOut, outShape: [...ob, M, N] };
}

/** C = op(A)·op(B) (+ bias) for a plan, no autograd. */
function forward(
  a: Tensor,
  b: Tensor,
  p: Plan,
  tA: boolean,
  tB: boolean,
  bias: Tensor | null,
  tile?: GemmTile,
): Tensor {
  const { M, N, K } = p;
  return gemm({
    a,
    b,
    M,
    N,
    K,
    transA: tA,
    transB: tB,
    batch: p.nOut,
    nRed: 1,
    aOut: p.nA === 1 ? 0 : M * K,
    bOut: p.nB === 1 ? 0 : K * N,
    aRed: 0,
    bRed: 0,
    bias,
    outShape: p.outShape,
    tile,
  });
}

/**
 * A product for a gradient: C = op(X)·op(Y) per output batch, where the result has `nRes`
 * batches (nOut, or 1 for a broadcast operand whose gradient sums over the batch).
 */
function gradGemm(
  x: Tensor,
  y: Tensor,
  dims: [number, number, number],
  tX: boolean,
  tY: boolean,
  strides: [number, number],
  nRes: number,
  nOut: number,
  shape: number[],
): Tensor {
  const [M, N, K] = dims;
  const reduce = nRes !== nOut;
  return gemm({
    a: x,
    b: y,
    M,
    N,
    K,
    transA: tX,
    transB: tY,
    batch: reduce ? 1 : nOut,
    nRed: reduce ? nOut : 1,
    aOut: reduce ? 0 : strides[0],
    bOut: reduce ? 0 : strides[1],
    aRed: reduce ? strides[0] : 0,
    bRed: reduce ? strides[1] : 0,
    outShape: shape,
  });
}

/** Gradients of C = op(A)·op(B) for both operands (null where not needed). */
function backwardAB(
  g: Tensor,
  a: Tensor,
  b: Tensor,
  p: Plan,
  tA: boolean,
  tB: boolean,
  need: [boolean, boolean],
): [Tensor | null, Tensor | null] {
  const { M, N, K, nA, nB, nOut } = p;
  const sg = M * N, sa = nA === 1 ? 0 : M * K, sb = nB === 1 ? 0 : K * N;
  let da: Tensor | null = null, db: Tensor | null = null;
  if (need[0]) {
    da = tA // dA is stored [K, M]: op(B)·gᵀ; else g·op(B)ᵀ.
      ? gradGemm(b, g, [K, M, N], tB, true, [sb, sg], nA, nOut, a.shape)
      : gradGemm(g, b, [M, K, N], false, !tB, [sg, sb], nA, nOut, a.shape);
  }
  if (need[1]) {
    db = tB // dB is stored [N, K]: gᵀ·op(A); else op(A)ᵀ·g.
      ? gradGemm(g, a, [N, K, M], true, tA, [sg, sa], nB, nOut, b.shape)
      : gradGemm(a, g, [K, N, M], !tA, false, [sa, sg], nB, nOut, b.shape);
  }
  return [da, db];
}

/**
 * Batched matrix product `op(a)·op(b)`: a [..., M, K] (or [..., K, M] with `transA`) times
 * b [..., K, N] (or [..., N, K] with `transB`) -> [..., M, N]. Each operand's batch dims either
 * match the result's or are all 1 (one matrix shared by the whole batch).
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOptions = {}): Tensor {
  const tA = !!opts.transA, tB = !!opts.transB;
  const p = plan("matmul", a, b, tA, tB);
  const y = forward(a, b, p, tA, tB, null);
  return record(
    "matmul",
    [a, b],
    y,
    [a, b],
    (g, [sa, sb]) => backwardAB(g, sa, sb, p, tA, tB, [a.requiresGrad, b.requiresGrad]),
  );
}

/** `op(a)·op(b) + bias` with bias [N] added in the kernel's epilogue. */
export function matmulBias(a: Tensor, b: Tensor, bias: Tensor, opts: MatmulOptions = {}): Tensor {
  const tA = !!opts.transA, tB = !!opts.transB;
  const p = plan("matmulBias", a, b, tA, tB);
  sameDtype("matmulBias", a, bias);
  check(
    bias.rank === 1 && bias.shape[0] === p.N,
    "matmulBias",
    () => `bias ${fmt(bias)} must be [${p.N}] for ${fmt(a)} x ${fmt(b)}`,
  );
  const y = forward(a, b, p, tA, tB, bias);
  return record("matmulBias", [a, b, bias], y, [a, b], (g, [sa, sb]) => [
    ...backwardAB(g, sa, sb, p, tA, tB, [a.requiresGrad, b.requiresGrad]),
    bias.requiresGrad ? sumTo(g, bias.shape) : null,
  ]);
}

/** `op(a)·op(b)` without autograd, with an explicit tile (for benchmarks and tuning). */
export function matmulRaw(a: Tensor, b: Tensor, opts: MatmulOptions & { tile?: GemmTile }): Tensor {
  const tA = !!opts.transA, tB = !!opts.transB;
  return forward(a, b, plan("matmul", a, b, tA, tB), tA, tB, null, opts.tile);
}
