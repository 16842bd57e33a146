/**
 * The U-Net's blocks as diffusers names them: `CrossAttnDownBlock2D`/`DownBlock2D` (ResNets,
 * each followed by a transformer when the level has attention, then a stride-2 conv),
 * `UNetMidBlock2DCrossAttn` (ResNet, transformer, ResNet) and `CrossAttnUpBlock2D`/`UpBlock2D`
 * (each ResNet takes the running features concatenated with one skip connection, newest first;
 * then an upsampler). One class per direction; the attention and sampler are present or not.
 *
 * @module
 */
import { concatChannels, scope, type Tensor } from "../../gpu/mod.ts";
import { Transformer2DModel, type TransformerSpec } from "./attention.ts";
import { Downsample2D, type NormSpec, ResnetBlock2D, Upsample2D } from "./resnet.ts";
import type { ModuleBuilder } from "./weights.ts";

/** What a block needs to build itself from the weights. */
export interface BlockSpec {
  resnets: number;
  norm: NormSpec;
  /** Transformer settings, or null for a block without attention. */
  attention: TransformerSpec | null;
}

/** A down block: returns its output and the skip connections it adds. */
export class DownBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly downsampler: Downsample2D | null;

  constructor(b: ModuleBuilder, readonly name: string, spec: BlockSpec) {
    this.resnets = Array.from(
      { length: spec.resnets },
      (_, j) => new ResnetBlock2D(b, `${name}.resnets.${j}`, spec.norm),
    );
    const attn = spec.attention;
    this.attentions = attn
      ? this.resnets.map((_, j) => new Transformer2DModel(b, `${name}.attentions.${j}`, attn))
      : [];
    this.downsampler = b.store.has(`${name}.downsamplers.0.conv.weight`)
      ? new Downsample2D(b, `${name}.downsamplers.0`)
      : null;
  }

  forward(
    x: Tensor,
    tembAct: Tensor,
    context: Tensor,
  ): { out: Tensor; skips: Tensor[] } {
    return scope(() => {
      const skips: Tensor[] = [];
      let h = x;
      this.resnets.forEach((r, j) => {
        h = r.forward(h, tembAct);
        if (this.attentions.length) h = this.attentions[j].forward(h, context);
        skips.push(h);
      });
      if (this.downsampler) {
        h = this.downsampler.forward(h);
        skips.push(h);
      }
      return { out: h, skips };
    });
  }
}

/** `UNetMidBlock2DCrossAttn`: ResNet, then (transformer, ResNet) pairs. */
export class MidBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];

  constructor(b: ModuleBuilder, readonly name: string, norm: NormSpec, attn: TransformerSpec) {
    this.resnets = [0, 1].map((j) => new ResnetBlock2D(b, `${name}.resnets.${j}`, norm));
    this.attentions = [new Transformer2DModel(b, `${name}.attentions.0`, attn)];
  }

  forward(x: Tensor, tembAct: Tensor, context: Tensor): Tensor {
    return scope(() => {
      let h = this.resnets[0].forward(x, tembAct);
      this.attentions.forEach((a, j) => {
        h = this.resnets[j + 1].forward(a.forward(h, context), tembAct);
      });
      return h;
    });
  }
}

/** An up block: consumes `resnets` skip connections from the end of the list. */
export class UpBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attentions: Transformer2DModel[];
  readonly upsampler: Upsample2D | null;

  constructor(b: ModuleBuilder, readonly name: string, spec: BlockSpec) {
    this.resnets = Array.from(
      { length: spec.resnets },
      (_, j) => new ResnetBlock2D(b, `${name}.resnets.${j}`, spec.norm),
    );
    const attn = spec.attention;
    this.attentions = attn
      ? this.resnets.map((_, j) => new Transformer2DModel(b, `${name}.attentions.${j}`, attn))
      : [];
    this.upsampler = b.store.has(`${name}.upsamplers.0.conv.weight`)
      ? new Upsample2D(b, `${name}.upsamplers.0`)
      : null;
  }

  /**
   * `skips` are this block's skip connections, oldest first (the last is concatenated first);
   * `upsampleSize` is the next skip's [H, W] when the latent is not a multiple of 8.
   */
  forward(
    x: Tensor,
    skips: Tensor[],
    tembAct: Tensor,
    context: Tensor,
    upsampleSize?: [number, number],
  ): Tensor {
    return scope(() => {
      let h = x;
      this.resnets.forEach((r, j) => {
        const skip = skips[skips.length - 1 - j];
        h = r.forward(concatChannels([h, skip]), tembAct);
        if (this.attentions.length) h = this.attentions[j].forward(h, context);
      });
      return this.upsampler ? this.upsampler.forward(h, upsampleSize) : h;
    });
  }
}
