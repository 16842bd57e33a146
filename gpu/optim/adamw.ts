/**
 * AdamW with one fused kernel per parameter tensor: moments in f32, bias correction, decoupled
 * weight decay, and an optional gradient scale (for clipping / loss-scale removal) folded in.
 *
 * @module
 */
import adamwSrc from "../../shaders/adamw.wgsl" with { type: "text" };
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grid, specialize } from "../wgsl.ts";
import { fill } from "../ops/embedding.ts";

const WG = 256;

/** Options as torch.optim.AdamW names them. */
export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** A parameter group: tensors sharing one learning rate (kohya's per-block groups). */
export interface ParamGroup {
  params: Tensor[];
  lr: number;
}

/** AdamW over parameter groups; state (m, v) lives on the GPU. */
export class AdamW {
  readonly groups: ParamGroup[];
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  step = 0;
  private state = new Map<Tensor, { m: Tensor; v: Tensor }>();

  constructor(groups: ParamGroup[] | Tensor[], opts: AdamWOptions) {
    this.groups = groups.length && groups[0] instanceof Tensor
      ? [{ params: groups as Tensor[], lr: opts.lr }]
      : (groups as ParamGroup[]);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  /**
   * One update of every parameter that has a gradient. `gradScale` multiplies gradients first;
   * `lrScale` multiplies every group's lr (schedulers).
   */
  update(opts: { gradScale?: number; lrScale?: number } = {}): void {
    this.step++;
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** this.step, bc2 = 1 - b2 ** this.step;
    for (const group of this.groups) {
      const lr = group.lr * (opts.lrScale ?? 1);
      for (const p of group.params) {
        if (!p.grad) continue;
        let s = this.state.get(p);
        if (!s) {
          s = { m: fill(p.shape, 0, "f32").keep(), v: fill(p.shape, 0, "f32").keep() };
          this.state.set(p, s);
        }
        const n = p.size;
        rt().dispatch(
          rt().pipeline(specialize(adamwSrc, p.dtype, { WG })),
          [p.buffer, p.grad.buffer, s.m.buffer, s.v.buffer],
          uniforms().u(n).f(lr, b1, b2, this.eps, this.weightDecay, bc1, bc2, opts.gradScale ?? 1)
            .u(0, 0, 0),
          grid(n, WG),
        );
      }
    }
  }

  /** Drop every parameter's gradient. */
  zeroGrad(): void {
    for (const g of this.groups) {
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** The moment tensors of a parameter (for saving state). */
  stateOf(p: Tensor): { m: Tensor; v: Tensor } | undefined {
    return this.state.get(p);
  }

  /** Release the optimizer state. */
  dispose(): void {
    for (const s of this.state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.state.clear();
  }
}
