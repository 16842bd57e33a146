/**
 * The hardware family's GEMM: the same launches as `gemm()` (transposes, output batches, batches
 * summed inside the kernel, the fused epilogue alpha·product + bias + residual) with the
 * workgroup-tiled kernel of `shaders/matmul_tiled.wgsl`.
 *
 * @module
 */
import { numel, type Tensor } from "../tensor.ts";
import { check, fmt } from "./check.ts";
import { type GemmArgs, gemmDtype, gemmOutDtype } from "./gemm_args.ts";
import type { OperandLoad } from "./tiled_codegen.ts";
import { runTiled } from "./tiled_launch.ts";

/** A GEMM launch; `biasRows` adds bias[m] instead of bias[n] (a convolution's channels). */
export type TiledGemmArgs = Omit<GemmArgs, "tile"> & { biasRows?: boolean };

/**
 * Vec4 loads need the contiguous extent and every batch offset to be multiples of 4, so that a
 * vector is either wholly inside the operand or wholly past its edge.
 */
function aligned(extent: number, ...offsets: number[]): boolean {
  return extent % 4 === 0 && offsets.every((o) => o % 4 === 0);
}

/**
 * One operand: `x` is "a" or "b"; `kMajor` says it is stored with k as the slow index (A
 * transposed, B not), else k is contiguous; `round`: it is stored in f32 for an f16 GEMM and each
 * value is rounded to f16 as it is read.
 */
function operand(x: "a" | "b", kMajor: boolean, vec: boolean, round: boolean): OperandLoad {
  const rows = x === "a" ? "p.M" : "p.N";
  const addr = kMajor ? `${x}Off + ${x}K * ${rows} + ${x}R` : `${x}Off + ${x}R * p.K + ${x}K`;
  const elem = round ? `f32(T(${x}[${addr}]))` : `f32(${x}[${addr}])`;
  return vec ? { rFast: kMajor, vec4: addr, round } : { rFast: kMajor, elem: [`v = ${elem};`] };
}

/**
 * C = alpha·op(A)·op(B) (+ bias) (+ residual) with the tiled kernel; same arguments and result as
 * `gemm()`.
 */
export function tiledGemm(g: TiledGemmArgs): Tensor {
  const { M, N, K, transA: tA, transB: tB } = g;
  const res = g.residual ?? null;
  // An f32 operand of an f16 GEMM is read as f16; an f32 result of one is rounded to f16 first.
  const dtype = gemmDtype(g), outDtype = gemmOutDtype(g);
  // The epilogue reads the residual at the output's own index: same size and type.
  check(
    !res || (res.dtype === outDtype && res.size === numel(g.outShape)),
    "matmul",
    () => `residual ${res ? fmt(res) : ""} must match the result ${outDtype}[${g.outShape}]`,
  );
  const store = (x: Tensor): string => (x.dtype === dtype ? "T" : x.dtype);
  const vecA = aligned(tA ? M : K, g.aOut, g.aRed);
  const vecB = aligned(tB ? K : N, g.bOut, g.bRed);
  const decl = (x: string, vec: boolean, s: string) =>
    vec ? `var<storage, read> ${x}4: array<vec4<${s}>>;` : `var<storage, read> ${x}: array<${s}>;`;
  const [sA, sB] = [store(g.a), store(g.b)];
  const mixed = sA !== "T" || sB !== "T" ? `|${g.a.dtype}${g.b.dtype}` : "";
  const bias = g.bias
    ? g.biasRows
      ? { expr: "f32(bias[m])", layout: { bias: g.bias, div: N, mod: M } }
      : { expr: "f32(bias[n])", layout: { bias: g.bias, div: 1, mod: N } }
    : null;
  return runTiled({
    op: "matmul",
    key: `tiled_gemm|${+tA}${+tB}|${+vecA}${+vecB}${mixed}`,
    dtype,
    outDtype,
    M,
    N,
    K,
    batch: g.batch,
    nRed: g.nRed,
    offsets: [g.aOut, g.bOut, g.aRed, g.bRed],
    hwD: 0,
    kernel: () => ({
      bindings: [decl("a", vecA, sA), decl("b", vecB, sB)],
      a: operand("a", tA, vecA, sA !== "T"),
      b: operand("b", !tB, vecB, sB !== "T"),
      outIndex: ["let o = (z * p.M + m) * p.N + n;"],
    }),
    bias,
    alpha: g.alpha ?? 1,
    residual: res,
    inputs: [g.a.buffer, g.b.buffer],
    outShape: g.outShape,
  });
}
