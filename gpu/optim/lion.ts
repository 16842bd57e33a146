/**
 * Lion (lion-pytorch): the sign of an interpolation of momentum and gradient as the update,
 * decoupled weight decay (p *= 1 - lr*wd), one f32 momentum per parameter. Defaults as
 * lion_pytorch.Lion: lr 1e-4, betas (0.9, 0.99), weight decay 0.
 *
 * @module
 */
import { LION } from "./sources.ts";
import { fill } from "../ops/embedding.ts";
import { rt, uniforms } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";
import { grid, specKernel } from "../wgsl.ts";
import { type ParamGroup, StatefulOptimizer } from "./common.ts";

const WG = 256;

/** lion_pytorch.Lion's options. */
export interface LionOptions {
  lr: number;
  betas?: [number, number];
  weightDecay?: number;
}

/** Lion over parameter groups. */
export class Lion extends StatefulOptimizer<{ exp_avg: Tensor }> {
  readonly type = "Lion";
  readonly betas: [number, number];
  readonly weightDecay: number;

  constructor(groups: ParamGroup[] | Tensor[], opts: LionOptions) {
    super(groups, opts.lr);
    this.betas = opts.betas ?? [0.9, 0.99];
    this.weightDecay = opts.weightDecay ?? 0;
  }

  protected initState(p: Tensor): { exp_avg: Tensor } {
    return { exp_avg: fill(p.shape, 0, "f32").keep() };
  }

  protected apply(
    p: Tensor,
    s: { exp_avg: Tensor },
    lr: number,
    gscale: number,
    gs: GPUBuffer,
  ): void {
    const n = p.size;
    rt().dispatch(
      specKernel("lion:lionSrc", LION, p.dtype, { WG }),
      [p.buffer, p.grad!.buffer, s.exp_avg.buffer, gs],
      uniforms().u(n).f(lr, this.betas[0], this.betas[1], this.weightDecay, gscale).u(0, 0),
      grid(n, WG),
    );
  }
}
