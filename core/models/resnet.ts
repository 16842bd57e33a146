/**
 * diffusers' `ResnetBlock2D`, `Downsample2D` and `Upsample2D`, shared by the U-Net and the VAE.
 * A ResNet is GroupNorm+SiLU -> conv1 (+ the projected time embedding) -> GroupNorm+SiLU ->
 * conv2, added to the input (through a 1x1 `conv_shortcut` when the width changes). Channel
 * counts come from the stored weights, so one class serves every level of both models.
 *
 * @module
 */
import { add, conv2d, matmul, reshape, scope, Tensor } from "../../gpu/mod.ts";
import { type ConstCache, upsampleNearest } from "./ops.ts";
import type { Conv2dModule, GroupNormModule, LinearModule, ModuleBuilder } from "./weights.ts";

/** GroupNorm settings shared by a model's ResNets. */
export interface NormSpec {
  groups: number;
  eps: number;
}

/** diffusers `ResnetBlock2D` (pre-activation, `output_scale_factor` 1, no dropout at inference). */
export class ResnetBlock2D {
  readonly norm1: GroupNormModule;
  readonly conv1: Conv2dModule;
  /** Projection of SiLU(time embedding) added after conv1; absent in the VAE. */
  readonly timeEmbProj: LinearModule | null;
  readonly norm2: GroupNormModule;
  readonly conv2: Conv2dModule;
  readonly convShortcut: Conv2dModule | null;

  constructor(b: ModuleBuilder, readonly name: string, norm: NormSpec) {
    this.norm1 = b.groupNorm(`${name}.norm1`, norm.groups, norm.eps);
    this.conv1 = b.conv(`${name}.conv1`, { padding: 1 });
    this.timeEmbProj = b.store.has(`${name}.time_emb_proj.weight`)
      ? b.linear(`${name}.time_emb_proj`)
      : null;
    this.norm2 = b.groupNorm(`${name}.norm2`, norm.groups, norm.eps);
    this.conv2 = b.conv(`${name}.conv2`, { padding: 1 });
    this.convShortcut = b.store.has(`${name}.conv_shortcut.weight`)
      ? b.conv(`${name}.conv_shortcut`)
      : null;
  }

  /** x [B, Cin, H, W]; `tembAct` is SiLU(time embedding) [B, T] (computed once per U-Net pass). */
  forward(x: Tensor, tembAct: Tensor | null): Tensor {
    return scope(() => {
      let h = this.conv1.forward(this.norm1.forward(x, { silu: true }));
      if (this.timeEmbProj && tembAct) {
        const t = this.timeEmbProj.forward(tembAct);
        h = add(h, reshape(t, [t.shape[0], t.shape[1], 1, 1]));
      }
      const skip = this.convShortcut ? this.convShortcut.forward(x) : x;
      // The skip is added in conv2's store.
      return this.conv2.forward(this.norm2.forward(h, { silu: true }), skip);
    });
  }
}

/** diffusers `Downsample2D` with a conv: 3x3, stride 2, padding 1 (the U-Net's). */
export class Downsample2D {
  readonly conv: Conv2dModule;
  constructor(b: ModuleBuilder, readonly name: string) {
    this.conv = b.conv(`${name}.conv`, { stride: 2, padding: 1 });
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

/**
 * The VAE encoder's `Downsample2D(padding=0)`: diffusers pads (0, 1, 0, 1) (right and bottom)
 * and convolves 3x3 with stride 2 and no padding. The engine's conv pads symmetrically, so this
 * runs the equivalent 4x4 convolution with padding 1 whose first row and column are zero: the
 * top/left zero padding meets only zero taps, the bottom/right padding is diffusers' extra row
 * and column, and the output size `floor((H - 2) / 2) + 1` is the same for every H. The 4x4
 * kernel is built from the stored 3x3 one by two 0/1 matrix products, so it stays
 * differentiable in the stored weight.
 */
export class AsymmetricDownsample2D {
  readonly conv: Conv2dModule;
  constructor(b: ModuleBuilder, readonly name: string, readonly consts: ConstCache) {
    this.conv = b.conv(`${name}.conv`, { stride: 2, padding: 0 });
  }

  forward(x: Tensor): Tensor {
    return scope(() => {
      const w = this.conv.weight;
      const [o, i, kh, kw] = w.shape;
      const shift = (k: number) =>
        this.consts.get(`shift:${k}:${w.dtype}`, () => {
          // [k + 1, k]: ones at (r + 1, r), i.e. one zero row on top.
          const m = new Float32Array((k + 1) * k);
          for (let r = 0; r < k; r++) m[(r + 1) * k + r] = 1;
          return Tensor.fromArray(m, [k + 1, k], w.dtype);
        });
      const rows = matmul(shift(kh), reshape(w, [o * i, kh, kw])); // [oi, kh+1, kw]
      const both = matmul(rows, shift(kw), { transB: true }); // [oi, kh+1, kw+1]
      const w4 = reshape(both, [o, i, kh + 1, kw + 1]);
      return conv2d(x, w4, this.conv.bias, { stride: 2, padding: 1 });
    });
  }
}

/** diffusers `Upsample2D` with a conv: nearest resize (2x, or to the skip's size) then 3x3 conv. */
export class Upsample2D {
  readonly conv: Conv2dModule;
  constructor(b: ModuleBuilder, readonly name: string) {
    this.conv = b.conv(`${name}.conv`, { padding: 1 });
  }

  /** `size` [H, W] overrides the 2x output size (odd latent sizes in the U-Net). */
  forward(x: Tensor, size?: [number, number]): Tensor {
    return scope(() => {
      const [h, w] = size ?? [2 * x.shape[2], 2 * x.shape[3]];
      return this.conv.forward(upsampleNearest(x, h, w));
    });
  }
}
