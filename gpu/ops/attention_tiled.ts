/**
 * The hardware family's attention kernels (FlashAttention-2 tiling): the forward, dQ and dK/dV
 * passes of `attention.ts` with the same bindings, uniforms and results, shaped for real GPUs.
 * A workgroup of 128 invocations owns a block of rows (query rows; key rows for dK/dV) of one
 * (batch, head), keeps each row's operands and accumulators in registers, and streams the other
 * side through workgroup memory in tiles loaded cooperatively (coalesced, f16 loaded as f16,
 * arithmetic in f32). Several invocations share a row, each taking a part of every tile, so a
 * workgroup holds more threads than rows; their partial results merge at the end.
 *
 * @module
 */
import fwdSrc from "../../shaders/attention_tiled_fwd.wgsl" with { type: "text" };
import dqSrc from "../../shaders/attention_tiled_dq.wgsl" with { type: "text" };
import dkdvSrc from "../../shaders/attention_tiled_dkdv.wgsl" with { type: "text" };
import { type Kernel, rt } from "../runtime.ts";
import type { DType } from "../tensor.ts";
import { specialize } from "../wgsl.ts";
import { type AttentionGeometry, expandTemplate, prelude } from "./attention_codegen.ts";
import { attentionSource } from "./attention_headers.ts";
import { check } from "./check.ts";
import { SMS } from "./tiled_launch.ts";

/** Invocations per workgroup. */
export const ATTENTION_THREADS = 128;
/** Most rows a tile stages (keys for the forward and dQ, queries for dK/dV). */
const MAX_TILE = 64;

/** Rows per workgroup and invocations per row of one launch. */
export interface AttentionBlock {
  rows: number;
  split: number;
}
/**
 * 64 rows of 2 invocations each; where that leaves fewer than two workgroups per multiprocessor
 * (short sequences: the text encoder, a cross-attention's 77 keys for dK/dV), 16 rows of 8, so
 * the same work is spread over 4x the workgroups.
 */
const WIDE: AttentionBlock = { rows: 64, split: 2 };
const NARROW: AttentionBlock = { rows: 16, split: 8 };

let forcedBlock: AttentionBlock | null = null;

/** Use one block shape for every launch (tests reach both with small shapes); null to choose. */
export function forceAttentionBlock(b: "wide" | "narrow" | null): void {
  forcedBlock = b === null ? null : b === "wide" ? WIDE : NARROW;
}

/** The block shape for `rows` rows per head and `bh` heads. */
export function attentionBlock(rows: number, bh: number): AttentionBlock {
  if (forcedBlock) return forcedBlock;
  return Math.ceil(rows / WIDE.rows) * bh >= 2 * SMS ? WIDE : NARROW;
}

/**
 * Rows per tile: two f32 tiles of `ceil(D / 4)` vec4s per row must fit workgroup memory beside
 * the merge buffer (one vec4 per invocation) and the dK/dV pass's (LSE2, delta) pairs. A multiple
 * of 8, so every part of a tile has as many rows (up to 8 parts).
 */
export function attentionTile(dv: number): number {
  const limit = rt().gpu.limits.maxComputeWorkgroupStorageSize;
  const reserve = ATTENTION_THREADS * 16 + MAX_TILE * 8;
  const tile = Math.min(MAX_TILE, Math.floor((limit - reserve) / (2 * dv * 16) / 8) * 8);
  check(
    tile >= 8,
    "attention",
    () => `head dim ${4 * dv} needs more than ${limit} bytes of workgroup memory`,
  );
  return tile;
}

/** The passes, their sources, and which buffers each reads with `ld_*` and writes with `st_*`. */
const PASSES = {
  fwd: { src: fwdSrc, loads: ["q", "k", "v"], stores: ["o"], tileName: "BK" },
  dq: { src: dqSrc, loads: ["q", "k", "v", "g", "o"], stores: ["dq"], tileName: "BK" },
  dkdv: { src: dkdvSrc, loads: ["q", "k", "v", "g"], stores: ["dk", "dv"], tileName: "BQ" },
} as const;

/** Which attention pass. */
export type AttentionPass = keyof typeof PASSES;

/** Workgroup grid and threads of one pass (rows are keys for dK/dV, else queries). */
export function attentionGrid(
  pass: AttentionPass,
  g: Pick<AttentionGeometry, "bh" | "tq" | "tk">,
): { block: AttentionBlock; grid: [number, number] } {
  const rows = pass === "dkdv" ? g.tk : g.tq;
  const block = attentionBlock(rows, g.bh);
  const x = Math.ceil(rows / block.rows);
  check(
    x <= rt().gpu.limits.maxComputeWorkgroupsPerDimension,
    "attention",
    () => `${rows} rows need ${x} workgroups along x`,
  );
  return { block, grid: [x, g.bh] };
}

/** The hardware kernel of one pass and its grid; bindings and uniforms as the software pass. */
export function tiledAttention(
  pass: AttentionPass,
  g: AttentionGeometry,
  dtype: DType,
  causal: boolean,
): { kernel: Kernel; grid: [number, number] } {
  const { block, grid } = attentionGrid(pass, g);
  const tile = attentionTile(g.dv);
  // The source depends on the pass, dtype, head dims, block shape, tile and mask.
  const key = `attention_tiled:${pass}|${dtype}|${g.d}|${g.dv}|${block.rows}x${block.split}|` +
    `${tile}|${causal}`;
  const kernel = rt().kernel(key, () => {
    const ps = PASSES[pass];
    const expanded = prelude(g.d, [...ps.loads], [...ps.stores]) + expandTemplate(ps.src, 1, g.dv);
    const body = attentionSource(pass, true, expanded);
    return specialize(body, dtype, {
      D: g.d,
      DV: g.dv,
      WG: ATTENTION_THREADS,
      ROWS: block.rows,
      SPLIT: block.split,
      [ps.tileName]: tile,
      CAUSAL: String(causal),
    });
  });
  return { kernel, grid };
}
