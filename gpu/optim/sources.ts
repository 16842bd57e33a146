/**
 * The optimizer kernels' WGSL: each shader body with its generated header (kernel_header.ts) and
 * the helper snippets it uses, as builders that `specKernel` calls on a kernel's first lookup.
 *
 * @module
 */
import adamSrc from "../../shaders/optim_adam.wgsl" with { type: "text" };
import lionSrc from "../../shaders/optim_lion.wgsl" with { type: "text" };
import sgdSrc from "../../shaders/optim_sgd.wgsl" with { type: "text" };
import gradSrc from "../../shaders/optim_grad.wgsl" with { type: "text" };
import src8 from "../../shaders/optim_adamw8bit.wgsl" with { type: "text" };
import quantSrc from "../../shaders/quant_search.wgsl" with { type: "text" };
import scaleSrc from "../../shaders/optim_loss_scale.wgsl" with { type: "text" };
import reduceSrc from "../../shaders/optim_reduce.wgsl" with { type: "text" };
import afSrc from "../../shaders/optim_adafactor.wgsl" with { type: "text" };
import wgSumSrc from "../../shaders/wg_sum.wgsl" with { type: "text" };
import { fillHeaders, headed, wgslBindings, wgslStruct, withHelpers } from "../kernel_header.ts";

/**
 * An elementwise step in place: bindings param and grad, the f32 state buffers `state`, then gs
 * (the gradient scale on the GPU); uniform fields `params`; scaledGrad and skipped from
 * shaders/optim_grad.wgsl.
 */
function step(state: string, params: string, body: string): () => string {
  return headed(
    { bindings: `param: rw T; grad: T; ${state}: rw f32; gs: f32`, params },
    body,
    gradSrc,
  );
}

/** Fused Adam(W) step (shaders/optim_adam.wgsl). */
export const ADAM = step(
  "m v",
  "n: u32; lr b1 b2 eps wd bc1 bc2 gscale: f32; pad0 pad1 pad2: u32",
  adamSrc,
);
/** Lion step (shaders/optim_lion.wgsl). */
export const LION = step("m", "n: u32; lr b1 b2 wd gscale: f32; pad0 pad1: u32", lionSrc);
/** SGD step (shaders/optim_sgd.wgsl). */
export const SGD = step(
  "buf",
  "n: u32; lr momentum dampening wd gscale: f32; first nesterov: u32",
  sgdSrc,
);

/**
 * Block-wise 8-bit AdamW (shaders/optim_adamw8bit.wgsl). qmap holds 512 entries: the signed map
 * for m, then the unsigned map for v; the search over each is a copy of quant_search.wgsl.
 */
export const ADAMW8BIT = headed(
  {
    bindings: "param: rw T; grad: T; q1 q2: rw u32; absmax1 absmax2: rw f32; qmap gs: f32",
    params: "n: u32; lr b1 b2 eps wd c2 stepSize gscale: f32; pad0 pad1 pad2: u32",
  },
  src8,
  quantSearch("quantSigned", "qs", "-1.0"),
  quantSearch("quantUnsigned", "qu", "0.0"),
);

function quantSearch(name: string, map: string, lowest: string): string {
  return quantSrc.replaceAll("QUANT", name).replaceAll("MAP", map).replaceAll("LOWEST", lowest);
}

/** The fp16 loss scaler's step (shaders/optim_loss_scale.wgsl). */
export const LOSS_SCALE = headed({
  bindings: "flag: u32; scale tracker norm gs rec: rw f32",
  params: "inScale growth backoff interval maxNorm: f32; clip pad0 pad1: u32",
}, scaleSrc);

/** The optimizers' reductions (shaders/optim_reduce.wgsl), one header per entry point. */
export const REDUCE = (): string => {
  const fin = "count slot: u32; maxNorm inScale: f32";
  return wgslStruct("SqParams", "n off: u32; scale: f32; pad0: u32") +
    wgslStruct("FinalParams", fin) + withHelpers(
      fillHeaders(reduceSrc, {
        sumsq: wgslBindings("sqX: T; sqOut: rw f32", "sq: SqParams"),
        sum_final: wgslBindings("fin: f32; finOut: rw f32", "fp: FinalParams"),
        clip_final: wgslBindings("cfin: f32; clipScale clipNorm: rw f32", "cp: FinalParams"),
      }),
      [wgSumSrc],
    );
};

/** Adafactor's passes (shaders/optim_adafactor.wgsl), one header per entry point. */
export const ADAFACTOR = (): string => {
  const params = "n B R C: u32; beta2t eps1 gscale clip relStep eps2: f32; scaleParam useM: u32; " +
    "beta1 wd: f32; pad0 pad1: u32";
  return wgslStruct("Params", params) + withHelpers(
    fillHeaders(afSrc, {
      rows: wgslBindings("rGrad: T; rGs: f32; rRow: rw f32", "rp: Params"),
      cols: wgslBindings("cGrad: T; cGs: f32; cCol: rw f32", "cp: Params"),
      rowmean: wgslBindings("mRow: f32; mMean: rw f32", "mp: Params"),
      fsumsq: wgslBindings("fGrad: T; fGs fRow fCol fMean: f32; fPart: rw f32", "fp: Params"),
      vsumsq: wgslBindings("vGrad: T; vGs: f32; vV vPart: rw f32", "vp: Params"),
      apply_f: wgslBindings(
        "aParam: rw T; aGrad: T; aGs aRow aCol aMean: f32; aM: rw f32; aSc: f32",
        "ap: Params",
      ),
      apply_v: wgslBindings(
        "bParam: rw T; bGrad: T; bGs bV: f32; bM: rw f32; bSc: f32",
        "bp: Params",
      ),
    }),
    [wgSumSrc],
  );
};
