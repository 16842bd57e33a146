/**
 * GEGLU (the U-Net transformer's feed-forward gate), fused forward and backward.
 *
 * @module
 */
import gegluSrc from "../../shaders/geglu.wgsl" with { type: "text" };
import erfcSrc from "../../shaders/erfc_fit.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { type KernelHeader, withHeader } from "../kernel_header.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check, fmt } from "./check.ts";

const WG = 256;
const GEGLU: KernelHeader = { bindings: "x g: T; out: rw T", params: "rows F backward pad0: u32" };

function run(x: Tensor, g: Tensor | null, f: number, rows: number, backward: boolean): Tensor {
  const shape = x.shape.slice();
  if (!backward) shape[shape.length - 1] = f;
  const out = Tensor.empty(shape, x.dtype);
  rt().dispatch(
    specKernel("geglu:gegluSrc", () => withHeader(GEGLU, gegluSrc, erfcSrc), x.dtype, { WG }),
    [x.buffer, (g ?? x).buffer, out.buffer],
    uniforms().u(rows, f, backward ? 1 : 0, 0),
    grid(rows * f, WG),
  );
  return out;
}

/** x [..., 2F] -> x[..., :F] * gelu(x[..., F:]) with the exact (erf) GELU. */
export function geglu(x: Tensor): Tensor {
  const last = x.shape[x.rank - 1];
  check(last % 2 === 0, "geglu", () => `last dimension of ${fmt(x)} must be even`);
  const f = last / 2;
  const rows = x.size / last;
  const y = run(x, null, f, rows, false);
  return record("geglu", [x], y, [x], (g, [sx]) => [run(sx, g, f, rows, true)]);
}
