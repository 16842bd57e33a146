/**
 * Dynamic loss scaling for fp16 training, as torch.cuda.amp.GradScaler does it: the loss is
 * multiplied by `scale` before backward; after backward, one GPU pass per gradient sets a flag
 * when any value is inf or NaN; an overflowed step is skipped and the scale multiplied by
 * `backoffFactor`; after `growthInterval` clean steps in a row it is multiplied by `growthFactor`.
 *
 * Deciding whether to skip needs the flag on the host: `step()` reads back one u32 per step (the
 * only read-back it makes); the unscale (1 / scale) is folded into the optimizer's gradScale.
 *
 * @module
 */
import { rt } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
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

/** What `LossScaler.step` did. */
export interface ScaledStep {
  /** True when a gradient overflowed and the optimizer step was skipped. */
  skipped: boolean;
  /** The scale used for this step's loss. */
  scale: number;
  /** The clipping result, when `maxNorm` was given and the step ran (caller disposes). */
  clip?: GradNorm;
}

/** Dynamic loss scaler. */
export class LossScaler {
  scale: number;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  /** Clean steps since the last growth or backoff. */
  growthTracker = 0;

  constructor(opts: LossScalerOptions = {}) {
    this.scale = opts.initScale ?? 65536;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
  }

  /**
   * A [1] u32 flag tensor (stored in an f32 tensor's buffer): nonzero when any gradient of
   * `params` has an inf or NaN. Computed on the GPU; read it with `readFlag`.
   */
  overflowFlag(params: Tensor[]): Tensor {
    const flag = Tensor.zeros([1]);
    nonfiniteMulti(params.flatMap((p) => (p.grad ? [p.grad] : [])), flag);
    return flag;
  }

  /** Read an overflow flag (one 4-byte read-back). */
  async readFlag(flag: Tensor): Promise<boolean> {
    const raw = await rt().readBuffer(flag.buffer, 0, 4);
    return new Uint32Array(raw)[0] !== 0;
  }

  /** Advance the scale after a step: back off on overflow, grow after enough clean steps. */
  updateScale(overflowed: boolean): void {
    if (overflowed) {
      this.scale *= this.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker >= this.growthInterval) {
      this.scale *= this.growthFactor;
      this.growthTracker = 0;
    }
  }

  /**
   * Check the gradients, and unless they overflowed, run `optimizer.update` with the unscaling
   * (and, with `maxNorm`, the clip factor of the unscaled gradients) folded in; then update the
   * scale. One read-back (the flag) per call.
   */
  async step(
    optimizer: Optimizer,
    opts: UpdateOptions & { maxNorm?: number } = {},
  ): Promise<ScaledStep> {
    const params = optimizer.groups.flatMap((g) => g.params);
    const flag = this.overflowFlag(params);
    const overflowed = await this.readFlag(flag);
    flag.dispose();
    const scale = this.scale;
    let clip: GradNorm | undefined;
    if (!overflowed) {
      const inv = (opts.gradScale ?? 1) / scale;
      if (opts.maxNorm !== undefined && opts.maxNorm > 0) {
        clip = clipGradNorm(params, opts.maxNorm, { inScale: inv });
        optimizer.update({ lrScale: opts.lrScale, gradScaleTensor: clip.scale });
      } else {
        optimizer.update({ ...opts, gradScale: inv });
      }
    }
    this.updateScale(overflowed);
    return { skipped: overflowed, scale, clip };
  }
}
