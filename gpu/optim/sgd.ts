/**
 * SGDNesterov: torch.optim.SGD with momentum (0.9 unless given) and nesterov=True. Weight decay is
 * added to the gradient, as torch does; the momentum buffer is f32 and starts as a copy of the
 * first (decayed) gradient.
 *
 * @module
 */
import { SGD } from "./sources.ts";
import { fill } from "../ops/embedding.ts";
import { rt, uniforms } from "../runtime.ts";
import type { Tensor } from "../tensor.ts";
import { grid, specKernel } from "../wgsl.ts";
import {
  OptimizerError,
  type OptimizerState,
  type ParamGroup,
  StatefulOptimizer,
} from "./common.ts";

const WG = 256;

/** torch.optim.SGD's options (nesterov defaults to true here). */
export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** SGD with (Nesterov) momentum over parameter groups. */
export class SGDNesterov extends StatefulOptimizer<{ momentum_buffer: Tensor }> {
  readonly type = "SGDNesterov";
  readonly momentum: number;
  readonly dampening: number;
  readonly weightDecay: number;
  readonly nesterov: boolean;
  /** Parameters whose buffer has been seeded (torch's `momentum_buffer is None` test). */
  private seeded = new Set<Tensor>();

  constructor(groups: ParamGroup[] | Tensor[], opts: SGDOptions) {
    super(groups, opts.lr);
    this.momentum = opts.momentum ?? 0.9;
    this.dampening = opts.dampening ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
    this.nesterov = opts.nesterov ?? true;
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new OptimizerError(
        `SGDNesterov: Nesterov momentum requires momentum > 0 and dampening 0 ` +
          `(got momentum=${this.momentum}, dampening=${this.dampening})`,
      );
    }
  }

  protected initState(p: Tensor): { momentum_buffer: Tensor } {
    this.seeded.delete(p);
    return { momentum_buffer: fill(p.shape, 0, "f32").keep() };
  }

  protected apply(
    p: Tensor,
    s: { momentum_buffer: Tensor },
    lr: number,
    gscale: number,
    gs: GPUBuffer,
  ): void {
    const n = p.size;
    const first = this.seeded.has(p) ? 0 : 1;
    this.seeded.add(p);
    rt().dispatch(
      specKernel("sgd:sgdSrc", SGD, p.dtype, { WG }),
      [p.buffer, p.grad!.buffer, s.momentum_buffer.buffer, gs],
      uniforms().u(n).f(lr, this.momentum, this.dampening, this.weightDecay, gscale)
        .u(first, this.nesterov ? 1 : 0),
      grid(n, WG),
    );
  }

  /** Imported buffers are seeded: the next step continues them, as torch's loaded state does. */
  override importState(state: OptimizerState): void {
    super.importState(state);
    this.seeded = new Set(this.state.keys());
  }
}
