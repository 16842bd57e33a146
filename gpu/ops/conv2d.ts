/**
 * 2-D convolution on NCHW tensors with weights `[Cout, Cin, kh, kw]` (the checkpoint layout):
 * forward with fused bias, grad input, grad weight and grad bias, in f32 or f16 storage with f32
 * accumulation. Every pass is an implicit GEMM (shaders/conv2d.wgsl, conv2d_wgrad.wgsl); the
 * weight is repacked into the f32 `[tap][source channel][dest channel]` operand the kernel reads
 * with uniform vec4 loads: once per weight and direction for constant (frozen) weights, per call
 * for trained ones.
 *
 * @module
 */
import convSrc from "../../shaders/conv2d.wgsl" with { type: "text" };
import wgradSrc from "../../shaders/conv2d_wgrad.wgsl" with { type: "text" };
import { kernelHeader } from "../kernel_header.ts";
import { CONV, PACK, WGRAD } from "./conv_headers.ts";
import { noGrad, record } from "../autograd.ts";
import { kernelFamily } from "../family.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grid, specialize, specKernel, withResidualStore } from "../wgsl.ts";
import { check, fmt } from "./check.ts";
import type { ConvDims, ConvPadding } from "./conv_dims.ts";
import { tiledConv, tiledConvGradWeight } from "./conv2d_tiled.ts";
import { gemm } from "./matmul.ts";
import { UN_FWD, unaryRaw } from "./elementwise_raw.ts";
import { cast } from "./elementwise.ts";
import { castRaw, gemmPasses, mixed, pointwise, withWeight } from "./conv_mixed.ts";
import { reduceRaw } from "./reduce.ts";

export type { ConvDims, ConvPadding };

/** Options of `conv2d`. */
export interface Conv2dOptions {
  /** Stride along both spatial axes (default 1). */
  stride?: number;
  /**
   * Zero padding: the same on every side, or `[top, bottom, left, right]` (default 0). diffusers'
   * VAE downsampler, `F.pad(x, (0, 1, 0, 1))` then an unpadded conv, is `[0, 1, 0, 1]`.
   */
  padding?: number | ConvPadding;
  /** Multiplies the convolution (not the bias or residual); default 1. */
  alpha?: number;
  /**
   * Added to the result (same shape and dtype): `residual + alpha·conv(x) + bias` in the
   * kernel's epilogue (a residual connection, a LoRA branch added to its layer).
   */
  residual?: Tensor | null;
}

/** What a forward pass adds in its store: a scale of the sum and a residual. */
interface Epilogue {
  alpha: number;
  residual: Tensor | null;
}

const PLAIN: Epilogue = { alpha: 1, residual: null };

/**
 * Launch shape of the main kernel: RM pixels x CN channels per invocation, WG invocations. On
 * lavapipe (one AVX2 register per shader scalar) 8 x 8 measured best, about 11 GFLOP/s per two
 * idle cores, against 8.7 for 4 x 8, 8.9 for 4 x 16, 8.6 for 8 x 12 and 8.0 for 8 x 16 (these
 * spill), 7.1 for 16 x 4; WG 64 beat 32 and 128. WGSL `fma()` was slower than `a * b + c`.
 */
const WG = 64;
const RM = 8;
/** Launch shape of the weight-gradient kernel: RO output x CI input channels per invocation. */
const WG_WGRAD = 64;
const RO = 8;
const CI = 8;
const WG_PACK = 256;

/** Replace the `// @name` marker lines of a kernel with generated statements. */
function expand(src: string, parts: Record<string, string[]>): string {
  let out = src;
  for (const [name, lines] of Object.entries(parts)) {
    out = out.replace(
      new RegExp(`^( *)// @${name}$`, "m"),
      (_, ind: string) => lines.map((l) => ind + l).join("\n"),
    );
  }
  return out;
}

/** Index pairs (r, j) of an r x j register block. */
function block(nr: number, nj: number): [number, number][] {
  const out: [number, number][] = [];
  for (let r = 0; r < nr; r++) for (let j = 0; j < nj; j++) out.push([r, j]);
  return out;
}

/** conv2d.wgsl with its channel loop unrolled over RM pixels x CN4 vec4 channel groups. */
function convKernel(rm: number, cn4: number): string {
  const inner: string[] = [];
  for (let r = 0; r < rm; r++) {
    inner.push(`let a${r} = select(0.0, f32(src[base[${r}]]), ok[${r}]);`);
  }
  for (let r = 0; r < rm; r++) inner.push(`base[${r}] += hsws;`);
  for (let j = 0; j < cn4; j++) inner.push(`let b${j} = wt[wi + ${j}u];`);
  for (const [r, j] of block(rm, cn4)) inner.push(`acc${r}_${j} += a${r} * b${j};`);
  return kernelHeader(CONV) + expand(convSrc, {
    "acc-decl": block(rm, cn4).map(([r, j]) => `var acc${r}_${j}: vec4<f32>;`),
    "inner": inner,
    "acc-gather": block(rm, cn4).map(([r, j]) => `acc[${r * cn4 + j}] = acc${r}_${j};`),
  });
}

/** conv2d_wgrad.wgsl with its pixel loop unrolled over RO x CI channels. */
function wgradKernel(ro: number, ci: number): string {
  const inner: string[] = [];
  for (let j = 0; j < ci; j++) inner.push(`let a${j} = f32(x[xRow[${j}] + xi]);`);
  for (let r = 0; r < ro; r++) inner.push(`let g${r} = f32(dy[gRow[${r}] + gi]);`);
  for (const [r, j] of block(ro, ci)) inner.push(`acc${r}_${j} += g${r} * a${j};`);
  return kernelHeader(WGRAD) + expand(wgradSrc, {
    "acc-decl": block(ro, ci).map(([r, j]) => `var acc${r}_${j} = 0.0;`),
    "inner": inner,
    "acc-gather": block(ro, ci).map(([r, j]) => `acc[${r * ci + j}] = acc${r}_${j};`),
  });
}

/** Check the arguments of a convolution and resolve its sizes. */
export function convDims(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null | undefined,
  opts: Conv2dOptions = {},
): ConvDims {
  const op = "conv2d";
  const stride = opts.stride ?? 1;
  const p = opts.padding ?? 0;
  const pad: ConvPadding = typeof p === "number" ? [p, p, p, p] : [...p];
  const detail = () =>
    `x ${fmt(x)}, weight ${fmt(weight)}${bias ? `, bias ${fmt(bias)}` : ""}, ` +
    `stride ${stride}, padding ${typeof p === "number" ? p : `[${p}]`}`;
  check(x.rank === 4, op, () => `x must be NCHW (4-D): ${detail()}`);
  check(weight.rank === 4, op, () => `weight must be [Cout, Cin, kh, kw] (4-D): ${detail()}`);
  check(
    x.dtype === weight.dtype || mixed(x, weight),
    op,
    () => `dtypes differ (an f32 weight may meet f16 x, no other mix): ${detail()}`,
  );
  const [n, cin, h, w] = x.shape;
  const [cout, wcin, kh, kw] = weight.shape;
  check(
    wcin === cin,
    op,
    () => `channel mismatch: x has ${cin}, weight expects ${wcin}: ${detail()}`,
  );
  if (bias) {
    check(
      bias.rank === 1 && bias.shape[0] === cout && bias.dtype === x.dtype,
      op,
      () => `bias must be [${cout}] ${x.dtype}: ${detail()}`,
    );
  }
  check(
    Number.isInteger(stride) && stride >= 1 && pad.length === 4 &&
      pad.every((v) => Number.isInteger(v) && v >= 0),
    op,
    () =>
      `stride must be a positive integer and padding a non-negative integer or four of them: ` +
      detail(),
  );
  const [top, bottom, left, right] = pad;
  const ho = Math.floor((h + top + bottom - kh) / stride) + 1;
  const wo = Math.floor((w + left + right - kw) / stride) + 1;
  check(ho >= 1 && wo >= 1, op, () => `kernel larger than the padded input: ${detail()}`);
  return { n, cin, cout, h, w, kh, kw, ho, wo, stride, pad };
}

function roundUp(v: number, m: number): number {
  return Math.ceil(v / m) * m;
}

/** Channel block of the main kernel: wide for wide layers, narrow for the LoRA ranks. */
function channelBlock(cd: number): number {
  return cd >= 8 ? 8 : 4;
}

/** Repack `weight` as the f32 `[tap][a][bPad]` GEMM operand (mode 0: a=cin; mode 1: a=cout). */
function packWeight(weight: Tensor, d: ConvDims, mode: 0 | 1, nbPad: number): Tensor {
  const taps = d.kh * d.kw;
  const na = mode === 0 ? d.cin : d.cout;
  const nb = mode === 0 ? d.cout : d.cin;
  const sa = mode === 0 ? taps : d.cin * taps;
  const sb = mode === 0 ? d.cin * taps : taps;
  const total = taps * na * nbPad;
  const out = Tensor.empty([total], "f32");
  const u = uniforms().u(total, na, nb, nbPad, sa, sb, taps, 0);
  const pack = specKernel("conv2d_pack", PACK, weight.dtype, { WG: WG_PACK });
  rt().dispatch(pack, [weight.buffer, out.buffer], u, grid(total, WG_PACK));
  return out;
}

/**
 * The packed operand of `weight`: kept on the weight's storage when the weight is constant (the
 * cache goes when the weight does), else a fresh tensor the caller disposes.
 */
function packedWeight(weight: Tensor, d: ConvDims, mode: 0 | 1, nbPad: number): Tensor {
  const st = weight.storage;
  if (!st.constant) return packWeight(weight, d, mode, nbPad);
  const key = `conv2d_pack|${mode}|${nbPad}|${d.kh}x${d.kw}`;
  let t = st.derived?.get(key);
  if (!t) {
    t = noGrad(() => packWeight(weight, d, mode, nbPad)).keep();
    (st.derived ??= new Map()).set(key, t);
  }
  return t;
}

export { pointwise };

/**
 * A pointwise pass as one batched GEMM per image, with the weight shared (no packing): forward
 * y = W[cout, cin] · x[cin, hw]; input gradient dx = Wᵀ · dy[cout, hw].
 */
function pointwiseConv(
  src: Tensor,
  weight: Tensor,
  d: ConvDims,
  mode: 0 | 1,
  ep: Epilogue,
): Tensor {
  const fwd = mode === 0;
  const hw = d.h * d.w;
  const [M, K] = fwd ? [d.cout, d.cin] : [d.cin, d.cout];
  return gemm({
    a: weight,
    b: src,
    M,
    N: hw,
    K,
    transA: !fwd,
    transB: false,
    batch: d.n,
    nRed: 1,
    aOut: 0,
    bOut: K * hw,
    aRed: 0,
    bRed: 0,
    alpha: ep.alpha,
    residual: ep.residual,
    outShape: [d.n, M, d.h, d.w],
  });
}

/** One implicit-GEMM pass: forward (mode 0, src = x) or grad input (mode 1, src = dy). */
function tapConv(
  src: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  d: ConvDims,
  mode: 0 | 1,
  ep: Epilogue = PLAIN,
): Tensor {
  if (kernelFamily() === "hardware") return tiledConv(src, weight, bias, d, mode, ep);
  if (pointwise(d) && !bias) return pointwiseConv(src, weight, d, mode, ep);
  const cs = mode === 0 ? d.cin : d.cout;
  const cd = mode === 0 ? d.cout : d.cin;
  const [hs, ws, hd, wd] = mode === 0 ? [d.h, d.w, d.ho, d.wo] : [d.ho, d.wo, d.h, d.w];
  const out = Tensor.empty([d.n, cd, hd, wd], src.dtype);
  const m = d.n * hd * wd;
  if (m === 0 || cd === 0) return out;
  const cn = channelBlock(cd);
  const cdPad = roundUp(cd, cn);
  const wt = packedWeight(weight, d, mode, cdPad);
  const gx = Math.ceil(m / (WG * RM));
  check(gx <= 65535, "conv2d", () => `too many output pixels (${m}) for one launch`);
  const u = uniforms().u(cs, cd, cdPad, m, hs, ws, hd, wd)
    .u(d.kw, d.kh * d.kw, d.stride, d.pad[0], d.pad[2], bias ? 1 : 0).f(ep.alpha).u(0);
  const res = ep.residual;
  const key = `conv2d|${src.dtype}|${RM}|${cn}|${WG}|${mode}|${res !== null}`;
  const kernel = rt().kernel(key, () => {
    const code = specialize(convKernel(RM, cn / 4), src.dtype, { RM, CN: cn, WG, MODE: mode });
    return res ? withResidualStore(code, 4, "dst", "o") : code;
  });
  // Without a bias the binding still needs a read-only buffer; the kernel never uses its values.
  const b = bias ? bias.buffer : src.buffer;
  const flops = 2 * m * cd * cs * d.kh * d.kw;
  const buffers = [src.buffer, wt.buffer, b, out.buffer];
  if (res) buffers.push(res.buffer);
  rt().dispatch(kernel, buffers, u, [gx, cdPad / cn], flops);
  if (!weight.storage.constant) wt.dispose();
  return out;
}

/** Convolution forward without autograd: `[N, Cout, Ho, Wo]`. */
export function conv2dRaw(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  opts: Conv2dOptions = {},
): Tensor {
  const d = convDims(x, weight, bias, opts);
  return withWeight(x, weight, d, bias, (w) => tapConv(x, w, bias, d, 0));
}

/**
 * Gradient of a convolution with respect to its input (a transposed convolution); an f32 weight
 * with f16 dy is read as f16.
 */
export function conv2dGradInput(dy: Tensor, weight: Tensor, d: ConvDims): Tensor {
  check(
    dy.shape.join() === [d.n, d.cout, d.ho, d.wo].join() &&
      (dy.dtype === weight.dtype || mixed(dy, weight)),
    "conv2dGradInput",
    () => `dy ${fmt(dy)} does not match [${d.n},${d.cout},${d.ho},${d.wo}] ${weight.dtype}`,
  );
  return withWeight(dy, weight, d, null, (w) => tapConv(dy, w, null, d, 1));
}

/**
 * Gradient of a convolution with respect to its weight: `[Cout, Cin, kh, kw]`, in x's dtype or
 * `outDtype`: f32 for an f32 weight under f16 data, the f16 gradient widened (as a cast would).
 */
export function conv2dGradWeight(
  x: Tensor,
  dy: Tensor,
  d: ConvDims,
  outDtype: Tensor["dtype"] = x.dtype,
): Tensor {
  check(
    dy.shape.join() === [d.n, d.cout, d.ho, d.wo].join() && dy.dtype === x.dtype,
    "conv2dGradWeight",
    () => `dy ${fmt(dy)} does not match [${d.n},${d.cout},${d.ho},${d.wo}] ${x.dtype}`,
  );
  if (kernelFamily() === "hardware") return tiledConvGradWeight(x, dy, d, outDtype);
  if (outDtype !== x.dtype && !pointwise(d)) {
    const dw = conv2dGradWeight(x, dy, d);
    const wide = castRaw(dw, outDtype);
    dw.dispose();
    return wide;
  }
  if (pointwise(d)) {
    // dw[cout, cin] = sum over images of dy[cout, hw] · x[cin, hw]ᵀ, the sum inside the GEMM.
    const hw = d.h * d.w;
    return gemm({
      a: dy,
      b: x,
      M: d.cout,
      N: d.cin,
      K: hw,
      transA: false,
      transB: true,
      batch: 1,
      nRed: d.n,
      aOut: 0,
      bOut: 0,
      aRed: d.cout * hw,
      bRed: d.cin * hw,
      outShape: [d.cout, d.cin, 1, 1],
      outDtype,
    });
  }
  const taps = d.kh * d.kw;
  const out = Tensor.empty([d.cout, d.cin, d.kh, d.kw], x.dtype);
  if (out.size === 0) return out;
  const wg = Math.min(WG_WGRAD, roundUp(Math.ceil(d.cin / CI), 8));
  const u = uniforms().u(d.cin, d.cout, d.h, d.w, d.ho, d.wo, d.n, d.kw)
    .u(taps, d.stride, d.pad[0], d.pad[2]);
  const key = `conv2d_wgrad|${x.dtype}|${RO}|${CI}|${wg}`;
  const kernel = rt().kernel(
    key,
    () => specialize(wgradKernel(RO, CI), x.dtype, { RO, CI, WG: wg }),
  );
  const flops = 2 * d.n * d.ho * d.wo * d.cout * d.cin * taps;
  const groups: [number, number, number] = [
    Math.ceil(d.cin / (wg * CI)),
    Math.ceil(d.cout / RO),
    taps,
  ];
  rt().dispatch(kernel, [x.buffer, dy.buffer, out.buffer], u, groups, flops);
  return out;
}

/**
 * 2-D convolution, NCHW: `x [N, Cin, H, W]`, `weight [Cout, Cin, kh, kw]`, optional
 * `bias [Cout]`, zero padding (symmetric or per side); returns `[N, Cout, Ho, Wo]`.
 * Differentiable in all three.
 */
export function conv2d(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  opts: Conv2dOptions = {},
): Tensor {
  const d = convDims(x, weight, bias, opts);
  // A mixed-precision weight outside the GEMM passes: the f16 copy, as autocast would make it.
  if (mixed(x, weight) && !gemmPasses(d, bias)) return conv2d(x, cast(weight, x.dtype), bias, opts);
  const alpha = opts.alpha ?? 1, residual = opts.residual ?? null;
  check(
    !residual || (residual.shape.join() === [d.n, d.cout, d.ho, d.wo].join() &&
      residual.dtype === x.dtype),
    "conv2d",
    () => `residual ${residual ? fmt(residual) : ""} must be [${d.n},${d.cout},${d.ho},${d.wo}]`,
  );
  const y = tapConv(x, weight, bias, d, 0, { alpha, residual });
  const inputs = bias ? [x, weight, bias] : [x, weight];
  if (residual) inputs.push(residual);
  return record("conv2d", inputs, y, [x, weight], (g, [sx, sw]) => {
    // The scale applies to the convolution's gradients only, once, to the incoming gradient.
    const gc = alpha === 1 ? g : unaryRaw(UN_FWD.scale, g, null, alpha);
    const grads = [
      x.requiresGrad ? conv2dGradInput(gc, sw, d) : null,
      weight.requiresGrad ? conv2dGradWeight(sx, gc, d, weight.dtype) : null,
    ];
    if (bias) grads.push(bias.requiresGrad ? reduceRaw(g, [0, 2, 3]) : null);
    if (residual) grads.push(residual.requiresGrad ? g.retain() : null);
    return grads;
  });
}
