/**
 * diffusers' `ResnetBlock2D`, `Downsample2D` and `Upsample2D`, shared by the U-Net and the VAE.
 * A ResNet is GroupNorm+SiLU -> conv1 (+ the projected time embedding) -> GroupNorm+SiLU ->
 * conv2, added to the input (through a 1x1 `conv_shortcut` when the width changes). Channel
 * counts come from the stored weights, so one class serves every level of both models.
 *
 * @module
 */
import {
  add,
  type ConvPadding,
  reshape,
  resizeNearest,
  scope,
  type Tensor,
} from "../../gpu/mod.ts";
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

/**
 * The VAE encoder's downsampler padding: diffusers' `Downsample2D(padding=0)` pads
 * `F.pad(x, (0, 1, 0, 1))`, one column right and one row below, then convolves unpadded.
 * As `[top, bottom, left, right]`.
 */
export const VAE_DOWNSAMPLE_PADDING: ConvPadding = [0, 1, 0, 1];

/**
 * diffusers `Downsample2D` with a conv: 3x3, stride 2, padding 1 on every side (the U-Net's) or
 * `VAE_DOWNSAMPLE_PADDING` (the VAE encoder's).
 */
export class Downsample2D {
  readonly conv: Conv2dModule;
  constructor(b: ModuleBuilder, readonly name: string, padding: ConvPadding | number = 1) {
    this.conv = b.conv(`${name}.conv`, { stride: 2, padding });
  }
  forward(x: Tensor): Tensor {
    return this.conv.forward(x);
  }
}

/**
 * diffusers `Upsample2D` with a conv: nearest resize (2x, or to the skip's size, PyTorch's
 * `F.interpolate(mode="nearest")`) then 3x3 conv.
 */
export class Upsample2D {
  readonly conv: Conv2dModule;
  constructor(b: ModuleBuilder, readonly name: string) {
    this.conv = b.conv(`${name}.conv`, { padding: 1 });
  }

  /** `size` [H, W] overrides the 2x output size (odd latent sizes in the U-Net). */
  forward(x: Tensor, size?: [number, number]): Tensor {
    return scope(() => {
      const [h, w] = size ?? [2 * x.shape[2], 2 * x.shape[3]];
      return this.conv.forward(resizeNearest(x, h, w));
    });
  }
}
