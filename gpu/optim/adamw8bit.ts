/**
 * AdamW8bit: bitsandbytes' block-wise 8-bit AdamW. m and v are stored as 8-bit codes (4 per u32)
 * of the dynamic quantization maps (signed for m, unsigned for v) times a per-block f32 absmax;
 * one fused kernel per parameter dequantizes, updates and requantizes (shaders/
 * optim_adamw8bit.wgsl). As in bitsandbytes, tensors smaller than `min8bitSize` keep f32 moments
 * and use its 32-bit kernel's formulation.
 *
 * State bytes per parameter: 2 (codes) + 8 / blockSize (two absmax), about 2.03 at block 256,
 * against AdamW's 8.
 *
 * @module
 */
import { ADAMW8BIT } from "./sources.ts";
import { fill } from "../ops/embedding.ts";
import { rt, uniforms } from "../runtime.ts";
import { Tensor } from "../tensor.ts";
import { grid, specKernel } from "../wgsl.ts";
import { adamKernel, type AdamWOptions } from "./adamw.ts";
import { OptimizerError, type ParamGroup, StatefulOptimizer } from "./common.ts";
import { createDynamicMap } from "./qmap.ts";

/** Options of bitsandbytes.optim.AdamW8bit that apply here. */
export interface AdamW8bitOptions extends AdamWOptions {
  /**
   * Elements per quantization block: 256 (bitsandbytes >= 0.44's optimizer kernels) or 2048
   * (older releases).
   */
  blockSize?: 256 | 2048;
  /** Tensors with fewer elements keep f32 state (bitsandbytes' min_8bit_size, 4096). */
  min8bitSize?: number;
}

/** Per-parameter state: packed codes and absmax, or f32 moments for small tensors. */
type State8 = Record<string, Tensor>;

/** The signed then unsigned maps, as the kernel binds them. */
export function adamw8bitMaps(): Float32Array {
  const out = new Float32Array(512);
  out.set(createDynamicMap(true), 0);
  out.set(createDynamicMap(false), 256);
  return out;
}

/** Block-wise 8-bit AdamW over parameter groups. */
export class AdamW8bit extends StatefulOptimizer<State8> {
  readonly type = "AdamW8bit";
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly blockSize: 256 | 2048;
  readonly min8bitSize: number;
  private maps: Tensor | null = null;

  constructor(groups: ParamGroup[] | Tensor[], opts: AdamW8bitOptions) {
    super(groups, opts.lr);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    this.blockSize = opts.blockSize ?? 256;
    if (this.blockSize !== 256 && this.blockSize !== 2048) {
      throw new OptimizerError(`AdamW8bit: blockSize must be 256 or 2048, got ${this.blockSize}`);
    }
    this.min8bitSize = opts.min8bitSize ?? 4096;
    this.packed = new Set(["state1", "state2"]);
  }

  /** True when `p`'s moments are (or will be) 8-bit. */
  isQuantized(p: Tensor): boolean {
    return p.size >= this.min8bitSize;
  }

  protected initState(p: Tensor): State8 {
    if (!this.isQuantized(p)) {
      return {
        exp_avg: fill(p.shape, 0, "f32").keep(),
        exp_avg_sq: fill(p.shape, 0, "f32").keep(),
      };
    }
    const words = Math.ceil(p.size / 4);
    const blocks = Math.ceil(p.size / this.blockSize);
    // Code 0 with absmax 0 dequantizes to 0, as bitsandbytes' zero-initialised uint8 state.
    return {
      state1: fill([words], 0).keep(),
      state2: fill([words], 0).keep(),
      absmax1: fill([blocks], 0).keep(),
      absmax2: fill([blocks], 0).keep(),
    };
  }

  protected apply(p: Tensor, s: State8, lr: number, gscale: number, gs: GPUBuffer): void {
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** this.step, bc2 = 1 - b2 ** this.step;
    const wd = this.weightDecay;
    if ("exp_avg" in s) {
      adamKernel(p, s.exp_avg, s.exp_avg_sq, gs, {
        lr,
        b1,
        b2,
        eps: this.eps,
        wd,
        bc1,
        bc2,
        gscale,
        bnb: true,
      });
      return;
    }
    if (!this.maps) this.maps = Tensor.fromArray(adamw8bitMaps(), [512]).keep();
    const c2 = Math.sqrt(bc2);
    const wg = Math.min(256, this.blockSize / 4);
    rt().dispatch(
      specKernel("adamw8bit:src8", ADAMW8BIT, p.dtype, { WG: wg, BLOCK: this.blockSize }),
      [
        p.buffer,
        p.grad!.buffer,
        s.state1.buffer,
        s.state2.buffer,
        s.absmax1.buffer,
        s.absmax2.buffer,
        this.maps.buffer,
        gs,
      ],
      uniforms().u(p.size).f(lr, b1, b2, this.eps, wd, c2, (-lr * c2) / bc1, gscale).u(0, 0, 0),
      grid(Math.ceil(p.size / this.blockSize), 1),
    );
  }

  /** Bytes of optimizer state held on the GPU. */
  stateBytes(): number {
    let n = 0;
    for (const s of this.state.values()) for (const t of Object.values(s)) n += t.size * 4;
    return n;
  }

  override dispose(): void {
    super.dispose();
    this.maps?.dispose();
    this.maps = null;
  }
}
