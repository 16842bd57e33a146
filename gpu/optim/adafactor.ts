/**
 * Adafactor as transformers.optimization.Adafactor implements it: factored second moments for
 * parameters of rank >= 2 (row and column means of g^2 + eps1, reduced on the GPU), RMS clipping
 * of the update with `clipThreshold`, relative step sizes (min(1e-2, 1/sqrt(t)), or
 * min(1e-6 t, 1/sqrt(t)) with warmup_init), parameter-scale scaling by max(eps2, rms(p)), an
 * optional first moment (beta1) and weight decay. The RMS values stay on the GPU: the update
 * never waits for the host.
 *
 * With relativeStep (the default) there is no learning rate: the group lrs and `lrScale` are
 * ignored, as transformers requires lr=None; the lr a training loop reports for it is
 * transformers' own (`reportedLr`).
 *
 * @module
 */
import { ADAFACTOR } from "./sources.ts";
import { fill } from "../ops/embedding.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grid, specKernel } from "../wgsl.ts";
import { OptimizerError, type ParamGroup, StatefulOptimizer } from "./common.ts";
import { encodeSumFinal, encodeSumsq, MAX_PARTS, partsFor } from "./reduce.ts";

const WG = 256;

/** transformers' Adafactor arguments (same defaults). */
export interface AdafactorOptions {
  /** Must be null/absent with relativeStep; required without it. */
  lr?: number | null;
  /** (eps1 for the squared gradient, eps2 for the parameter scale): (1e-30, 1e-3). */
  eps?: [number, number];
  clipThreshold?: number;
  decayRate?: number;
  /** First-moment decay; null (default) keeps no first moment. */
  beta1?: number | null;
  weightDecay?: number;
  scaleParameter?: boolean;
  relativeStep?: boolean;
  warmupInit?: boolean;
}

/** [B, R, C] view of a parameter of rank >= 2 (null: not factored). */
function factoredShape(shape: number[]): [number, number, number] | null {
  if (shape.length < 2) return null;
  const b = shape.slice(0, -2).reduce((a, d) => a * d, 1);
  return [b, shape[shape.length - 2], shape[shape.length - 1]];
}

/** Adafactor over parameter groups. */
export class Adafactor extends StatefulOptimizer<Record<string, Tensor>> {
  readonly type = "Adafactor";
  readonly eps: [number, number];
  readonly clipThreshold: number;
  readonly decayRate: number;
  readonly beta1: number | null;
  readonly weightDecay: number;
  readonly scaleParameter: boolean;
  readonly relativeStep: boolean;
  readonly warmupInit: boolean;
  private scratch:
    | { partials: Tensor; sc: Tensor; mean: Tensor; dummy: Tensor; rms0: Tensor }
    | null = null;

  constructor(groups: ParamGroup[] | Tensor[], opts: AdafactorOptions = {}) {
    const relativeStep = opts.relativeStep ?? true;
    const lr = opts.lr ?? null;
    if (lr !== null && relativeStep) {
      throw new OptimizerError("Adafactor: cannot combine a manual lr and relative_step=True");
    }
    if (opts.warmupInit && !relativeStep) {
      throw new OptimizerError("Adafactor: warmup_init=True requires relative_step=True");
    }
    if (lr === null && !relativeStep) {
      throw new OptimizerError("Adafactor: relative_step=False needs a learning rate");
    }
    super(groups, lr ?? 0);
    this.eps = opts.eps ?? [1e-30, 1e-3];
    this.clipThreshold = opts.clipThreshold ?? 1.0;
    this.decayRate = opts.decayRate ?? -0.8;
    this.beta1 = opts.beta1 ?? null;
    this.weightDecay = opts.weightDecay ?? 0;
    this.scaleParameter = opts.scaleParameter ?? true;
    this.relativeStep = relativeStep;
    this.warmupInit = opts.warmupInit ?? false;
  }

  /** The step size before parameter scaling (transformers' `rel_step_sz`). */
  relStepSize(groupLr: number): number {
    if (!this.relativeStep) return groupLr;
    const minStep = this.warmupInit ? 1e-6 * this.step : 1e-2;
    return Math.min(minStep, 1 / Math.sqrt(this.step));
  }

  protected initState(p: Tensor): Record<string, Tensor> {
    const s: Record<string, Tensor> = {};
    const f = factoredShape(p.shape);
    if (f) {
      s.exp_avg_sq_row = fill(p.shape.slice(0, -1), 0, "f32").keep();
      s.exp_avg_sq_col = fill([...p.shape.slice(0, -2), p.shape[p.rank - 1]], 0, "f32").keep();
    } else {
      s.exp_avg_sq = fill(p.shape, 0, "f32").keep();
    }
    if (this.beta1 !== null) s.exp_avg = fill(p.shape, 0, "f32").keep();
    return s;
  }

  private scratchFor(b: number): NonNullable<Adafactor["scratch"]> {
    if (!this.scratch || this.scratch.mean.size < b) {
      this.disposeScratch();
      this.scratch = {
        partials: Tensor.empty([MAX_PARTS]).keep(),
        sc: Tensor.empty([2]).keep(),
        mean: Tensor.empty([Math.max(b, 1)]).keep(),
        dummy: Tensor.empty([1]).keep(),
        rms0: Tensor.zeros([1]).keep(),
      };
    }
    return this.scratch;
  }

  protected apply(
    p: Tensor,
    s: Record<string, Tensor>,
    lr: number,
    gscale: number,
    gs: GPUBuffer,
  ): void {
    const n = p.size;
    const f = factoredShape(p.shape);
    const [B, R, C] = f ?? [1, 1, n];
    const sc = this.scratchFor(B);
    const pipe = (entry: string) => specKernel("adafactor", ADAFACTOR, p.dtype, { WG }, entry);
    const beta2t = 1 - this.step ** this.decayRate;
    const u = uniforms().u(n, B, R, C).f(beta2t, this.eps[0], gscale, this.clipThreshold)
      .f(this.relStepSize(lr), this.eps[1]).u(
        this.scaleParameter ? 1 : 0,
        this.beta1 !== null ? 1 : 0,
      )
      .f(this.beta1 ?? 0, this.weightDecay).u(0, 0);
    const g = p.grad!.buffer;
    // rms(p) of the parameter before this step, as transformers takes it.
    encodeSumFinal(sc.partials, encodeSumsq(p, sc.partials, 0), sc.sc, 0);
    if (p === this.groups[0].params[0]) rt().copy(sc.sc.buffer, 0, sc.rms0.buffer, 0, 4);
    const parts = partsFor(n);
    const m = s.exp_avg ?? sc.dummy;
    if (f) {
      const row = s.exp_avg_sq_row, col = s.exp_avg_sq_col;
      rt().dispatch(pipe("rows"), [g, gs, row.buffer], u, grid(B * R, 1));
      rt().dispatch(pipe("cols"), [g, gs, col.buffer], u, grid(B * C, WG));
      rt().dispatch(pipe("rowmean"), [row.buffer, sc.mean.buffer], u, grid(B, WG));
      rt().dispatch(
        pipe("fsumsq"),
        [g, gs, row.buffer, col.buffer, sc.mean.buffer, sc.partials.buffer],
        u,
        [parts],
      );
      encodeSumFinal(sc.partials, parts, sc.sc, 1);
      rt().dispatch(
        pipe("apply_f"),
        [p.buffer, g, gs, row.buffer, col.buffer, sc.mean.buffer, m.buffer, sc.sc.buffer],
        u,
        grid(n, WG),
      );
    } else {
      const v = s.exp_avg_sq;
      rt().dispatch(pipe("vsumsq"), [g, gs, v.buffer, sc.partials.buffer], u, [parts]);
      encodeSumFinal(sc.partials, parts, sc.sc, 1);
      rt().dispatch(
        pipe("apply_v"),
        [p.buffer, g, gs, v.buffer, m.buffer, sc.sc.buffer],
        u,
        grid(n, WG),
      );
    }
  }

  /**
   * The lr transformers' `AdafactorSchedule` reports: transformers' `_get_lr` for the first
   * parameter at the last step (its RMS is kept on the GPU; this reads one float back).
   */
  async reportedLr(): Promise<number> {
    const rel = this.relStepSize(this.groups[0]?.lr ?? 0);
    if (!this.scaleParameter) return rel;
    const p = this.groups[0]?.params[0];
    const sumsq = this.scratch ? await this.scratch.rms0.item() : 0;
    const rms = p ? Math.sqrt(sumsq / p.size) : 0;
    return rel * Math.max(this.eps[1], rms);
  }

  private disposeScratch(): void {
    if (!this.scratch) return;
    for (const t of Object.values(this.scratch)) t.dispose();
    this.scratch = null;
  }

  override dispose(): void {
    super.dispose();
    this.disposeScratch();
  }
}
