/**
 * The second half of a split-K launch: the tiled kernel wrote one f32 partial sum per split, and
 * this kernel adds them up, adds the bias and casts to the output type.
 *
 * @module
 */
import reduceSrc from "../../shaders/split_k_reduce.wgsl" with { type: "text" };
import { rt, uniforms } from "../runtime.ts";
import type { DType, Tensor } from "../tensor.ts";
import { grid, specialize } from "../wgsl.ts";

const WG = 256;

/** Where the bias of output element i lives: bias[(i / div) % mod]. */
export interface BiasLayout {
  bias: Tensor;
  div: number;
  mod: number;
}

function source(dtype: DType, withBias: boolean): string {
  const binds = withBias
    ? [
      "@group(0) @binding(2) var<storage, read> bias: array<T>;",
      "@group(0) @binding(3) var<uniform> p: Params;",
    ]
    : ["@group(0) @binding(2) var<uniform> p: Params;"];
  const src = reduceSrc
    .replace("// @bindings", binds.join("\n"))
    .replace("// @bias-add", withBias ? "s += f32(bias[(i / p.biasDiv) % p.biasMod]);" : "");
  return specialize(src, dtype, { WG });
}

/** out[i] = sum over s < splits of part[s * out.size + i] (+ bias), for every element of out. */
export function reduceSplits(part: Tensor, out: Tensor, splits: number, b: BiasLayout | null) {
  const kernel = rt().kernel(`split_k|${out.dtype}|${b ? 1 : 0}`, () => source(out.dtype, !!b));
  const buffers = [part.buffer, out.buffer];
  if (b) buffers.push(b.bias.buffer);
  const u = uniforms().u(out.size, splits, b?.div ?? 1, b?.mod ?? 1);
  rt().dispatch(kernel, buffers, u, grid(out.size, WG));
}
