/**
 * Multi-tensor launches: one dispatch updates (or reduces) up to S tensors, each bound as its own
 * storage buffer, so an optimizer step over hundreds of LoRA tensors takes a few dozen dispatches
 * instead of one or two per tensor. The workgroups of a dispatch are laid out tensor after tensor
 * (`start[s]` is slot s's first workgroup); each workgroup finds its slot, and the per-slot code is
 * written out once per slot because WGSL cannot pick a binding by index. The element arithmetic is
 * exactly the single-tensor kernels', so results are bit-identical to them.
 *
 * @module
 */
import { rt, uniforms, type UniformWriter } from "../runtime.ts";
import type { DType, Tensor } from "../tensor.ts";
import { partsFor, RED_WG } from "./reduce.ts";

const WG = 256;
/** Most slots of one dispatch: the per-slot tables are `array<vec4<u32>, 8>` in the uniform. */
const MAX_SLOTS = 32;
/** The WGSL type of one per-slot table. */
const TABLE = `array<vec4<u32>, ${MAX_SLOTS / 4}>`;

/** Slots per dispatch when each slot binds `perSlot` buffers and `shared` more are bound. */
function slotsFor(perSlot: number, shared: number): number {
  const limit = rt().gpu.limits.maxStorageBuffersPerShaderStage;
  return Math.max(1, Math.min(MAX_SLOTS, Math.floor((limit - shared) / perSlot)));
}

/** Split `items` into runs of at most `size` that share a dtype. */
function batches<T extends { dtype: DType }>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (const x of items) {
    const last = out[out.length - 1];
    if (last && last.length < size && last[0].dtype === x.dtype) last.push(x);
    else out.push([x]);
  }
  return out;
}

/** Each slot's first workgroup when slot s has `counts[s]`, and the total. */
function firstWorkgroups(counts: number[]): { start: number[]; total: number } {
  const start: number[] = [];
  let total = 0;
  for (const c of counts) {
    start.push(total);
    total += c;
  }
  return { start, total };
}

/** `n` values as one per-slot table (MAX_SLOTS words). */
function table(values: number[]): number[] {
  const w = new Array(MAX_SLOTS).fill(0);
  values.forEach((v, i) => (w[i] = v));
  return w;
}

/** The slot lookup: `slot` and `local` (workgroup index within the slot) from a flat id. */
const FIND_SLOT = `
  var slot = 0u;
  for (var s = 1u; s < S; s++) {
    if (wgid >= p.start[s / 4u][s % 4u]) { slot = s; }
  }
  let local = wgid - p.start[slot / 4u][slot % 4u];
  let n = p.n[slot / 4u][slot % 4u];`;

function adamSource(dtype: DType, slots: number): string {
  const binds: string[] = [];
  const cases: string[] = [];
  for (let s = 0; s < slots; s++) {
    const b = 4 * s;
    binds.push(
      `@group(0) @binding(${b}) var<storage, read_write> param${s}: array<T>;`,
      `@group(0) @binding(${b + 1}) var<storage, read> grad${s}: array<T>;`,
      `@group(0) @binding(${b + 2}) var<storage, read_write> m${s}: array<f32>;`,
      `@group(0) @binding(${b + 3}) var<storage, read_write> v${s}: array<f32>;`,
    );
    cases.push(`  if (slot == ${s}u) {
    let r = adam(f32(param${s}[i]), f32(grad${s}[i]), m${s}[i], v${s}[i]);
    m${s}[i] = r.y;
    v${s}[i] = r.z;
    param${s}[i] = T(r.x);
  }`);
  }
  return `${dtype === "f16" ? "enable f16;\n" : ""}alias T = ${dtype};
const S: u32 = ${slots}u;
const WG: u32 = ${WG}u;
// torch.optim.AdamW, as shaders/optim_adam.wgsl (BNB == 0) computes it.
struct Params {
  lr: f32, b1: f32, b2: f32, eps: f32,
  wd: f32, bc1: f32, bc2: f32, gscale: f32,
  n: ${TABLE},
  start: ${TABLE},
}
${binds.join("\n")}
@group(0) @binding(${4 * slots}) var<storage, read> gs: array<f32>;
@group(0) @binding(${4 * slots + 1}) var<uniform> p: Params;

fn adam(w0: f32, gr: f32, m0: f32, v0: f32) -> vec3f {
  let g = gr * p.gscale * gs[0];
  var w = w0;
  let mi = p.b1 * m0 + (1.0 - p.b1) * g;
  let vi = p.b2 * v0 + (1.0 - p.b2) * g * g;
  w = w - p.lr * p.wd * w;
  w = w - (p.lr / p.bc1) * mi / (sqrt(vi) / sqrt(p.bc2) + p.eps);
  return vec3f(w, mi, vi);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let wgid = wid.x + wid.y * nwg.x;
${FIND_SLOT}
  let i = local * WG + lid;
  // A negative gs[0]: the fp16 loss scaler skips this step (see optim_adam.wgsl).
  if (i >= n || gs[0] < 0.0) { return; }
${cases.join("\n")}
}
`;
}

/** Scalars of one AdamW step shared by every tensor of a launch. */
export interface AdamScalars {
  lr: number;
  b1: number;
  b2: number;
  eps: number;
  wd: number;
  bc1: number;
  bc2: number;
  gscale: number;
}

/** Workgroups over x (and y past 65535) for `groups` workgroups. */
function grid2(groups: number): [number, number] {
  if (groups <= 65535) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

/** One AdamW step for every `(param, m, v)` (params with a gradient), S tensors per dispatch. */
export function adamMulti(
  items: { p: Tensor; m: Tensor; v: Tensor }[],
  gs: GPUBuffer,
  s: AdamScalars,
): void {
  const withDtype = items.filter((x) => x.p.grad).map((x) => ({ ...x, dtype: x.p.dtype }));
  for (const batch of batches(withDtype, slotsFor(4, 1))) {
    const n = batch.map((x) => x.p.size);
    const { start, total: groups } = firstWorkgroups(n.map((k) => Math.ceil(k / WG)));
    const dtype = batch[0].dtype, slots = batch.length;
    const kernel = rt().kernel(`adam_multi|${dtype}|${slots}`, () => adamSource(dtype, slots));
    const buffers: GPUBuffer[] = [];
    for (const x of batch) buffers.push(x.p.buffer, x.p.grad!.buffer, x.m.buffer, x.v.buffer);
    buffers.push(gs);
    const u: UniformWriter = uniforms().f(s.lr, s.b1, s.b2, s.eps, s.wd, s.bc1, s.bc2, s.gscale)
      .u(...table(n), ...table(start));
    rt().dispatch(kernel, buffers, u, grid2(groups));
  }
}

/**
 * A reduction over the slots' elements: each slot gets `parts[s]` workgroups striding over its
 * elements, with `element(s)` the statement for `x{s}[i]`; `header` holds the uniform fields
 * before the slot tables, `output` the binding after the inputs (and `flag`, when given, a second
 * one after it), `init`/`finish` the code around.
 */
interface SlotScan {
  key: string;
  comment: string;
  header: string;
  output: string;
  flag?: string;
  init: string;
  element: (s: number) => string;
  finish: string;
}

function scanSource(dtype: DType, slots: number, scan: SlotScan): string {
  const binds: string[] = [];
  const cases: string[] = [];
  for (let s = 0; s < slots; s++) {
    binds.push(`@group(0) @binding(${s}) var<storage, read> x${s}: array<T>;`);
    cases.push(`  if (slot == ${s}u) {
    for (var i = local * WG + lid; i < n; i += parts * WG) {
      ${scan.element(s)}
    }
  }`);
  }
  return `${dtype === "f16" ? "enable f16;\n" : ""}alias T = ${dtype};
const S: u32 = ${slots}u;
const WG: u32 = ${RED_WG}u;
${scan.comment}
struct Params {
${scan.header}  n: ${TABLE},
  start: ${TABLE},
  parts: ${TABLE},
}
${binds.join("\n")}
@group(0) @binding(${slots}) ${scan.output}${
    scan.flag ? `\n@group(0) @binding(${slots + 1}) ${scan.flag}` : ""
  }
@group(0) @binding(${slots + (scan.flag ? 2 : 1)}) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let wgid = wid.x;
${FIND_SLOT}
  let parts = p.parts[slot / 4u][slot % 4u];
${scan.init}
${cases.join("\n")}
${scan.finish}
}
`;
}

/**
 * Launch `scan` over `xs`, `partsFor(size)` workgroups per tensor, several tensors a dispatch;
 * `head(written)` starts each dispatch's uniforms (the fields of `scan.header`). Returns the
 * workgroups launched (one partial result each).
 */
function launchScan(
  xs: Tensor[],
  out: Tensor,
  scan: SlotScan,
  head: (written: number) => UniformWriter,
  flag?: Tensor,
): number {
  let written = 0;
  for (const batch of batches(xs, slotsFor(1, flag ? 2 : 1))) {
    const n = batch.map((x) => x.size), parts = n.map(partsFor);
    const { start, total } = firstWorkgroups(parts);
    const dtype = batch[0].dtype, slots = batch.length;
    const kernel = rt().kernel(
      `${scan.key}|${dtype}|${slots}`,
      () => scanSource(dtype, slots, scan),
    );
    const u = head(written).u(...table(n), ...table(start), ...table(parts));
    const buffers = [...batch.map((x) => x.buffer), out.buffer];
    if (flag) buffers.push(flag.buffer);
    rt().dispatch(kernel, buffers, u, [total]);
    written += total;
  }
  return written;
}

const SUMSQ: SlotScan = {
  key: "sumsq_multi",
  comment:
    "// Partial sums of (x*scale)^2 as shaders/optim_reduce.wgsl's sumsq computes them, one\n" +
    "// per workgroup, written to out[off + workgroup].",
  header: "  off: u32, scale: f32, pad0: u32, pad1: u32,\n",
  output: "var<storage, read_write> out: array<f32>;\nvar<workgroup> part: array<f32, WG>;",
  init: "  var acc = 0.0;",
  element: (s) => `let v = f32(x${s}[i]) * p.scale;\n      acc += v * v;`,
  finish: `  part[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[p.off + wgid] = part[0]; }`,
};

/**
 * Partial sums of squares of every tensor into `out[off..]`, `partsFor(size)` per tensor in
 * order (the layout `encodeSumsq` writes one tensor at a time); returns the count written. With
 * `flag`, the same pass sets it as `nonfiniteMulti` would (the fp16 loss scaler's overflow check
 * and the clipping norm read the gradients once).
 */
export function sumsqMulti(
  xs: Tensor[],
  out: Tensor,
  off: number,
  scale = 1,
  flag?: Tensor,
): number {
  const head = (written: number) => uniforms().u(off + written).f(scale).u(0, 0);
  return launchScan(xs, out, flag ? SUMSQ_NONFINITE : SUMSQ, head, flag);
}

const NONFINITE: SlotScan = {
  key: "nonfinite_multi",
  comment:
    "// flag[0] |= 1 when any element of any slot is inf or NaN, tested on the exponent bits\n" +
    "// (compilers may fold x != x away).",
  header: "",
  output: "var<storage, read_write> flag: array<atomic<u32>>;",
  init: "  var bad = false;",
  element: (s) => `bad = bad || (bitcast<u32>(f32(x${s}[i])) & 0x7f800000u) == 0x7f800000u;`,
  finish: "  if (bad) { atomicOr(&flag[0], 1u); }",
};

/** SUMSQ and NONFINITE in one pass: the partial sums, and the flag of the unscaled values. */
const SUMSQ_NONFINITE: SlotScan = {
  ...SUMSQ,
  key: "sumsq_nonfinite_multi",
  comment: SUMSQ.comment + "\n" + NONFINITE.comment,
  flag: NONFINITE.output,
  init: `${SUMSQ.init}\n${NONFINITE.init}`,
  element: (s) => `${NONFINITE.element(s)}\n      ${SUMSQ.element(s)}`,
  finish: `${SUMSQ.finish}\n${NONFINITE.finish}`,
};

/** Set `flag` (a u32 word) to 1 when any of `xs` has an inf or NaN; never clears it. */
export function nonfiniteMulti(xs: Tensor[], flag: Tensor): void {
  launchScan(xs, flag, NONFINITE, () => uniforms());
}
