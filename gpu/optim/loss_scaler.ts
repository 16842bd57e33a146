/**
 * Dynamic loss scaling for fp16 training, as torch.cuda.amp.GradScaler does it: the loss is
 * multiplied by `scale` before backward; after backward, one GPU pass over the gradients sets a
 * flag when any value is inf or NaN; an overflowed step is skipped and the scale multiplied by
 * `backoffFactor`; after `growthInterval` clean steps in a row it is multiplied by `growthFactor`.
 *
 * The whole decision stays on the GPU, so a step never waits for a read-back: the scale lives in
 * a one-element tensor (multiply the loss by {@link LossScaler.scaleTensor}); one small kernel
 * turns the overflow flag into the optimizers' gradient scale (1 / scale, times the clipping
 * factor; -1, which every optimizer kernel reads as "skip", on overflow) and advances the scale.
 * The host learns each step's outcome a step later, from a read it never waits on in the steady
 * state, and only then knows whether the optimizer's step count (its bias corrections) must
 * forget a skipped step — before the next update, as torch's count does. {@link settle} waits
 * for every outcome (before a state is saved, and at the end).
 *
 * @module
 */
import { LOSS_SCALE } from "./sources.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { specKernel } from "../wgsl.ts";
import { clipGradNorm, type GradNorm } from "./clip.ts";
import type { Optimizer, UpdateOptions } from "./common.ts";
import { nonfiniteMulti } from "./multi_tensor.ts";

/** GradScaler's options (same defaults). */
export interface LossScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
}

/** What `LossScaler.step` encoded. */
export interface ScaledStep {
  /** The clipping result, when `maxNorm` was given (caller disposes): its `scale` is the
   * optimizers' gradient scale, its `norm` that of the unscaled gradients. */
  clip?: GradNorm;
}

/** One step's outcome as the GPU recorded it. */
interface Outcome {
  overflowed: boolean;
  scaleUsed: number;
  scale: number;
  tracker: number;
}

/** Dynamic loss scaler; its state is on the GPU, mirrored on the host a step late. */
export class LossScaler {
  /** The scale after the last step whose outcome has arrived (exact after `settle()`). */
  scale: number;
  /** Clean steps since the last growth or backoff, as of the same step. */
  growthTracker = 0;
  /** Steps skipped because a gradient overflowed, as of the same step. */
  skippedSteps = 0;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  #scaleT: Tensor;
  #trackerT: Tensor;
  #noNorm: Tensor;
  #pending: { outcome: Promise<Outcome>; optimizer: Optimizer }[] = [];
  /** The loss scale of each step taken, in order, as the GPU used it (tests, logging). */
  readonly history: { overflowed: boolean; scale: number }[] = [];

  constructor(opts: LossScalerOptions = {}) {
    this.scale = opts.initScale ?? 65536;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    this.#scaleT = Tensor.full([1], this.scale).keep();
    this.#trackerT = Tensor.zeros([1]).keep();
    this.#noNorm = Tensor.zeros([1]).keep();
  }

  /** [1] f32 on the GPU: the scale the next step's loss is to be multiplied by. */
  get scaleTensor(): Tensor {
    return this.#scaleT;
  }

  /** Set the scale and the growth tracker (a resumed run); no step may be pending. */
  setState(scale: number, growthTracker: number): void {
    if (this.#pending.length > 0) throw new Error("LossScaler.setState with steps pending");
    this.scale = scale;
    this.growthTracker = growthTracker;
    rt().write(this.#scaleT.buffer, 0, new Float32Array([scale]));
    rt().write(this.#trackerT.buffer, 0, new Float32Array([growthTracker]));
  }

  /**
   * Encode one step: the overflow check of the gradients, the unscaling (and, with `maxNorm`,
   * the clip factor of the unscaled gradients) folded into the optimizer's gradient scale, the
   * optimizer's update (skipped on the GPU on overflow), and the scale's update. Waits only for
   * the outcome of the step before, which the GPU has normally finished by now.
   */
  async step(
    optimizer: Optimizer,
    opts: UpdateOptions & { maxNorm?: number } = {},
  ): Promise<ScaledStep> {
    await this.#resolve(0);
    const params = optimizer.groups.flatMap((g) => g.params);
    const flag = Tensor.zeros([1]);
    const clipping = opts.maxNorm !== undefined && opts.maxNorm > 0;
    // With clipping, the norm's pass over the gradients also checks them for overflow.
    const clip = clipping
      ? clipGradNorm(params, opts.maxNorm!, { nonfiniteFlag: flag })
      : undefined;
    if (!clip) nonfiniteMulti(params.flatMap((p) => (p.grad ? [p.grad] : [])), flag);
    const gs = clip?.scale ?? Tensor.empty([1]);
    const rec = Tensor.empty([4]);
    rt().dispatch(
      specKernel("optim_loss_scale", LOSS_SCALE, "f32"),
      [
        flag.buffer,
        this.#scaleT.buffer,
        this.#trackerT.buffer,
        (clip?.norm ?? this.#noNorm).buffer,
        gs.buffer,
        rec.buffer,
      ],
      uniforms()
        .f(opts.gradScale ?? 1, this.growthFactor, this.backoffFactor, this.growthInterval)
        .f(opts.maxNorm ?? 0).u(clipping ? 1 : 0, 0, 0),
      [1],
    );
    flag.dispose();
    optimizer.update({ lrScale: opts.lrScale, gradScaleTensor: gs });
    if (!clip) gs.dispose();
    const outcome = rec.readLater().then((r) => ({
      overflowed: r[0] !== 0,
      scaleUsed: r[1],
      scale: r[2],
      tracker: r[3],
    }));
    rec.dispose();
    this.#pending.push({ outcome, optimizer });
    return { clip };
  }

  /** Wait for the outcome of every step taken (before saving a state, and at the end). */
  async settle(): Promise<void> {
    await this.#resolve(0);
  }

  /** Take in outcomes until at most `keep` are pending, oldest first. */
  async #resolve(keep: number): Promise<void> {
    if (this.#pending.length > keep) rt().flush();
    while (this.#pending.length > keep) {
      const { outcome, optimizer } = this.#pending.shift()!;
      const o = await outcome;
      // The optimizer counted the step when it was encoded; torch's count skips it.
      if (o.overflowed) {
        optimizer.step -= 1;
        this.skippedSteps++;
      }
      this.scale = o.scale;
      this.growthTracker = o.tracker;
      this.history.push({ overflowed: o.overflowed, scale: o.scaleUsed });
    }
  }

  /** Release the GPU state (pending outcomes are dropped). */
  dispose(): void {
    this.#pending = [];
    this.#scaleT.dispose();
    this.#trackerT.dispose();
    this.#noNorm.dispose();
  }
}
