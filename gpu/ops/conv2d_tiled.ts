/**
 * The hardware family's convolution passes, each an implicit GEMM on the workgroup-tiled kernel
 * (`shaders/matmul_tiled.wgsl`) with the im2col operand gathered straight into workgroup memory:
 *   forward:      y[n, co, pix]  = W[co, (ci, tap)] · X[(ci, tap), (n, pix)]   (NCHW store)
 *   grad input:   dx[n, ci, pix] = Wᵀ[ci, (co, tap)] · dY[(co, tap), (n, pix)] (transposed conv)
 *   grad weight:  dw[co, (ci, tap)] = dY[co, (n, pix)] · X[(n, pix), (ci, tap)] (row-major store)
 * The kernel size and stride are compile-time constants, so the tap arithmetic divides by
 * constants; the padding (top and left; bottom and right only size the output) is a uniform, as it
 * is only added, so one pipeline serves every padding. A 1x1 convolution with stride 1 and no
 * padding is a plain batched GEMM on the NCHW buffers and takes the GEMM's vec4 loads.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";
import type { ConvDims } from "./conv_dims.ts";
import { tiledGemm } from "./matmul_tiled.ts";
import type { OperandLoad } from "./tiled_codegen.ts";
import { type ConvSizes, runTiled } from "./tiled_launch.ts";

/** The launch shape of one pass: GEMM sizes and the pixels per image of an NCHW store. */
export interface ConvGemm {
  M: number;
  N: number;
  K: number;
  batch: number;
}

function pointwise(d: ConvDims): boolean {
  return d.kh === 1 && d.kw === 1 && d.stride === 1 && d.pad.every((v) => v === 0);
}

/** The GEMM sizes of a pass as the tiled family launches it (for thread counts). */
export function convGemmShape(d: ConvDims, pass: "forward" | "input" | "weight"): ConvGemm {
  const taps = d.kh * d.kw, hw = d.h * d.w, howo = d.ho * d.wo;
  const pw = pointwise(d);
  if (pass === "forward") {
    return pw
      ? { M: d.cout, N: hw, K: d.cin, batch: d.n }
      : { M: d.cout, N: d.n * howo, K: d.cin * taps, batch: 1 };
  }
  if (pass === "input") {
    return pw
      ? { M: d.cin, N: hw, K: d.cout, batch: d.n }
      : { M: d.cin, N: d.n * hw, K: d.cout * taps, batch: 1 };
  }
  // The pointwise weight gradient sums the images inside the kernel (nRed), so K is one image.
  return { M: d.cout, N: d.cin * taps, K: pw ? hw : d.n * howo, batch: 1 };
}

function sizes(d: ConvDims): ConvSizes {
  return {
    cin: d.cin,
    cout: d.cout,
    h: d.h,
    w: d.w,
    ho: d.ho,
    wo: d.wo,
    padTop: d.pad[0],
    padLeft: d.pad[2],
  };
}

function consts(d: ConvDims) {
  return { KW: d.kw, TAPS: d.kh * d.kw, STRIDE: d.stride };
}

/** The key part naming a convolution's geometry (everything its gathers compile in). */
function geometry(d: ConvDims): string {
  return `${d.kh}x${d.kw}|s${d.stride}`;
}

/** Output index of (m = channel, n = (image, pixel)) in an NCHW tensor. */
const NCHW_INDEX = [
  "let img = n / p.hwD;",
  "let o = (img * p.M + m) * p.hwD + n - img * p.hwD;",
];

/** X gathered as the [(ci, tap), (n, pix)] operand of the forward pass (B; rows are pixels). */
const X_COLUMNS: OperandLoad = {
  rFast: true,
  once: [
    "let bImg = bR / (p.ho * p.wo);",
    "let bPix = bR % (p.ho * p.wo);",
    "let bIh = i32((bPix / p.wo) * STRIDE) - i32(p.padTop);",
    "let bIw = i32((bPix % p.wo) * STRIDE) - i32(p.padLeft);",
    "let bBase = bImg * p.cin * p.h * p.w;",
  ],
  elem: [
    "let ci = bK / TAPS;",
    "let t = bK % TAPS;",
    "let ih = bIh + i32(t / KW);",
    "let iw = bIw + i32(t % KW);",
    "if (ih >= 0 && iw >= 0 && ih < i32(p.h) && iw < i32(p.w)) {",
    "  v = f32(x[bBase + (ci * p.h + u32(ih)) * p.w + u32(iw)]);",
    "}",
  ],
};

/** W read as the [ci, (co, tap)] operand of the input gradient (A). */
const W_TRANSPOSED: OperandLoad = {
  rFast: false,
  perStep: ["let aCo = aK / TAPS;", "let aT = aK % TAPS;"],
  elem: ["v = f32(wt[(aCo * p.cin + aR) * TAPS + aT]);"],
};

/** dY gathered as the [(co, tap), (n, pix)] operand of the input gradient (B; rows are dx pixels). */
const DY_COLUMNS: OperandLoad = {
  rFast: true,
  once: [
    "let bImg = bR / (p.h * p.w);",
    "let bPix = bR % (p.h * p.w);",
    "let bTh = i32(bPix / p.w) + i32(p.padTop);",
    "let bTw = i32(bPix % p.w) + i32(p.padLeft);",
    "let bBase = bImg * p.cout * p.ho * p.wo;",
  ],
  elem: [
    "let co = bK / TAPS;",
    "let t = bK % TAPS;",
    "let th = bTh - i32(t / KW);",
    "let tw = bTw - i32(t % KW);",
    // A source pixel exists where the output position divides exactly by the stride.
    "if (th >= 0 && tw >= 0 && th % i32(STRIDE) == 0 && tw % i32(STRIDE) == 0) {",
    "  let oh = u32(th) / STRIDE;",
    "  let ow = u32(tw) / STRIDE;",
    "  if (oh < p.ho && ow < p.wo) {",
    "    v = f32(dy[bBase + (co * p.ho + oh) * p.wo + ow]);",
    "  }",
    "}",
  ],
};

/** dY read as the [co, (n, pix)] operand of the weight gradient (A). */
const DY_ROWS: OperandLoad = {
  rFast: false,
  perStep: [
    "let aImg = aK / (p.ho * p.wo);",
    "let aBase = aImg * p.cout * p.ho * p.wo + aK - aImg * p.ho * p.wo;",
  ],
  elem: ["v = f32(dy[aBase + aR * p.ho * p.wo]);"],
};

/** X gathered as the [(n, pix), (ci, tap)] operand of the weight gradient (B). */
const X_ROWS: OperandLoad = {
  rFast: false,
  perStep: [
    "let bImg = bK / (p.ho * p.wo);",
    "let bPix = bK % (p.ho * p.wo);",
    "let bIh = i32((bPix / p.wo) * STRIDE) - i32(p.padTop);",
    "let bIw = i32((bPix % p.wo) * STRIDE) - i32(p.padLeft);",
    "let bBase = bImg * p.cin * p.h * p.w;",
  ],
  elem: [
    "let ci = bR / TAPS;",
    "let t = bR % TAPS;",
    "let ih = bIh + i32(t / KW);",
    "let iw = bIw + i32(t % KW);",
    "if (ih >= 0 && iw >= 0 && ih < i32(p.h) && iw < i32(p.w)) {",
    "  v = f32(x[bBase + (ci * p.h + u32(ih)) * p.w + u32(iw)]);",
    "}",
  ],
};

const NO_OFFSETS: [number, number, number, number] = [0, 0, 0, 0];

/** Forward (mode 0, src = x) or input gradient (mode 1, src = dy), as conv2d.ts's `tapConv`. */
export function tiledConv(
  src: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  d: ConvDims,
  mode: 0 | 1,
  ep: { alpha: number; residual: Tensor | null } = { alpha: 1, residual: null },
): Tensor {
  const fwd = mode === 0;
  const { M, N, K } = convGemmShape(d, fwd ? "forward" : "input");
  const [cd, hd, wd] = fwd ? [d.cout, d.ho, d.wo] : [d.cin, d.h, d.w];
  const outShape = [d.n, cd, hd, wd];
  if (pointwise(d)) {
    // Per image: y = W[cout, cin] · x[cin, hw]; dx = Wᵀ · dy[cout, hw].
    const hw = d.h * d.w;
    return tiledGemm({
      a: weight,
      b: src,
      M,
      N,
      K,
      transA: !fwd,
      transB: false,
      batch: d.n,
      nRed: 1,
      aOut: 0,
      bOut: K * hw,
      aRed: 0,
      bRed: 0,
      bias,
      biasRows: true,
      alpha: ep.alpha,
      residual: ep.residual,
      outShape,
    });
  }
  // The weight as the forward's A is the row-major [cout, cin * taps] matrix itself.
  const vecW = fwd && K % 4 === 0;
  const wLoad: OperandLoad = vecW
    ? { rFast: false, vec4: "aR * p.K + aK" }
    : { rFast: false, elem: ["v = f32(wt[aR * p.K + aK]);"] };
  return runTiled({
    op: "conv2d",
    key: `tiled_conv_${fwd ? "fwd" : "dgrad"}|${geometry(d)}|${+vecW}`,
    dtype: src.dtype,
    M,
    N,
    K,
    batch: 1,
    nRed: 1,
    offsets: NO_OFFSETS,
    hwD: hd * wd,
    conv: sizes(d),
    kernel: () => ({
      bindings: fwd
        ? [
          vecW ? "var<storage, read> a4: array<vec4<T>>;" : "var<storage, read> wt: array<T>;",
          "var<storage, read> x: array<T>;",
        ]
        : ["var<storage, read> wt: array<T>;", "var<storage, read> dy: array<T>;"],
      a: fwd ? wLoad : W_TRANSPOSED,
      b: fwd ? X_COLUMNS : DY_COLUMNS,
      outIndex: NCHW_INDEX,
      consts: consts(d),
    }),
    bias: bias ? { expr: "f32(bias[m])", layout: { bias, div: hd * wd, mod: cd } } : null,
    alpha: ep.alpha,
    residual: ep.residual,
    inputs: [weight.buffer, src.buffer],
    outShape,
  });
}

/**
 * Weight gradient `[Cout, Cin, kh, kw]`, as conv2d.ts's `conv2dGradWeight` (`outDtype` f32 under
 * f16 data: rounded to f16, then widened).
 */
export function tiledConvGradWeight(
  x: Tensor,
  dy: Tensor,
  d: ConvDims,
  outDtype: Tensor["dtype"] = x.dtype,
): Tensor {
  const { M, N, K } = convGemmShape(d, "weight");
  const outShape = [d.cout, d.cin, d.kh, d.kw];
  if (pointwise(d)) {
    // dw[cout, cin] = sum over images of dy[cout, hw] · x[cin, hw]ᵀ.
    const hw = d.h * d.w;
    return tiledGemm({
      a: dy,
      b: x,
      M,
      N,
      K,
      transA: false,
      transB: true,
      batch: 1,
      nRed: d.n,
      aOut: 0,
      bOut: 0,
      aRed: d.cout * hw,
      bRed: d.cin * hw,
      outShape,
      outDtype,
    });
  }
  return runTiled({
    op: "conv2d",
    key: `tiled_conv_wgrad|${geometry(d)}`,
    dtype: x.dtype,
    M,
    N,
    K,
    batch: 1,
    nRed: 1,
    offsets: NO_OFFSETS,
    hwD: 0,
    conv: sizes(d),
    kernel: () => ({
      bindings: ["var<storage, read> dy: array<T>;", "var<storage, read> x: array<T>;"],
      a: DY_ROWS,
      b: X_ROWS,
      outIndex: ["let o = m * p.N + n;"],
      consts: consts(d),
    }),
    bias: null,
    inputs: [dy.buffer, x.buffer],
    outShape,
    outDtype,
  });
}
