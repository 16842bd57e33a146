/**
 * Nearest-neighbour 2x upsampling of NCHW tensors (the U-Net's and VAE's `Upsample2D` before its
 * convolution); the gradient sums each 2x2 block.
 *
 * @module
 */
import upsampleSrc from "../../shaders/upsample.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check, fmt } from "./check.ts";

const WG = 256;

function run(entry: "up" | "down", src: Tensor, shape: number[], h: number, w: number): Tensor {
  const out = Tensor.empty(shape, src.dtype);
  const n = out.size;
  if (n === 0) return out;
  const pipe = specKernel("upsample", upsampleSrc, src.dtype, { WG }, entry);
  rt().dispatch(pipe, [src.buffer, out.buffer], uniforms().u(n, h, w, 0), grid(n, WG));
  return out;
}

/** Gradient of `upsampleNearest2x`: `[N, C, 2H, 2W]` -> `[N, C, H, W]`, summing 2x2 blocks. */
export function upsampleNearest2xBackward(g: Tensor): Tensor {
  const [n, c, h2, w2] = g.shape;
  check(
    g.rank === 4 && h2 % 2 === 0 && w2 % 2 === 0,
    "upsampleNearest2xBackward",
    () => `expects NCHW with even H and W: ${fmt(g)}`,
  );
  return run("down", g, [n, c, h2 / 2, w2 / 2], h2 / 2, w2 / 2);
}

/** Nearest-neighbour upsampling by 2 of an NCHW tensor: `[N, C, H, W]` -> `[N, C, 2H, 2W]`. */
export function upsampleNearest2x(x: Tensor): Tensor {
  check(x.rank === 4, "upsampleNearest2x", () => `expects an NCHW (4-D) tensor: ${fmt(x)}`);
  const [n, c, h, w] = x.shape;
  const y = run("up", x, [n, c, 2 * h, 2 * w], h, w);
  return record("upsampleNearest2x", [x], y, [], (g) => [upsampleNearest2xBackward(g)]);
}
