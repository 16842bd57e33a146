/**
 * The sizes of one convolution, shared by the direct kernels (`conv2d.ts`) and the tiled GEMM
 * ones (`conv2d_tiled.ts`); `conv2d.ts` re-exports them.
 *
 * @module
 */

/** Zero padding per side, `[top, bottom, left, right]`. */
export type ConvPadding = [number, number, number, number];

/** The sizes of one convolution, resolved from its arguments. */
export interface ConvDims {
  n: number;
  cin: number;
  cout: number;
  h: number;
  w: number;
  kh: number;
  kw: number;
  ho: number;
  wo: number;
  stride: number;
  /** `[top, bottom, left, right]`; bottom and right only shape ho and wo. */
  pad: ConvPadding;
}
