/**
 * Fused flash-style scaled dot-product attention, forward and backward (FlashAttention-2's
 * split): `softmax(scale * Q K^T) V` without ever materialising the Tq x Tk score matrix. The
 * forward keeps an online softmax per query row and stores only each row's log-sum-exp; the
 * backward recomputes the probabilities from Q, K and that log-sum-exp in two kernels, one
 * parallel over query rows (dQ; it runs first and also refits each row's delta = sum P dP to the
 * recomputed probabilities) and one over key rows (dK, dV), so no atomics are needed. Extra
 * memory is O(T * D) for any sequence length.
 *
 * @module
 */
import fwdSrc from "../../shaders/attention_fwd.wgsl" with { type: "text" };
import dkdvSrc from "../../shaders/attention_bwd_dkdv.wgsl" with { type: "text" };
import dqSrc from "../../shaders/attention_bwd_dq.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { kernelFamily } from "../family.ts";
import { type Kernel, rt, uniforms } from "../runtime.ts";
import { dtypeBytes, Tensor } from "../tensor.ts";
import { specialize } from "../wgsl.ts";
import { type AttentionGeometry, expandTemplate, prelude } from "./attention_codegen.ts";
import { attentionSource } from "./attention_headers.ts";
import { tiledAttention } from "./attention_tiled.ts";
import { check, fmt, sameDtype } from "./check.ts";

export { type AttentionGeometry, expandTemplate, prelude };

/** Options of `attention`. */
export interface AttentionOptions {
  /** Mask key j for query i when j > i (top-left aligned, as torch's `is_causal`). */
  causal?: boolean;
  /** Score scale; defaults to 1 / sqrt(D). */
  scale?: number;
  /**
   * Token layout: q [B, Tq, heads * D], k and v [B, Tk, heads * D] (what the q/k/v projections
   * produce), the output like q. The kernels address heads by stride, so no permute runs on
   * either side. Unset: q [B, H, Tq, D] or [BH, Tq, D] and k, v alike.
   */
  heads?: number;
}

/** Largest head dimension (SD 1.x at full size: 160); kernels unroll over D / 4 slices. */
export const MAX_HEAD_DIM = 160;

const LOG2E = 1.4426950408889634;
/**
 * Invocations per workgroup and rows per invocation, forward and backward. Each streamed key (or
 * query, for dK/dV) is loaded once per R rows, and on lavapipe a load is a per-lane loop while
 * an FMA is one AVX2 instruction for 8 lanes, so R = 4 beats 1 and 2 by 1.5-3x; 8 spills more
 * than it saves (measured at D = 40, T = 1024-2048).
 */
const WG = 64;
const WGB = 64;
const R = 4;
const RB = 4;

/**
 * Check shapes: q [..., Tq, D], k and v [..., Tk, D] with equal leading (batch, head) dims, or in
 * the token layout (`heads`) q [B, Tq, heads * D], k and v [B, Tk, heads * D].
 */
function geometry(q: Tensor, k: Tensor, v: Tensor, heads?: number): AttentionGeometry {
  const op = "attention";
  sameDtype(op, q, k, v);
  if (heads !== undefined) return tokenGeometry(q, k, v, heads);
  check(q.rank >= 3 && q.rank <= 4, op, () => `q must be [B,H,T,D] or [BH,T,D], got ${fmt(q)}`);
  check(
    k.rank === q.rank && k.shape.join() === v.shape.join(),
    op,
    () => `k and v must have q's rank and equal shapes: q ${fmt(q)}, k ${fmt(k)}, v ${fmt(v)}`,
  );
  const lead = q.shape.slice(0, -2);
  check(
    k.shape.slice(0, -2).join() === lead.join() && k.shape[k.rank - 1] === q.shape[q.rank - 1],
    op,
    () => `batch/head dims and D must match: q ${fmt(q)}, k ${fmt(k)}`,
  );
  const d = q.shape[q.rank - 1], tq = q.shape[q.rank - 2], tk = k.shape[k.rank - 2];
  const bh = lead.reduce((a, b) => a * b, 1);
  check(d >= 1 && d <= MAX_HEAD_DIM, op, () => `head dim ${d} not in 1..${MAX_HEAD_DIM}`);
  check(tq >= 1 && tk >= 1 && bh >= 1, op, () => `empty attention: q ${fmt(q)}, k ${fmt(k)}`);
  const lim = rt().gpu.limits;
  check(bh <= lim.maxComputeWorkgroupsPerDimension, op, () => `${bh} batch*heads is too many`);
  checkBindings(q, k);
  return { bh, tq, tk, d, dv: Math.ceil(d / 4), heads: 1 };
}

function tokenGeometry(q: Tensor, k: Tensor, v: Tensor, heads: number): AttentionGeometry {
  const op = "attention";
  check(
    q.rank === 3 && k.rank === 3 && k.shape.join() === v.shape.join(),
    op,
    () => `token layout wants q [B, Tq, C], k and v [B, Tk, C]: q ${fmt(q)}, k ${fmt(k)}`,
  );
  const [b, tq, c] = q.shape, tk = k.shape[1];
  check(
    Number.isInteger(heads) && heads >= 1 && c % heads === 0,
    op,
    () => `${heads} heads do not split ${c} channels of q ${fmt(q)}`,
  );
  check(
    k.shape[0] === b && k.shape[2] === c,
    op,
    () => `batch and channels must match: q ${fmt(q)}, k ${fmt(k)}`,
  );
  const d = c / heads;
  check(d >= 1 && d <= MAX_HEAD_DIM, op, () => `head dim ${d} not in 1..${MAX_HEAD_DIM}`);
  check(tq >= 1 && tk >= 1 && b >= 1, op, () => `empty attention: q ${fmt(q)}, k ${fmt(k)}`);
  const bh = b * heads;
  check(
    bh <= rt().gpu.limits.maxComputeWorkgroupsPerDimension,
    op,
    () => `${bh} batch*heads is too many`,
  );
  checkBindings(q, k);
  return { bh, tq, tk, d, dv: Math.ceil(d / 4), heads };
}

function checkBindings(q: Tensor, k: Tensor): void {
  const maxBind = rt().gpu.limits.maxStorageBufferBindingSize;
  for (const t of [q, k]) {
    check(
      t.size * dtypeBytes(t.dtype) <= maxBind,
      "attention",
      () => `${fmt(t)} exceeds one storage binding (${maxBind} bytes); split the batch`,
    );
  }
}

/** FLOPs of a kernel that does `products` Tq x Tk x D products per head (for the profiler). */
function flops(g: AttentionGeometry, products: number): number {
  return 2 * products * g.bh * g.tq * g.tk * g.d;
}

/** Specialise one attention template for a dtype, head dim and mask. */
function kernel(
  name: "fwd" | "dq" | "dkdv",
  template: string,
  g: AttentionGeometry,
  dtype: Tensor["dtype"],
  causal: boolean,
  loads: string[],
  stores: string[],
  [wg, rows]: [number, number],
): Kernel {
  // The source depends on the template, the head dims, the row count and the loads/stores.
  const key =
    `attention:${name}|${dtype}|${g.d}|${g.dv}|${wg}|${rows}|${causal}|${loads}|${stores}`;
  return rt().kernel(key, () => {
    const body = attentionSource(
      name,
      false,
      prelude(g.d, loads, stores) + expandTemplate(template, rows, g.dv),
    );
    return specialize(body, dtype, { D: g.d, WG: wg, R: rows, CAUSAL: String(causal) });
  });
}

/**
 * The forward kernel alone (no autograd): the output shaped like `q` and, per query row, the
 * base-2 log-sum-exp of the scaled scores (f32 [BH * Tq]) that the backward kernels need.
 */
export function attentionForwardRaw(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: AttentionOptions = {},
): { out: Tensor; lse: Tensor } {
  const g = geometry(q, k, v, opts.heads);
  const scale = opts.scale ?? 1 / Math.sqrt(g.d);
  const causal = opts.causal ?? false;
  const out = Tensor.empty(q.shape.slice(), q.dtype);
  const lse = Tensor.empty([g.bh * g.tq], "f32");
  const u = uniforms().u(g.tq, g.tk).f(scale * LOG2E).u(g.heads);
  const hw = kernelFamily() === "hardware" ? tiledAttention("fwd", g, q.dtype, causal) : null;
  rt().dispatch(
    hw?.kernel ?? kernel("fwd", fwdSrc, g, q.dtype, causal, ["q", "k", "v"], ["o"], [WG, R]),
    [q.buffer, k.buffer, v.buffer, out.buffer, lse.buffer],
    u,
    hw?.grid ?? [Math.ceil(g.tq / (WG * R)), g.bh],
    flops(g, 2),
  );
  return { out, lse };
}

/**
 * The backward kernels alone: gradients of q, k, v given the upstream gradient `gOut`, the
 * forward output and its log-sum-exp. `need` skips the kernels whose results are not wanted.
 */
export function attentionBackwardRaw(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  gOut: Tensor,
  opts: AttentionOptions = {},
  need: { q: boolean; kv: boolean } = { q: true, kv: true },
): { dq: Tensor | null; dk: Tensor | null; dv: Tensor | null } {
  const g = geometry(q, k, v, opts.heads);
  check(
    gOut.shape.join() === out.shape.join() && gOut.dtype === q.dtype,
    "attention backward",
    () => `gradient ${fmt(gOut)} does not match output ${fmt(out)}`,
  );
  const scale = opts.scale ?? 1 / Math.sqrt(g.d);
  const causal = opts.causal ?? false;
  // Per query row D = sum_j P_ij dP_ij, made by the dQ kernel for the dK/dV kernel.
  const delta = Tensor.empty([g.bh * g.tq], "f32");
  const u = () => uniforms().u(g.tq, g.tk).f(scale * LOG2E, scale).u(g.heads, 0, 0, 0);
  let dq: Tensor | null = null, dk: Tensor | null = null, dv: Tensor | null = null;
  const hw = kernelFamily() === "hardware";
  // The dQ kernel computes delta and corrects it to match the recomputed probabilities (see
  // attention_bwd_dq.wgsl), so it runs first, and also when only dK/dV are wanted.
  if (need.q || need.kv) {
    dq = Tensor.empty(q.shape.slice(), q.dtype);
    const t = hw ? tiledAttention("dq", g, q.dtype, causal) : null;
    rt().dispatch(
      t?.kernel ??
        kernel("dq", dqSrc, g, q.dtype, causal, ["q", "k", "v", "g", "o"], ["dq"], [WGB, RB]),
      [q.buffer, k.buffer, v.buffer, gOut.buffer, out.buffer, lse.buffer, delta.buffer, dq.buffer],
      u(),
      t?.grid ?? [Math.ceil(g.tq / (WGB * RB)), g.bh],
      flops(g, 3),
    );
  }
  if (need.kv) {
    dk = Tensor.empty(k.shape.slice(), k.dtype);
    dv = Tensor.empty(v.shape.slice(), v.dtype);
    const t = hw ? tiledAttention("dkdv", g, q.dtype, causal) : null;
    rt().dispatch(
      t?.kernel ??
        kernel("dkdv", dkdvSrc, g, q.dtype, causal, ["q", "k", "v", "g"], ["dk", "dv"], [WGB, RB]),
      [q.buffer, k.buffer, v.buffer, gOut.buffer, lse.buffer, delta.buffer, dk.buffer, dv.buffer],
      u(),
      t?.grid ?? [Math.ceil(g.tk / (WGB * RB)), g.bh],
      flops(g, 4),
    );
  }
  delta.dispose();
  if (!need.q) {
    dq?.dispose();
    dq = null;
  }
  return { dq, dk, dv };
}

/**
 * Scaled dot-product attention `softmax(scale * q k^T [+ causal mask]) v`.
 * q: [B, H, Tq, D] (or [BH, Tq, D]); k, v: [B, H, Tk, D]; returns [B, H, Tq, D]. With
 * `opts.heads`, the token layout instead: q [B, Tq, heads * D], k, v [B, Tk, heads * D], the
 * result [B, Tq, heads * D] (see `AttentionOptions.heads`).
 * D may be anything up to `MAX_HEAD_DIM`; f32 and f16 storage, f32 arithmetic.
 */
export function attention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  opts: AttentionOptions = {},
): Tensor {
  const { out, lse } = attentionForwardRaw(q, k, v, opts);
  const y = record("attention", [q, k, v], out, [q, k, v, out, lse], (gOut, saved) => {
    const [sq, sk, sv, so, sl] = saved;
    const need = { q: q.requiresGrad, kv: k.requiresGrad || v.requiresGrad };
    const r = attentionBackwardRaw(sq, sk, sv, so, sl, gOut, opts, need);
    return [r.dq, r.dk, r.dv];
  });
  lse.dispose();
  return y;
}
