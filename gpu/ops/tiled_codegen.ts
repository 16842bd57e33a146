/**
 * WGSL generation for the workgroup-tiled GEMM of `shaders/matmul_tiled.wgsl`, shared by the
 * plain GEMM and the convolution passes (implicit GEMMs): a kernel is that skeleton plus two
 * operand loads and a store. The register block is unrolled in the source (named vec4
 * accumulators), so no driver has to unroll or promote an array.
 *
 * @module
 */
import tiledSrc from "../../shaders/matmul_tiled.wgsl" with { type: "text" };
import { wgslStruct } from "../kernel_header.ts";
import { TILED_PARAMS } from "./gemm_params.ts";
import type { DType } from "../tensor.ts";
import { type Consts, specialize } from "../wgsl.ts";

/** Output block of a workgroup (bm x bn), k values per staged step, register block per lane. */
export interface TileShape {
  bm: number;
  bn: number;
  bk: number;
  tm: number;
  tn: number;
}

/** 16 x 16 lanes: the skeleton's workgroup. */
export const TILED_THREADS = 256;
const SIDE = 16;

/** The big tile: 8 x 8 per lane, 8 KiB of workgroup memory. */
export const TILE_128: TileShape = { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8 };
/** The small tile, four times the workgroups for the same output: 4 x 4 per lane, 8 KiB. */
export const TILE_64: TileShape = { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 };

/**
 * How one operand tile is staged. Rows (`r`) are the operand's free dimension (M for A, N for B).
 * `vec4` reads four elements per load along the contiguous dimension (the launcher has checked
 * that the extent and every offset are multiples of 4); otherwise every lane reads scalars with
 * the statements of `elem`, which set `v` (already 0.0) for one in-range element (row `xR`, k
 * `xK`, where x is the operand's letter).
 */
export interface OperandLoad {
  /** Memory is contiguous along the rows rather than along k: lanes step through rows. */
  rFast: boolean;
  /** The vec4 address (in elements) of the element at row `xR`, k `xK`, read from `x4`. */
  vec4?: string;
  /** Statements run once per invocation before the K loop (rFast: `xR` is fixed per lane). */
  once?: string[];
  /** Statements run once per staged step (not rFast: `xK` is fixed per lane within a step). */
  perStep?: string[];
  /** Statements setting `v` for one element; unused with `vec4`. */
  elem?: string[];
  /** The vec4 binding is stored wider than `T` (f32 in an f16 kernel): round each value to T. */
  round?: boolean;
}

/** The parts of one tiled kernel that differ between GEMM and the convolution passes. */
export interface TiledKernel {
  dtype: DType;
  tile: TileShape;
  /** Binding declarations (`var<storage, ...> name: type;`) in launch order; the uniform follows. */
  bindings: string[];
  a: OperandLoad;
  b: OperandLoad;
  /** Statements setting `o`, the output element index of (m, n) for batch z. */
  outIndex: string[];
  /** Write `c[o]` (else the f32 partial sum `part[split * outSize + o]`). */
  direct: boolean;
  /** The f32 bias expression added to element (m, n) of a direct store, or null. */
  bias: string | null;
  /** A direct store multiplies the product by the uniform `p.alpha` (before the bias). */
  scaled: boolean;
  /** A direct store adds `res[o]`, a residual of the output's shape (after the bias). */
  residual: boolean;
  /**
   * The storage type of `c` (and `res`) where it is wider than `dtype` (f32 for an f16 kernel): a
   * direct store rounds to `T`, then widens, as a cast after an f16 kernel would.
   */
  outDtype?: DType;
  consts?: Consts;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

const COMP = ["x", "y", "z", "w"];

/** The staging statements of one operand (x = "a" into As, x = "b" into Bs). */
function loadLines(
  x: "a" | "b",
  ld: OperandLoad,
  t: TileShape,
): { once: string[]; step: string[] } {
  const arr = x === "a" ? "As" : "Bs";
  const R = x === "a" ? t.bm : t.bn;
  const r0 = x === "a" ? "m0" : "n0";
  const bound = x === "a" ? "p.M" : "p.N";
  const bk = t.bk;
  const [xR, xK] = [`${x}R`, `${x}K`];
  const load = ld.round
    ? `vec4f(vec4<T>(${x}4[(${ld.vec4}) >> 2u]))`
    : `vec4f(${x}4[(${ld.vec4}) >> 2u])`;
  const once: string[] = [];
  const step: string[] = [];
  if (ld.vec4 && !ld.rFast) {
    // One vec4 along k per lane per pass; spread over the four k rows of the tile.
    const passes = (R * bk) / 4 / TILED_THREADS;
    for (const e of range(passes)) {
      step.push("{");
      step.push(`  let i = lid + ${e * TILED_THREADS}u;`);
      step.push(`  let kq = i % ${bk / 4}u;`);
      step.push(`  let rr = i / ${bk / 4}u;`);
      step.push(`  let ${xR} = ${r0} + rr;`);
      step.push(`  let ${xK} = k0 + 4u * kq;`);
      step.push("  var v = vec4f(0.0);");
      step.push(`  if (${xR} < ${bound} && ${xK} < p.K) { v = ${load}; }`);
      for (const c of range(4)) {
        step.push(`  ${arr}[(4u * kq + ${c}u) * ${R / 4}u + rr / 4u][rr & 3u] = v.${COMP[c]};`);
      }
      step.push("}");
    }
  } else if (ld.vec4) {
    const passes = (R * bk) / 4 / TILED_THREADS;
    for (const e of range(passes)) {
      step.push("{");
      step.push(`  let i = lid + ${e * TILED_THREADS}u;`);
      step.push(`  let rq = i % ${R / 4}u;`);
      step.push(`  let ${xR} = ${r0} + 4u * rq;`);
      step.push(`  let ${xK} = k0 + i / ${R / 4}u;`);
      step.push("  var v = vec4f(0.0);");
      step.push(`  if (${xR} < ${bound} && ${xK} < p.K) { v = ${load}; }`);
      step.push(`  ${arr}[i] = v;`);
      step.push("}");
    }
  } else if (ld.rFast) {
    // A lane keeps one row for the whole K loop and steps through k.
    once.push(`let ${xR} = ${r0} + lid % ${R}u;`);
    once.push(`let ${x}ROk = ${xR} < ${bound};`);
    once.push(...(ld.once ?? []));
    const rowsPerPass = TILED_THREADS / R;
    for (const e of range((R * bk) / TILED_THREADS)) {
      step.push("{");
      step.push(`  let kt = lid / ${R}u + ${e * rowsPerPass}u;`);
      step.push(`  let ${xK} = k0 + kt;`);
      step.push("  var v = 0.0;");
      step.push(`  if (${x}ROk && ${xK} < p.K) {`);
      step.push(...(ld.elem ?? []).map((l) => "    " + l));
      step.push("  }");
      step.push(`  ${arr}[kt * ${R / 4}u + (lid % ${R}u) / 4u][lid & 3u] = v;`);
      step.push("}");
    }
  } else {
    // A lane keeps one k per step and steps through rows.
    step.push(`let ${x}kt = lid % ${bk}u;`);
    step.push(`let ${xK} = k0 + ${x}kt;`);
    step.push(`let ${x}KOk = ${xK} < p.K;`);
    step.push(...(ld.perStep ?? []));
    const rowsPerPass = TILED_THREADS / bk;
    for (const e of range((R * bk) / TILED_THREADS)) {
      step.push("{");
      step.push(`  let rr = lid / ${bk}u + ${e * rowsPerPass}u;`);
      step.push(`  let ${xR} = ${r0} + rr;`);
      step.push("  var v = 0.0;");
      step.push(`  if (${x}KOk && ${xR} < ${bound}) {`);
      step.push(...(ld.elem ?? []).map((l) => "    " + l));
      step.push("  }");
      step.push(`  ${arr}[${x}kt * ${R / 4}u + rr / 4u][rr & 3u] = v;`);
      step.push("}");
    }
  }
  return { once, step };
}

/** Check that a tile fits the skeleton's 256 lanes and its vec4 passes. */
function checkTile(t: TileShape): void {
  const ok = t.bm === SIDE * t.tm && t.bn === SIDE * t.tn && t.tm % 4 === 0 && t.tn % 4 === 0 &&
    TILED_THREADS % t.bm === 0 && TILED_THREADS % t.bn === 0 && TILED_THREADS % t.bk === 0 &&
    (t.bm * t.bk) % (4 * TILED_THREADS) === 0 && (t.bn * t.bk) % (4 * TILED_THREADS) === 0;
  if (!ok) throw new Error(`bad tiled GEMM tile ${JSON.stringify(t)}`);
}

/** The WGSL source of one tiled kernel. */
export function tiledSource(k: TiledKernel): string {
  const t = k.tile;
  checkTile(t);
  const gm = range(t.tm / 4), gn = range(t.tn / 4), E = range(4);
  const ind = (n: number) => (s: string) => " ".repeat(n) + s;

  const binds = [...k.bindings, "var<uniform> p: Params;"];
  const bindings = binds.map((d, i) => `@group(0) @binding(${i}) ${d}`).join("\n");

  const la = loadLines("a", k.a, t), lb = loadLines("b", k.b, t);
  const acc: string[] = [];
  for (const g of gm) {
    for (const e of E) for (const h of gn) acc.push(`var c${g}_${e}_${h} = vec4f(0.0);`);
  }

  const compute: string[] = [];
  for (const g of gm) compute.push(`let a${g} = As[kk * ${t.bm / 4}u + ty + ${SIDE * g}u];`);
  for (const h of gn) compute.push(`let b${h} = Bs[kk * ${t.bn / 4}u + tx + ${SIDE * h}u];`);
  for (const g of gm) {
    for (const e of E) {
      for (const h of gn) compute.push(`c${g}_${e}_${h} += a${g}.${COMP[e]} * b${h};`);
    }
  }

  // The epilogue of a direct store: alpha·acc + bias + residual, cast once.
  const epilogue = (acc: string) =>
    (k.scaled ? `p.alpha * ${acc}` : acc) + (k.bias ? ` + ${k.bias}` : "") +
    (k.residual ? " + f32(res[o])" : "");
  const wide = (v: string) => (k.outDtype && k.outDtype !== k.dtype ? `${k.outDtype}(${v})` : v);
  const store: string[] = [];
  for (const g of gm) {
    for (const e of E) {
      store.push("{");
      store.push(`  let m = m0 + 4u * (ty + ${SIDE * g}u) + ${e}u;`);
      store.push("  if (m < p.M) {");
      for (const h of gn) {
        for (const c of E) {
          const val = `c${g}_${e}_${h}.${COMP[c]}`;
          store.push("    {");
          store.push(`      let n = n0 + 4u * (tx + ${SIDE * h}u) + ${c}u;`);
          store.push("      if (n < p.N) {");
          store.push(...k.outIndex.map(ind(8)));
          store.push(
            k.direct
              ? `        c[o] = ${wide(`T(${epilogue(val)})`)};`
              : `        part[split * p.outSize + o] = ${val};`,
          );
          store.push("      }");
          store.push("    }");
        }
      }
      store.push("  }");
      store.push("}");
    }
  }

  const body = tiledSrc
    .replace("@BINDINGS@", wgslStruct("Params", TILED_PARAMS) + bindings)
    .replace("@PRELUDE@", [...la.once, ...lb.once].map(ind(2)).join("\n"))
    .replace("@ACC@", acc.map(ind(2)).join("\n"))
    .replace("@LOAD@", [...la.step, ...lb.step].map(ind(6)).join("\n"))
    .replace("@COMPUTE@", compute.map(ind(8)).join("\n"))
    .replace("@STORE@", store.map(ind(2)).join("\n"));
  return specialize(body, k.dtype, { BM: t.bm, BN: t.bn, BK: t.bk, ...k.consts });
}
