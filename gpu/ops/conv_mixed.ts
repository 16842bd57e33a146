/**
 * Mixed precision in the convolutions: an f32 weight (a LoRA factor) against f16 data. The passes
 * that run as plain GEMMs read the weight as f16 themselves and store its gradient in f32, rounded
 * to f16 first (see gemm_args.ts), exactly as cast kernels around them would; the other passes
 * take the weight cast to f16.
 *
 * @module
 */
import { kernelFamily } from "../family.ts";
import type { Tensor } from "../tensor.ts";
import type { ConvDims } from "./conv_dims.ts";
import { UN_FWD, unaryRaw } from "./elementwise_raw.ts";

/** An f32 weight meets f16 data. */
export function mixed(data: Tensor, weight: Tensor): boolean {
  return data.dtype === "f16" && weight.dtype === "f32";
}

/** A 1x1 convolution with stride 1 and no padding: a plain GEMM on the NCHW layout. */
export function pointwise(d: ConvDims): boolean {
  return d.kh === 1 && d.kw === 1 && d.stride === 1 && d.pad.every((v) => v === 0);
}

/**
 * Whether both data passes run as plain GEMMs, which read an f32 weight as f16: pointwise
 * convolutions, biased ones only in the hardware family.
 */
export function gemmPasses(d: ConvDims, bias: Tensor | null): boolean {
  return pointwise(d) && (!bias || kernelFamily() === "hardware");
}

/** `t` cast to `dtype` (no autograd; the caller disposes it). */
export function castRaw(t: Tensor, dtype: Tensor["dtype"]): Tensor {
  return unaryRaw(UN_FWD.cast, t, null, 1, 0, dtype);
}

/** `pass(weight)`, with a mixed-precision weight cast to f16 outside the GEMM passes. */
export function withWeight(
  data: Tensor,
  weight: Tensor,
  d: ConvDims,
  bias: Tensor | null,
  pass: (w: Tensor) => Tensor,
): Tensor {
  if (!mixed(data, weight) || gemmPasses(d, bias)) return pass(weight);
  const w = castRaw(weight, data.dtype);
  const y = pass(w);
  w.dispose();
  return y;
}
