/**
 * Threads a GEMM or convolution launch starts (workgroups x workgroup size) in either kernel
 * family, without launching it: the bench weighs them by FLOPs, and a real GPU wants tens of
 * thousands per dispatch. Only the main kernel counts (not a weight repack or split-K reduce).
 * The software rows mirror the launch arithmetic of matmul.ts and conv2d.ts; a test holds them to
 * what the runtime's profile records.
 *
 * @module
 */
import { type KernelFamily, kernelFamily } from "../family.ts";
import type { DType } from "../tensor.ts";
import { type ConvDims, pointwise } from "./conv2d.ts";
import { convGemmShape } from "./conv2d_tiled.ts";
import { DEFAULT_TILE } from "./matmul.ts";
import { planThreads, planTiled } from "./tiled_launch.ts";

/** One GEMM: M x N outputs per batch, reduction K. */
export interface GemmShape {
  M: number;
  N: number;
  K: number;
  batch?: number;
  dtype?: DType;
}

/** Which convolution pass: the forward, the input gradient or the weight gradient. */
export type ConvPass = "forward" | "input" | "weight";

/** Threads of one GEMM launch in `family` (default: the family in force). */
export function gemmThreads(s: GemmShape, family: KernelFamily = kernelFamily()): number {
  const batch = s.batch ?? 1;
  if (family === "hardware") return planThreads(planTiled(s.M, s.N, s.K, batch));
  // matmul.ts: a small tile (4 x 4 per lane, 8 x 8 lanes) up to 4096 outputs, else the default.
  const t = s.M * s.N * batch <= 4096
    ? { tm: 4, tn: 4, wx: 8, wy: 8 }
    : DEFAULT_TILE[s.dtype ?? "f32"];
  const groups = Math.ceil(s.N / (t.tn * t.wx)) * Math.ceil(s.M / (t.tm * t.wy)) * batch;
  return groups * t.wx * t.wy;
}

/**
 * Threads of one convolution pass in `family` (default: the family in force); `bias` matters
 * to the software forward, which runs a bias-free pointwise convolution as a plain GEMM.
 */
export function conv2dThreads(
  d: ConvDims,
  pass: ConvPass = "forward",
  family: KernelFamily = kernelFamily(),
  bias = false,
): number {
  if (family === "hardware") {
    const g = convGemmShape(d, pass);
    return planThreads(planTiled(g.M, g.N, g.K, g.batch));
  }
  if (pointwise(d) && (pass !== "forward" || !bias)) {
    // conv2d.ts: per-image GEMMs (forward, input gradient), the images summed inside (weight).
    const hw = d.h * d.w;
    if (pass === "weight") return gemmThreads({ M: d.cout, N: d.cin, K: hw }, family);
    const [M, K] = pass === "forward" ? [d.cout, d.cin] : [d.cin, d.cout];
    return gemmThreads({ M, N: hw, K, batch: d.n }, family);
  }
  if (pass === "weight") {
    // conv2d.ts: 8 x 8 (cout x cin) per lane, up to 64 lanes along cin, one tap per grid z.
    const wg = Math.min(64, Math.ceil(Math.ceil(d.cin / 8) / 8) * 8);
    const groups = Math.ceil(d.cin / (wg * 8)) * Math.ceil(d.cout / 8) * d.kh * d.kw;
    return groups * wg;
  }
  // conv2d.ts: 8 pixels per lane, 64 lanes, channel blocks of 8 (4 below 8 channels).
  const [cd, pixels] = pass === "forward" ? [d.cout, d.ho * d.wo] : [d.cin, d.h * d.w];
  const cn = cd >= 8 ? 8 : 4;
  return Math.ceil((d.n * pixels) / (64 * 8)) * Math.ceil(cd / cn) * 64;
}
