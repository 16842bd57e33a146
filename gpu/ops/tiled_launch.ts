/**
 * Launch planning for the workgroup-tiled kernels (GEMM and the convolution passes): the tile,
 * split-K, the grid, and the dispatch with its partial-sum reduce. A hardware GPU wants enough
 * workgroups to occupy every multiprocessor (an H100 has 132) twice over; a product too small for
 * that gets the small tile, and one with a long K on top is split along K.
 *
 * @module
 */
import { rt, uniforms } from "../runtime.ts";
import { type DType, Tensor } from "../tensor.ts";
import { check } from "./check.ts";
import { type BiasLayout, reduceSplits } from "./split_k.ts";
import {
  TILE_128,
  TILE_64,
  TILED_THREADS,
  type TiledKernel,
  tiledSource,
  type TileShape,
} from "./tiled_codegen.ts";

/** Multiprocessors of the GPUs the family is sized for (an H100 SXM has 132). */
export const SMS = 132;
/** The fewest k values a split is worth: below this the partial sums cost more than they save. */
const MIN_CHUNK = 256;

/** Tile, split-K and grid of one tiled launch. */
export interface TiledPlan {
  tile: TileShape;
  splits: number;
  /** k values per split (a multiple of the tile's bk when split). */
  kChunk: number;
  grid: [number, number, number];
}

/** Threads a plan launches (the main kernel; the split-K reduce is a small second pass). */
export function planThreads(p: TiledPlan): number {
  return p.grid[0] * p.grid[1] * p.grid[2] * TILED_THREADS;
}

function roundUp(v: number, m: number): number {
  return Math.ceil(v / m) * m;
}

let forcedTile: TileShape | null = null;

/** Use one tile for every launch (tests reach the big tile with small shapes); null to choose. */
export function forceTile(t: TileShape | null): void {
  forcedTile = t;
}

/**
 * The plan for an M x N output per batch with reduction length K. The big tile needs two
 * workgroups per multiprocessor to be chosen; below two per multiprocessor (with the small tile) a
 * long K is split until there are two, as far as the partial sums fit one storage binding.
 */
export function planTiled(M: number, N: number, K: number, batch: number): TiledPlan {
  const count = (t: TileShape) => Math.ceil(M / t.bm) * Math.ceil(N / t.bn) * batch;
  const tile = forcedTile ?? (count(TILE_128) >= 2 * SMS ? TILE_128 : TILE_64);
  const wgs = count(tile);
  let splits = 1, kChunk = K;
  if (wgs > 0 && wgs < 2 * SMS && K >= 2 * MIN_CHUNK) {
    const partialLimit = Math.floor(
      rt().gpu.limits.maxStorageBufferBindingSize / (M * N * batch * 4),
    );
    const want = Math.min(Math.ceil((2 * SMS) / wgs), Math.floor(K / MIN_CHUNK), partialLimit);
    if (want >= 2) {
      kChunk = roundUp(Math.ceil(K / want), tile.bk);
      splits = Math.ceil(K / kChunk);
    }
  }
  return {
    tile,
    splits,
    kChunk,
    grid: [Math.ceil(N / tile.bn), Math.ceil(M / tile.bm), batch * splits],
  };
}

/** Convolution sizes read by the implicit-GEMM gathers (zeros for a plain GEMM). */
export interface ConvSizes {
  cin: number;
  cout: number;
  h: number;
  w: number;
  ho: number;
  wo: number;
  /** Zero padding above and left of the input (below and right only size ho and wo). */
  padTop: number;
  padLeft: number;
}

/** One tiled launch: sizes, the kernel's variable parts, and its input buffers. */
export interface TiledLaunch {
  op: string;
  /** Names the kernel's source apart from dtype, tile and store (the pipeline lookup key). */
  key: string;
  dtype: DType;
  M: number;
  N: number;
  K: number;
  batch: number;
  nRed: number;
  /** Element offsets per output batch and per reduced batch of A and B. */
  offsets: [number, number, number, number];
  /** Output pixels per image of an NCHW store (0 for a row-major one). */
  hwD: number;
  conv?: ConvSizes;
  /** The kernel without its output and epilogue bindings, which the launch appends. */
  kernel: (
    tile: TileShape,
  ) => Omit<TiledKernel, "dtype" | "tile" | "direct" | "bias" | "scaled" | "residual">;
  /** The f32 bias expression of element (m, n) and its layout for the split-K reduce. */
  bias: { expr: string; layout: BiasLayout } | null;
  /** Multiplies the product (not the bias or residual); default 1. */
  alpha?: number;
  /** Added to the result; the output's shape and dtype. */
  residual?: Tensor | null;
  /**
   * The output's storage dtype where it is wider than `dtype` (f32 for an f16 kernel): the
   * result is rounded to `dtype` and widened, as a cast kernel after the launch would.
   */
  outDtype?: DType;
  inputs: GPUBuffer[];
  outShape: number[];
}

/** Plan, check and dispatch a tiled launch; returns the new output. */
export function runTiled(l: TiledLaunch): Tensor {
  const { M, N, K, batch } = l;
  const plan = planTiled(M, N, K, batch);
  const lim = rt().gpu.limits.maxComputeWorkgroupsPerDimension;
  check(
    plan.grid.every((x) => x <= lim),
    l.op,
    () => `[${M}, ${K}] x [${K}, ${N}] in ${batch} batches needs a grid of [${plan.grid}]`,
  );
  const outDtype = l.outDtype ?? l.dtype;
  const wide = outDtype !== l.dtype;
  const out = Tensor.empty(l.outShape, outDtype);
  if (M === 0 || N === 0 || batch === 0) return out;
  const direct = plan.splits === 1;
  const t = plan.tile;
  const alpha = l.alpha ?? 1;
  const residual = l.residual ?? null;
  // A split kernel stores bare partial sums: the reduce applies the whole epilogue.
  const bias = direct ? l.bias : null;
  const scaled = direct && alpha !== 1;
  const withRes = direct && !!residual;
  const key = `${l.key}|${l.dtype}|${t.bm}x${t.bn}|${direct ? "direct" : "split"}|` +
    `${bias ? bias.expr : "-"}|${+scaled}${+withRes}${wide ? `|${outDtype}` : ""}`;
  const kernel = rt().kernel(key, () => {
    const k = l.kernel(t);
    const bindings = [...k.bindings];
    bindings.push(
      direct
        ? `var<storage, read_write> c: array<${wide ? outDtype : "T"}>;`
        : "var<storage, read_write> part: array<f32>;",
    );
    if (bias) bindings.push("var<storage, read> bias: array<T>;");
    if (withRes) bindings.push(`var<storage, read> res: array<${wide ? outDtype : "T"}>;`);
    return tiledSource({
      ...k,
      bindings,
      dtype: l.dtype,
      tile: t,
      direct,
      bias: bias ? bias.expr : null,
      scaled,
      residual: withRes,
      outDtype,
    });
  });
  const outSize = out.size;
  const part = direct ? null : Tensor.empty([plan.splits * outSize], "f32");
  const buffers = [...l.inputs, part ? part.buffer : out.buffer];
  if (bias) buffers.push(bias.layout.bias.buffer);
  if (direct && residual) buffers.push(residual.buffer);
  const c = l.conv ?? { cin: 0, cout: 0, h: 0, w: 0, ho: 0, wo: 0, padTop: 0, padLeft: 0 };
  const u = uniforms().u(M, N, K, l.nRed, ...l.offsets)
    .u(plan.splits, plan.kChunk, outSize, l.hwD)
    .u(c.cin, c.cout, c.h, c.w)
    .u(c.ho, c.wo, c.padTop, c.padLeft).f(alpha).u(0, 0, 0);
  const flops = 2 * M * N * K * batch * l.nRed;
  rt().dispatch(kernel, buffers, u, plan.grid, flops);
  if (part) {
    reduceSplits(part, out, plan.splits, {
      alpha,
      bias: l.bias?.layout ?? null,
      residual,
      round: wide ? l.dtype : undefined,
    });
    part.dispose();
  }
  return out;
}
