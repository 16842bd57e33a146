/**
 * WGSL generation for the register-tiled GEMM in `shaders/matmul.wgsl`. The tile is unrolled in
 * the source (one vec4f accumulator per 4 output columns per row) because llvmpipe keeps unrolled
 * SSA values in registers but turns WGSL arrays into stack memory.
 *
 * @module
 */
import matmulSrc from "../../shaders/matmul.wgsl" with { type: "text" };
import { wgslStruct } from "../kernel_header.ts";
import { MATMUL_PARAMS } from "./gemm_params.ts";
import type { DType } from "../tensor.ts";
import { specialize } from "../wgsl.ts";

/** One compiled variant of the GEMM kernel. */
export interface GemmVariant {
  dtype: DType;
  /** Rows of C per invocation (a multiple of `widthA` when `transA`). */
  tm: number;
  /** Columns of C per invocation (a multiple of 4, and of `widthB` unless `transB`). */
  tn: number;
  /** Workgroup size along N (x) and M (y). */
  wx: number;
  wy: number;
  /** A is stored [K, M] (else [M, K]); B is stored [N, K] (else [K, N]). */
  transA: boolean;
  transB: boolean;
  /**
   * Elements per load of A / B: 1 (scalar), 4 (`vec4<T>`) or 8 (f16 only: `vec4<u32>` holding
   * eight halves). Needs the contiguous dimension to be a multiple of the width.
   */
  widthA: 1 | 4 | 8;
  widthB: 1 | 4 | 8;
  /** Add bias[n] (fused epilogue). */
  bias: boolean;
  /** Multiply the product by the uniform `alpha` (fused epilogue). */
  scaled: boolean;
  /** Add a residual R of C's shape (fused epilogue; R may be a gradient being accumulated). */
  residual: boolean;
  /**
   * Storage dtypes of A, B and C (the residual's too) where they differ from `dtype`, the dtype
   * the GEMM computes in: an f32 operand of an f16 GEMM is rounded to f16 as it is read, an f32
   * result rounded to f16 before it is stored (as cast kernels around an f16 GEMM would).
   */
  dtypeA?: DType;
  dtypeB?: DType;
  dtypeC?: DType;
}

const COMP = ["x", "y", "z", "w"];
const cache = new Map<string, string>();

/** The WGSL source of one variant (memoized). */
export function gemmSource(v: GemmVariant): string {
  const key = JSON.stringify(v);
  let src = cache.get(key);
  if (!src) {
    src = build(v);
    cache.set(key, src);
  }
  return src;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/**
 * Emit a vector load of width `w` at element offset `off` (a multiple of `w`) from binding `buf`
 * into `name`; returns the f32 expression of element e < w. `round`: the binding is stored wider
 * than `T`, and each value is rounded to `T` first.
 */
function vload(
  out: string[],
  buf: string,
  off: string,
  w: number,
  name: string,
  round = false,
): (e: number) => string {
  if (w === 4) {
    const load = `${buf}[(${off}) >> 2u]`;
    out.push(`let ${name} = vec4f(${round ? `vec4<T>(${load})` : load});`);
    return (e) => `${name}.${COMP[e]}`;
  }
  out.push(`let ${name} = ${buf}[(${off}) >> 3u];`);
  for (const q of range(4)) out.push(`let ${name}_${q} = unpack2x16float(${name}.${COMP[q]});`);
  return (e) => `${name}_${e >> 1}.${COMP[e & 1]}`;
}

function build(v: GemmVariant): string {
  const { tm, tn, transA: tA, transB: tB, widthA: wA, widthB: wB } = v;
  if (tn % 4 !== 0 || (tA && tm % wA !== 0) || (!tB && tn % wB !== 0)) {
    throw new Error(`bad GEMM tile ${tm}x${tn} for load widths ${wA}/${wB}`);
  }
  if ((v.dtypeA === "f32" && wA === 8) || (v.dtypeB === "f32" && wB === 8)) {
    throw new Error("GEMM: eight-half loads of an f32 operand");
  }
  // k values per main-loop step: enough for one load along k of either operand.
  const ks = Math.max(4, !tA ? wA : 1, tB ? wB : 1);
  const tn4 = tn / 4;
  const I = range(tm), J = range(tn), J4 = range(tn4), KS = range(ks);
  const ind = (n: number) => (s: string) => " ".repeat(n) + s;
  // Storage types ("T" where they are the GEMM's dtype) and whether a read rounds to T.
  const [sA, sB, sC] = [v.dtypeA, v.dtypeB, v.dtypeC].map((d) => (!d || d === v.dtype ? "T" : d));
  const [rA, rB] = [sA !== "T", sB !== "T"];
  const vecType = (w: number, s: string) => (w === 8 ? "vec4<u32>" : `vec4<${s}>`);

  // Bindings, in the order the launcher passes buffers; the uniform block comes last.
  const binds = [
    `var<storage, read> a: array<${sA}>;`,
    `var<storage, read> b: array<${sB}>;`,
    `var<storage, read_write> c: array<${sC}>;`,
  ];
  if (v.bias) binds.push("var<storage, read> bias: array<T>;");
  if (v.residual) binds.push(`var<storage, read> res: array<${sC}>;`);
  if (wA > 1) binds.push(`var<storage, read> a4: array<${vecType(wA, sA)}>;`);
  if (wB > 1) binds.push(`var<storage, read> b4: array<${vecType(wB, sB)}>;`);
  binds.push("var<uniform> p: Params;");
  const bindings = binds.map((d, i) => `@group(0) @binding(${i}) ${d}`).join("\n");

  // Clamped row/column indices: edge blocks re-read valid data and mask the store instead.
  const setup: string[] = [];
  for (const i of I) setup.push(`let ri${i} = min(m0 + ${i}u, M - 1u);`);
  if (tA && wA > 1) {
    for (const q of range(tm / wA)) setup.push(`let rv${q} = min(m0 + ${wA * q}u, M - ${wA}u);`);
  }
  for (const j of J) setup.push(`let cj${j} = min(n0 + ${j}u, N - 1u);`);
  if (!tB && wB > 1) {
    for (const q of range(tn / wB)) setup.push(`let cv${q} = min(n0 + ${wB * q}u, N - ${wB}u);`);
  }
  if (v.bias) { for (const j of J) setup.push(`let bz${j} = f32(bias[cj${j}]);`); }

  const acc = I.flatMap((i) => J4.map((j4) => `var acc${i}_${j4} = vec4f(0.0);`));

  const bases: string[] = [];
  if (!tA) { for (const i of I) bases.push(`let ab${i} = aOff + ri${i} * K;`); }
  if (tB) { for (const j of J) bases.push(`let bb${j} = bOff + cj${j} * K;`); }

  // Scalar element reads (used by the 1-step tail and by unaligned variants).
  const kPlus = (kk: number) => (kk === 0 ? "k" : `k + ${kk}u`);
  const rd = (round: boolean, e: string) => (round ? `f32(T(${e}))` : `f32(${e})`);
  const aAt = (i: number, k: string) =>
    rd(rA, tA ? `a[aOff + (${k}) * M + ri${i}]` : `a[ab${i} + ${k}]`);
  const bAt = (j: number, k: string) =>
    rd(rB, tB ? `b[bb${j} + ${k}]` : `b[bOff + (${k}) * N + cj${j}]`);

  const step: string[] = [];
  // aE[i][kk]: f32 expression of A[row i, k + kk].
  const aE: string[][] = I.map(() => []);
  if (wA === 1) {
    for (const i of I) for (const kk of KS) aE[i][kk] = aAt(i, kPlus(kk));
  } else if (!tA) {
    for (const i of I) {
      for (let k0 = 0; k0 < ks; k0 += wA) {
        const el = vload(step, "a4", `ab${i} + ${kPlus(k0)}`, wA, `av${i}_${k0}`, rA);
        for (const e of range(wA)) aE[i][k0 + e] = el(e);
      }
    }
  } else {
    for (const kk of KS) {
      step.push(`let ak${kk} = aOff + (${kPlus(kk)}) * M;`);
      for (const q of range(tm / wA)) {
        const el = vload(step, "a4", `ak${kk} + rv${q}`, wA, `at${kk}_${q}`, rA);
        for (const e of range(wA)) aE[q * wA + e][kk] = el(e);
      }
    }
  }
  // bE[kk][j]: f32 expression of B[k + kk, column j].
  const bE: string[][] = KS.map(() => []);
  if (wB === 1) {
    for (const kk of KS) for (const j of J) bE[kk][j] = bAt(j, kPlus(kk));
  } else if (!tB) {
    for (const kk of KS) {
      step.push(`let bk${kk} = bOff + (${kPlus(kk)}) * N;`);
      for (const q of range(tn / wB)) {
        const el = vload(step, "b4", `bk${kk} + cv${q}`, wB, `bv${kk}_${q}`, rB);
        for (const e of range(wB)) bE[kk][q * wB + e] = el(e);
      }
    }
  } else {
    for (const j of J) {
      for (let k0 = 0; k0 < ks; k0 += wB) {
        const el = vload(step, "b4", `bb${j} + ${kPlus(k0)}`, wB, `bt${j}_${k0}`, rB);
        for (const e of range(wB)) bE[k0 + e][j] = el(e);
      }
    }
  }
  for (const kk of KS) {
    for (const j4 of J4) {
      const cols = range(4).map((c) => bE[kk][4 * j4 + c]);
      step.push(`let bq${kk}_${j4} = vec4f(${cols.join(", ")});`);
    }
    for (const i of I) {
      for (const j4 of J4) {
        step.push(`acc${i}_${j4} = fma(vec4f(${aE[i][kk]}), bq${kk}_${j4}, acc${i}_${j4});`);
      }
    }
  }

  const step1: string[] = [];
  for (const i of I) step1.push(`let s${i} = ${aAt(i, "k")};`);
  for (const j4 of J4) {
    step1.push(`let w${j4} = vec4f(${range(4).map((c) => bAt(4 * j4 + c, "k")).join(", ")});`);
  }
  for (const i of I) {
    for (const j4 of J4) step1.push(`acc${i}_${j4} = fma(vec4f(s${i}), w${j4}, acc${i}_${j4});`);
  }

  const store: string[] = [];
  for (const i of I) {
    store.push(`if (m0 + ${i}u < M) {`);
    store.push(`  let row${i} = cOff + (m0 + ${i}u) * N + n0;`);
    for (const j of J) {
      const prod = `acc${i}_${j >> 2}.${COMP[j & 3]}`;
      const val = (v.scaled ? `p.alpha * ${prod}` : prod) + (v.bias ? ` + bz${j}` : "") +
        (v.residual ? ` + f32(res[row${i} + ${j}u])` : "");
      const out = sC === "T" ? `T(${val})` : `${sC}(T(${val}))`;
      store.push(`  if (n0 + ${j}u < N) { c[row${i} + ${j}u] = ${out}; }`);
    }
    store.push("}");
  }

  const body = matmulSrc
    .replace("@BINDINGS@", wgslStruct("Params", MATMUL_PARAMS) + bindings)
    .replace("@SETUP@", setup.map(ind(2)).join("\n"))
    .replace("@ACC@", acc.map(ind(2)).join("\n"))
    .replace("@BASES@", bases.map(ind(4)).join("\n"))
    .replace("@STEP@", step.map(ind(6)).join("\n"))
    .replace("@STEP1@", step1.map(ind(6)).join("\n"))
    .replace("@STORE@", store.map(ind(2)).join("\n"));
  return specialize(body, v.dtype, { TM: tm, TN: tn, WX: v.wx, WY: v.wy, KS: ks });
}
