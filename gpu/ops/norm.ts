/**
 * Normalisation: GroupNorm (with optional fused SiLU, as every SD ResNet block and the VAE use it)
 * and LayerNorm over the last dimension. Statistics are computed in f32 in one workgroup per group
 * or row and saved (mean, 1/std) for the backward kernels.
 *
 * @module
 */
import gnFwd from "../../shaders/groupnorm_fwd.wgsl" with { type: "text" };
import gnBwdDx from "../../shaders/groupnorm_bwd_dx.wgsl" with { type: "text" };
import gnBwdWb from "../../shaders/groupnorm_bwd_wb.wgsl" with { type: "text" };
import lnFwd from "../../shaders/layernorm_fwd.wgsl" with { type: "text" };
import lnBwdDx from "../../shaders/layernorm_bwd_dx.wgsl" with { type: "text" };
import lnBwdWb from "../../shaders/layernorm_bwd_wb.wgsl" with { type: "text" };
import wgSumSrc from "../../shaders/wg_sum.wgsl" with { type: "text" };
import statsSrc from "../../shaders/norm_stats.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { type Kernel, rt, uniforms } from "../runtime.ts";
import { type DType, Tensor } from "../tensor.ts";
import { type KernelHeader, parseDecls, withHeader } from "../kernel_header.ts";
import { grid, specKernel, withResidualStore } from "../wgsl.ts";
import { check, fmt, sameDtype } from "./check.ts";

const WG = 256;

// The kernels' bindings and uniform blocks (see kernel_header.ts), in dispatch order.
const GN = "C S G: u32; eps: f32; silu hasAffine pad0 pad1: u32";
const LN = "R C: u32; eps: f32; pad0: u32";
const GN_FWD: KernelHeader = { bindings: "x w b: T; y: rw T; stats: rw f32", params: GN };
const GN_DX: KernelHeader = { bindings: "x w b gy: T; stats: f32; dx: rw T", params: GN };
const GN_WB: KernelHeader = {
  bindings: "x w b gy: T; stats: f32; dw db: rw T",
  params: "C S G: u32; eps: f32; silu N pad0 pad1: u32",
};
const LN_FWD: KernelHeader = { bindings: "x w b: T; y: rw T; stats: rw f32", params: LN };
const LN_DX: KernelHeader = { bindings: "x w gy: T; stats: f32; dx: rw T", params: LN };
const LN_WB: KernelHeader = { bindings: "x gy: T; stats: f32; dw db: rw T", params: LN };

/**
 * An input-gradient kernel. With `res`, the gradient the input gathered elsewhere (a residual
 * connection) is added in its store, bound right before the uniform block.
 */
function dxKernel(
  name: string,
  h: KernelHeader,
  body: string,
  res: boolean,
  dtype: DType,
  wg: number,
): Kernel {
  const src = () => {
    const s = withHeader(h, body, wgSumSrc);
    return res ? withResidualStore(s, parseDecls(h.bindings).length, "dx", "base + i") : s;
  };
  return specKernel(`norm:${name}|${res}`, src, dtype, { WG: wg });
}

function statsTensor(count: number): Tensor {
  // Statistics are always f32, whatever the activation dtype.
  return Tensor.empty([count, 2], "f32");
}

/**
 * GroupNorm over x [N, C, ...spatial] with `groups` groups, per-channel weight and bias [C],
 * optionally followed by SiLU (fused).
 */
export function groupNorm(
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
  groups: number,
  eps = 1e-5,
  opts: { silu?: boolean } = {},
): Tensor {
  const op = "groupNorm";
  sameDtype(op, x, weight, bias);
  check(x.rank >= 2, op, () => `input ${fmt(x)} must be [N, C, ...]`);
  const [n, c] = x.shape;
  check(c % groups === 0, op, () => `channels ${c} of ${fmt(x)} not divisible by ${groups} groups`);
  check(
    weight.size === c && bias.size === c,
    op,
    () => `weight ${fmt(weight)} / bias ${fmt(bias)} must have ${c} elements for ${fmt(x)}`,
  );
  const s = x.size / (n * c);
  const silu = opts.silu ? 1 : 0;
  const y = Tensor.empty(x.shape, x.dtype);
  const stats = statsTensor(n * groups);
  const u = () => uniforms().u(c, s, groups).f(eps).u(silu, 1, 0, 0);
  const r = rt();
  r.dispatch(
    specKernel(
      "norm:wgSumSrc + gnFwd",
      () => withHeader(GN_FWD, gnFwd, wgSumSrc, statsSrc),
      x.dtype,
      { WG },
    ),
    [x.buffer, weight.buffer, bias.buffer, y.buffer, stats.buffer],
    u(),
    [n * groups],
  );
  const out = record(
    op,
    [x, weight, bias],
    y,
    [x, weight, bias, stats],
    (g, [sx, sw, sb, st], acc) => {
      const dx = Tensor.empty(x.shape, x.dtype);
      const res = acc.take(0);
      r.dispatch(
        dxKernel("gnBwdDx", GN_DX, gnBwdDx, res !== null, x.dtype, WG),
        [
          sx.buffer,
          sw.buffer,
          sb.buffer,
          g.buffer,
          st.buffer,
          dx.buffer,
          ...(res ? [res.buffer] : []),
        ],
        u(),
        [n * groups],
      );
      // Frozen norms (LoRA training) need no weight or bias gradient: skip that pass.
      if (!weight.requiresGrad && !bias.requiresGrad) return [dx, null, null];
      const dw = Tensor.empty(weight.shape, x.dtype), db = Tensor.empty(bias.shape, x.dtype);
      r.dispatch(
        specKernel("norm:gnBwdWb", () => withHeader(GN_WB, gnBwdWb, wgSumSrc), x.dtype, { WG }),
        [sx.buffer, sw.buffer, sb.buffer, g.buffer, st.buffer, dw.buffer, db.buffer],
        uniforms().u(c, s, groups).f(eps).u(silu, n, 0, 0),
        [c],
      );
      return [dx, dw, db];
    },
  );
  stats.dispose();
  return out;
}

/** LayerNorm over the last dimension with weight and bias [C]. */
export function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, eps = 1e-5): Tensor {
  const op = "layerNorm";
  sameDtype(op, x, weight, bias);
  const c = x.shape[x.rank - 1];
  check(
    weight.size === c && bias.size === c,
    op,
    () => `weight ${fmt(weight)} / bias ${fmt(bias)} must have ${c} elements for ${fmt(x)}`,
  );
  const rows = x.size / c;
  const y = Tensor.empty(x.shape, x.dtype);
  const stats = statsTensor(rows);
  const u = () => uniforms().u(rows, c).f(eps).u(0);
  const r = rt();
  const wg = c >= 256 ? 256 : 64;
  r.dispatch(
    specKernel(
      "norm:wgSumSrc + lnFwd",
      () => withHeader(LN_FWD, lnFwd, wgSumSrc, statsSrc),
      x.dtype,
      {
        WG: wg,
      },
    ),
    [x.buffer, weight.buffer, bias.buffer, y.buffer, stats.buffer],
    u(),
    grid(rows, 1),
  );
  const out = record(op, [x, weight, bias], y, [x, weight, stats], (g, [sx, sw, st], acc) => {
    const dx = Tensor.empty(x.shape, x.dtype);
    const res = acc.take(0);
    r.dispatch(
      dxKernel("lnBwdDx", LN_DX, lnBwdDx, res !== null, x.dtype, wg),
      [sx.buffer, sw.buffer, g.buffer, st.buffer, dx.buffer, ...(res ? [res.buffer] : [])],
      u(),
      grid(rows, 1),
    );
    if (!weight.requiresGrad && !bias.requiresGrad) return [dx, null, null];
    const dw = Tensor.empty(weight.shape, x.dtype), db = Tensor.empty(bias.shape, x.dtype);
    r.dispatch(
      specKernel("norm:lnBwdWb", () => withHeader(LN_WB, lnBwdWb), x.dtype, { WG: 64 }),
      [sx.buffer, g.buffer, st.buffer, dw.buffer, db.buffer],
      u(),
      [Math.ceil(c / 64)],
    );
    return [dx, dw, db];
  });
  stats.dispose();
  return out;
}
