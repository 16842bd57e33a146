/**
 * Nearest-neighbour resize of NCHW tensors to any size, with PyTorch's rule
 * (`F.interpolate(mode="nearest", size=...)`: `src = floor(dst * in / out)`): the U-Net's and
 * VAE's `Upsample2D` before its convolution, 2x or to a skip's size. The gradient of each input
 * pixel sums the output pixels that read it, gathered per input pixel (no scatter-add).
 *
 * @module
 */
import resizeSrc from "../../shaders/resize_nearest.wgsl" with { type: "text" };
import split3Src from "../../shaders/split3.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { headed } from "../kernel_header.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check, fmt } from "./check.ts";

const WG = 256;
const RESIZE = headed(
  { bindings: "src: T; out: rw T", params: "n h w oh ow p0 p1 p2: u32" },
  resizeSrc,
  split3Src,
);

/**
 * One pass: "resize" writes `outShape` from src; "grad" writes the input's gradient `outShape`
 * from the output's gradient src. `h, w` are the forward input's sizes, `oh, ow` its output's.
 */
function run(
  entry: "resize" | "grad",
  src: Tensor,
  outShape: number[],
  [h, w, oh, ow]: number[],
): Tensor {
  const out = Tensor.empty(outShape, src.dtype);
  const n = out.size;
  if (n === 0) return out;
  const pipe = specKernel("resize_nearest", RESIZE, src.dtype, { WG }, entry);
  rt().dispatch(
    pipe,
    [src.buffer, out.buffer],
    uniforms().u(n, h, w, oh, ow, 0, 0, 0),
    grid(n, WG),
  );
  return out;
}

/** Gradient of `resizeNearest` for an input of `[H, W]`: `[N, C, outH, outW]` -> `[N, C, H, W]`. */
export function resizeNearestBackward(g: Tensor, h: number, w: number): Tensor {
  check(g.rank === 4, "resizeNearestBackward", () => `expects an NCHW (4-D) gradient: ${fmt(g)}`);
  const [n, c, oh, ow] = g.shape;
  return run("grad", g, [n, c, h, w], [h, w, oh, ow]);
}

/**
 * Nearest-neighbour resize of an NCHW tensor: `[N, C, H, W]` -> `[N, C, outH, outW]`, source
 * pixel `floor(dst * in / out)` along each axis (up or down, any ratio).
 */
export function resizeNearest(x: Tensor, outH: number, outW: number): Tensor {
  const op = "resizeNearest";
  check(x.rank === 4, op, () => `expects an NCHW (4-D) tensor: ${fmt(x)}`);
  const [n, c, h, w] = x.shape;
  check(
    [outH, outW].every((v) => Number.isInteger(v) && v >= 1),
    op,
    () => `output size ${outH}x${outW} must be positive integers: ${fmt(x)}`,
  );
  // The kernels compute dst * in and (src + 1) * out in 32-bit integers.
  check(
    (Math.max(h, outH) + 1) * Math.max(h, outH) < 2 ** 32 &&
      (Math.max(w, outW) + 1) * Math.max(w, outW) < 2 ** 32,
    op,
    () => `${fmt(x)} to ${outH}x${outW} is too large`,
  );
  const y = run("resize", x, [n, c, outH, outW], [h, w, outH, outW]);
  return record(op, [x], y, [], (g) => [resizeNearestBackward(g, h, w)]);
}

/** Nearest-neighbour upsampling by 2 of an NCHW tensor: `[N, C, H, W]` -> `[N, C, 2H, 2W]`. */
export function upsampleNearest2x(x: Tensor): Tensor {
  check(x.rank === 4, "upsampleNearest2x", () => `expects an NCHW (4-D) tensor: ${fmt(x)}`);
  return resizeNearest(x, 2 * x.shape[2], 2 * x.shape[3]);
}
