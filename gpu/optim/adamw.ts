/**
 * AdamW with one fused kernel per few parameter tensors: moments in f32, bias correction, decoupled
 * weight decay, and an optional gradient scale (for clipping / loss-scale removal) folded in,
 * as a host number and/or a GPU scalar.
 *
 * @module
 */
import { ADAM } from "./sources.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grid, specKernel } from "../wgsl.ts";
import { fill } from "../ops/embedding.ts";
import { adamMulti } from "./multi_tensor.ts";
import {
  exportStates,
  importStates,
  type Optimizer,
  type OptimizerState,
  type ParamGroup,
  ScaleSlot,
  type UpdateOptions,
} from "./common.ts";

export type { ParamGroup };

const WG = 256;

/** Options as torch.optim.AdamW names them. */
export interface AdamWOptions {
  lr: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** Scalars of one Adam step (bias corrections bc1 = 1 - b1^t, bc2 = 1 - b2^t). */
export interface AdamStep {
  lr: number;
  b1: number;
  b2: number;
  eps: number;
  wd: number;
  bc1: number;
  bc2: number;
  gscale: number;
  /** bitsandbytes' ordering (weight decay after the update) instead of torch's. */
  bnb: boolean;
}

/** Encode the fused Adam kernel for one parameter with f32 moments `m`, `v`. */
export function adamKernel(p: Tensor, m: Tensor, v: Tensor, gs: GPUBuffer, s: AdamStep): void {
  if (!p.grad) return;
  const n = p.size;
  rt().dispatch(
    specKernel("adamw:adamSrc", ADAM, p.dtype, { WG, BNB: s.bnb ? 1 : 0 }),
    [p.buffer, p.grad.buffer, m.buffer, v.buffer, gs],
    uniforms().u(n).f(s.lr, s.b1, s.b2, s.eps, s.wd, s.bc1, s.bc2, s.gscale).u(0, 0, 0),
    grid(n, WG),
  );
}

/** AdamW over parameter groups; state (m, v) lives on the GPU. */
export class AdamW implements Optimizer {
  readonly type = "AdamW";
  readonly groups: ParamGroup[];
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  step = 0;
  private state = new Map<Tensor, { m: Tensor; v: Tensor }>();
  private scale = new ScaleSlot();

  constructor(groups: ParamGroup[] | Tensor[], opts: AdamWOptions) {
    this.groups = groups.length && groups[0] instanceof Tensor
      ? [{ params: groups as Tensor[], lr: opts.lr }]
      : (groups as ParamGroup[]);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  /**
   * One update of every parameter that has a gradient. `gradScale` (and `gradScaleTensor`, a GPU
   * scalar) multiply gradients first; `lrScale` multiplies every group's lr (schedulers).
   */
  update(opts: UpdateOptions = {}): void {
    this.step++;
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** this.step, bc2 = 1 - b2 ** this.step;
    const gs = this.scale.buffer(opts);
    for (const group of this.groups) {
      const lr = group.lr * (opts.lrScale ?? 1);
      const items: { p: Tensor; m: Tensor; v: Tensor }[] = [];
      for (const p of group.params) {
        if (!p.grad) continue;
        let s = this.state.get(p);
        if (!s) {
          s = { m: fill(p.shape, 0, "f32").keep(), v: fill(p.shape, 0, "f32").keep() };
          this.state.set(p, s);
        }
        items.push({ p, m: s.m, v: s.v });
      }
      // The group's tensors a few per dispatch (bit-identical to one adamKernel per tensor).
      const gscale = opts.gradScale ?? 1;
      adamMulti(items, gs, { lr, b1, b2, eps: this.eps, wd: this.weightDecay, bc1, bc2, gscale });
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

  /** Step count and moments on the host (for a saved training state). */
  exportState(): Promise<OptimizerState> {
    return exportStates(this.type, this.step, this.groups, (p) => this.state.get(p));
  }

  /** Restore an exported state (to resume training): same parameters, same shapes. */
  importState(state: OptimizerState): void {
    const fresh = importStates(this.type, this.groups, state, (p) => ({
      m: fill(p.shape, 0, "f32").keep(),
      v: fill(p.shape, 0, "f32").keep(),
    }));
    this.disposeMoments();
    this.state = fresh;
    this.step = state.step;
  }

  private disposeMoments(): void {
    for (const s of this.state.values()) {
      s.m.dispose();
      s.v.dispose();
    }
    this.state.clear();
  }

  /** Release the optimizer state. */
  dispose(): void {
    this.disposeMoments();
    this.scale.dispose();
  }
}
