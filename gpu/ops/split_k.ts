/**
 * The second half of a split-K launch: the tiled kernel wrote one f32 partial sum per split, and
 * this kernel adds them up, applies the epilogue (alpha, then bias, then residual) and casts to
 * the output type. The epilogue waits for the complete sum so that it is applied once.
 *
 * @module
 */
import reduceSrc from "../../shaders/split_k_reduce.wgsl" with { type: "text" };
import { withHeader } from "../kernel_header.ts";
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

/** What the reduce does after summing: alpha (1: none), a bias, a residual of out's shape. */
export interface SplitEpilogue {
  alpha: number;
  bias: BiasLayout | null;
  residual: Tensor | null;
  /**
   * Round the result to this dtype before it is stored in the wider output (an f16 GEMM's f32
   * result, as a cast after it would); default none.
   */
  round?: DType;
}

/** Which parts of the epilogue a reduce kernel compiles in. */
interface Variant {
  scaled: boolean;
  bias: boolean;
  residual: boolean;
  /** The output is stored wider than T, after rounding to T (f32 storage of an f16 result). */
  wide: DType | null;
}

function source(dtype: DType, v: Variant): string {
  const o = v.wide ?? "T";
  const bindings = `part: f32; out: rw ${o}` + (v.bias ? "; bias: T" : "") +
    (v.residual ? `; res: ${o}` : "");
  // alpha multiplies the sum (not the bias or residual) in the variants that scale.
  const params = "size splits biasDiv biasMod: u32; alpha: f32; p0 p1 p2: u32";
  const epilogue: string[] = [];
  if (v.scaled) epilogue.push("s *= p.alpha;");
  if (v.bias) epilogue.push("s += f32(bias[(i / p.biasDiv) % p.biasMod]);");
  if (v.residual) epilogue.push("s += f32(res[i]);");
  let src = reduceSrc.replace("// @epilogue", epilogue.join("\n  "));
  if (v.wide) {
    const store = "out[i] = T(s);";
    if (!src.includes(store)) throw new Error(`split_k_reduce.wgsl has no store ${store}`);
    src = src.replace(store, `out[i] = ${v.wide}(T(s));`);
  }
  return specialize(withHeader({ bindings, params }, src), dtype, { WG });
}

/** out[i] = alpha · Σ_s part[s · out.size + i] (+ bias) (+ residual), for every element of out. */
export function reduceSplits(part: Tensor, out: Tensor, splits: number, e: SplitEpilogue): void {
  const dtype = e.round ?? out.dtype;
  const wide = dtype !== out.dtype ? out.dtype : null;
  const v: Variant = { scaled: e.alpha !== 1, bias: !!e.bias, residual: !!e.residual, wide };
  const key = `split_k|${dtype}|${+v.scaled}${+v.bias}${+v.residual}${wide ? `|${wide}` : ""}`;
  const kernel = rt().kernel(key, () => source(dtype, v));
  const buffers = [part.buffer, out.buffer];
  if (e.bias) buffers.push(e.bias.bias.buffer);
  if (e.residual) buffers.push(e.residual.buffer);
  const u = uniforms().u(out.size, splits, e.bias?.div ?? 1, e.bias?.mod ?? 1).f(e.alpha)
    .u(0, 0, 0);
  rt().dispatch(kernel, buffers, u, grid(out.size, WG));
}
