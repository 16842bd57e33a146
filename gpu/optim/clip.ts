/**
 * `clipGradNorm`: torch.nn.utils.clip_grad_norm_ without a host read-back. The global L2 norm of
 * all gradients is reduced on the GPU (partial sums per tensor, then one sum) and the clipping
 * factor min(1, maxNorm / (norm + 1e-6)) stays on the GPU as a 1-element tensor that the
 * optimizers read as `gradScaleTensor`; gradients are not rewritten. The norm is read back only
 * when the caller asks (logging).
 *
 * @module
 */
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { partsFor, reduceKernel } from "./reduce.ts";
import { sumsqMulti } from "./multi_tensor.ts";

/** The result of `clipGradNorm`: GPU scalars, released by `dispose()`. */
export class GradNorm {
  constructor(
    /** [1] f32: the factor to pass as `gradScaleTensor` (includes `inScale`). */
    readonly scale: Tensor,
    /** [1] f32: the global norm of the (unscaled) gradients. */
    readonly norm: Tensor,
  ) {}

  /** Read the norm back (waits for the GPU; call only when logging). */
  async read(): Promise<number> {
    return await this.norm.item();
  }

  /** Read the clipping factor back (tests, logging). */
  async readScale(): Promise<number> {
    return await this.scale.item();
  }

  dispose(): void {
    this.scale.dispose();
    this.norm.dispose();
  }
}

/**
 * The global L2 norm of the gradients of `params` (those without a gradient are skipped) and the
 * clipping factor for `maxNorm`. `inScale` multiplies every gradient first (1 / loss scale with
 * fp16 loss scaling: the norm is then that of the unscaled gradients, and the factor includes
 * the unscaling). `nonfiniteFlag`: the same pass over the gradients sets this u32 word to 1 when
 * any of them holds an inf or NaN (`nonfiniteMulti`, for the fp16 loss scaler).
 */
export function clipGradNorm(
  params: Tensor[],
  maxNorm: number,
  opts: { inScale?: number; nonfiniteFlag?: Tensor } = {},
): GradNorm {
  const inScale = opts.inScale ?? 1;
  const withGrad = params.filter((p) => p.grad);
  const total = withGrad.reduce((a, p) => a + partsFor(p.size), 0);
  const partials = Tensor.empty([Math.max(1, total)]);
  const grads = withGrad.map((p) => p.grad!);
  const off = sumsqMulti(grads, partials, 0, inScale, opts.nonfiniteFlag);
  const scale = Tensor.empty([1]), norm = Tensor.empty([1]);
  rt().dispatch(
    reduceKernel("f32", "clip_final"),
    [partials.buffer, scale.buffer, norm.buffer],
    uniforms().u(off, 0).f(maxNorm, inScale),
    [1],
  );
  partials.dispose();
  return new GradNorm(scale, norm);
}
