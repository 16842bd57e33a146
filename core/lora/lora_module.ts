/**
 * One LoRA module at run time: the trainable factors on the GPU and the branch it adds to its
 * target layer's output, `up(down(x)) * multiplier * scale`, with kohya's training-time dropouts
 * (`dropout` on the down output, `rank_dropout` per rank with 1/(1-p) rescaling,
 * `module_dropout` skipping the whole branch) and DyLoRA's per-step trainable rank slice.
 *
 * @module
 */
import { cast, concat, conv2d, linear, matmul, mul, reshape, Tensor } from "../../gpu/mod.ts";
import { type Random, uniformRandom } from "../../gpu/random.ts";
import type { LoraModuleSpec } from "./modules.ts";

/** A seeded uniform [0, 1) generator (mulberry32). */
export type Rng = Random;

/** The dropouts' generator for a seed: {@link uniformRandom}. */
export const makeRng: (seed: number) => Rng = uniformRandom;

/** Training-time regularisation, as kohya's `network_dropout` / network_args name them. */
export interface DropoutOptions {
  dropout?: number;
  rankDropout?: number;
  moduleDropout?: number;
}

/** Shape of the down factor as stored: [r, in] (Linear) or [r, in, kh, kw] (conv). */
export function downShape(spec: LoraModuleSpec, rank = spec.rank): number[] {
  return spec.kind === "linear"
    ? [rank, spec.inFeatures]
    : [rank, spec.inFeatures, spec.kernel[0], spec.kernel[1]];
}

/** Shape of the up factor as stored: [out, r] (Linear) or [out, r, 1, 1] (conv). */
export function upShape(spec: LoraModuleSpec, rank = spec.rank): number[] {
  return spec.kind === "linear" ? [spec.outFeatures, rank] : [spec.outFeatures, rank, 1, 1];
}

/** The factors of a LoRA module; DyLoRA keeps one chunk of `unit` ranks per tensor. */
export class LoraModule {
  readonly spec: LoraModuleSpec;
  /** Down chunks (one for plain LoRA). */
  readonly downs: Tensor[];
  /** Up chunks, matching `downs`. */
  readonly ups: Tensor[];
  multiplier = 1;
  /** Set by the network: apply training-time dropouts and DyLoRA rank sampling. */
  training = false;
  /** DyLoRA rank unit, or 0 for plain LoRA. */
  readonly unit: number;
  dropout: DropoutOptions = {};
  rng: Rng = makeRng(0);

  constructor(spec: LoraModuleSpec, downs: Tensor[], ups: Tensor[], unit = 0) {
    this.spec = spec;
    this.downs = downs;
    this.ups = ups;
    this.unit = unit;
  }

  /** `alpha / rank`. */
  get scale(): number {
    return this.spec.alpha / this.spec.rank;
  }

  /** All trainable tensors (down chunks then up chunks). */
  parameters(): Tensor[] {
    return [...this.downs, ...this.ups];
  }

  /** Full down and up factors (DyLoRA chunks concatenated along the rank). */
  factors(): { down: Tensor; up: Tensor } {
    if (this.downs.length === 1) return { down: this.downs[0], up: this.ups[0] };
    return { down: concat(this.downs, 0), up: concat(this.ups, 1) };
  }

  /**
   * DyLoRA: pick this step's trainable chunk as kohya does (`randint(0, dim-1)` floored to the
   * unit) and freeze the others. Returns the rescale `sqrt(dim / (b + unit))`.
   */
  #dyloraStep(): number {
    const dim = this.spec.rank;
    let b = Math.floor(this.rng() * dim);
    b -= b % this.unit;
    const chunk = b / this.unit;
    this.downs.forEach((t, i) => (t.requiresGrad = i === chunk));
    this.ups.forEach((t, i) => (t.requiresGrad = i === chunk));
    return Math.sqrt(dim / (b + this.unit));
  }

  /**
   * The target layer's output `y` (for input `x`) plus this module's branch
   * `up(down(x)) * multiplier * scale`: `up` is one GEMM (or pointwise conv) with the scale and
   * the add in its epilogue. The branch runs in the layer's dtype: under mixed precision the
   * GEMMs read the f32 factors as f16 (the values autocast's casts give) and return their
   * gradients in f32 (the f16 gradients widened), with no cast kernels and no activation in f32.
   */
  addTo(y: Tensor, x: Tensor): Tensor {
    const d = this.dropout;
    if (this.training && d.moduleDropout && this.rng() < d.moduleDropout) return y;
    let extra = 1;
    if (this.unit > 0 && this.training) extra = this.#dyloraStep();
    const factors = this.factors();
    const inDtype = x.dtype;
    const asInput = (t: Tensor) =>
      t.dtype === inDtype || (t.dtype === "f32" && inDtype === "f16") ? t : cast(t, inDtype);
    const down = asInput(factors.down);
    const up = asInput(factors.up);
    const s = this.spec;
    const conv = s.kind !== "linear";
    let lx = conv
      ? conv2d(x, down, null, { stride: s.stride[0], padding: s.padding[0] })
      : linear(x, down);
    let sc = this.scale * extra;
    if (this.training && d.dropout) lx = mul(lx, this.#mask(lx.shape, d.dropout, true, lx.dtype));
    if (this.training && d.rankDropout) {
      // One keep/drop draw per (sample, rank), broadcast over tokens or pixels.
      const r = s.rank;
      const shape = conv
        ? [lx.shape[0], r, 1, 1]
        : [lx.shape[0], ...lx.shape.slice(1, -1).map(() => 1), r];
      lx = mul(lx, this.#mask(shape, d.rankDropout, false, lx.dtype));
      sc *= 1 / (1 - d.rankDropout);
    }
    const factor = sc * (this.unit > 0 ? 1 : this.multiplier);
    return conv
      ? conv2d(lx, up, null, { alpha: factor, residual: y })
      : linear(lx, up, null, { alpha: factor, residual: y });
  }

  /** A 0/1 keep mask (scaled by 1/(1-p) when `rescale`, as F.dropout does). */
  #mask(shape: number[], p: number, rescale: boolean, dtype: Tensor["dtype"]): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    const keep = rescale ? 1 / (1 - p) : 1;
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = this.rng() >= p ? keep : 0;
    return Tensor.fromArray(data, shape, dtype);
  }

  /** `up @ down * scale` as a weight-shaped delta (for merging), flattening conv kernels. */
  weightDelta(weightShape: readonly number[]): Tensor {
    const { down, up } = this.factors();
    const r = this.spec.rank;
    const upFlat = reshape(up, [this.spec.outFeatures, r]);
    const downFlat = reshape(down, [r, down.size / r]);
    return reshape(matmul(upFlat, downFlat), [...weightShape]);
  }

  dispose(): void {
    for (const t of this.parameters()) {
      t.grad?.dispose();
      t.dispose();
    }
  }
}
