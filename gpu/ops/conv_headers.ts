/**
 * The convolution kernels' bindings and uniform blocks (see kernel_header.ts): the implicit-GEMM
 * forward / grad-input pass (shaders/conv2d.wgsl, packed weights as vec4<f32>), the weight
 * gradient (conv2d_wgrad.wgsl) and the weight packing (conv2d_pack.wgsl).
 *
 * @module
 */
import packSrc from "../../shaders/conv2d_pack.wgsl" with { type: "text" };
import split3Src from "../../shaders/split3.wgsl" with { type: "text" };
import { headed, type KernelHeader } from "../kernel_header.ts";

/** conv2d.wgsl's header; the residual variant adds `res` before the uniform (withResidualStore). */
export const CONV: KernelHeader = {
  bindings: "src: T; wt: vec4<f32>; bias: T; dst: rw T",
  params:
    "cs cd cdPad m hs ws hd wd kw taps stride padTop padLeft hasBias: u32; alpha: f32; p1: u32",
};

/** conv2d_wgrad.wgsl's header. */
export const WGRAD: KernelHeader = {
  bindings: "x dy: T; dw: rw T",
  params: "cin cout h w ho wo n kw taps stride padTop padLeft: u32",
};

/** The weight packing kernel's source. */
export const PACK = headed(
  { bindings: "w: T; out: rw f32", params: "n na nb nbPad sa sb taps p0: u32" },
  packSrc,
  split3Src,
);
