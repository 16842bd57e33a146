/**
 * The arguments of one GEMM launch, shared by the plain kernel (`matmul.ts`) and the tiled one
 * (`matmul_tiled.ts`); `matmul.ts` re-exports them.
 *
 * @module
 */
import type { DType, Tensor } from "../tensor.ts";

/** The register block of one invocation and the workgroup shape (see bench/matmul.ts). */
export interface GemmTile {
  tm: number;
  tn: number;
  wx: number;
  wy: number;
}

/** One GEMM launch: C[z] = sum_r op(A)[z,r] * op(B)[z,r] (+ bias); offsets in elements. */
export interface GemmArgs {
  a: Tensor;
  b: Tensor;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  /** Output batches (grid z) and reduced batches (loop inside the kernel). */
  batch: number;
  nRed: number;
  aOut: number;
  bOut: number;
  aRed: number;
  bRed: number;
  bias?: Tensor | null;
  /** Multiplies the product (not the bias or residual); default 1. */
  alpha?: number;
  /** Added to the result (same shape and dtype as it), e.g. a gradient being accumulated. */
  residual?: Tensor | null;
  outShape: number[];
  /**
   * The result's storage dtype (default: the GEMM's dtype, {@link gemmDtype}). An f32 result of an
   * f16 GEMM is the f16 result widened: each value is rounded to f16 before it is stored, as a
   * cast kernel after the GEMM would (an f32 parameter's gradient under mixed precision).
   */
  outDtype?: DType;
  tile?: GemmTile;
}

/**
 * The dtype a GEMM computes in: f16 when either operand is stored in f16, else f32. An f32
 * operand of an f16 GEMM is rounded to f16 as it is read, exactly as a cast to f16 before the
 * GEMM would round it (an f32 LoRA factor against f16 activations), so no cast kernel runs.
 */
export function gemmDtype(g: Pick<GemmArgs, "a" | "b">): DType {
  return g.a.dtype === "f16" || g.b.dtype === "f16" ? "f16" : "f32";
}

/** The storage dtype of a GEMM's result. */
export function gemmOutDtype(g: Pick<GemmArgs, "a" | "b" | "outDtype">): DType {
  return g.outDtype ?? gemmDtype(g);
}
