/**
 * The arguments of one GEMM launch, shared by the plain kernel (`matmul.ts`) and the tiled one
 * (`matmul_tiled.ts`); `matmul.ts` re-exports them.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";

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
  tile?: GemmTile;
}
