/**
 * diffusers' `AutoencoderKL` as SD uses it. Encoder: `conv_in`, down blocks of ResNets with the
 * right/bottom-padded stride-2 conv, a mid block (ResNet, single-head attention over the H*W
 * positions, ResNet), GroupNorm+SiLU -> `conv_out` -> `quant_conv` -> mean and logvar (logvar
 * clamped to [-30, 20]). Decoder: `post_quant_conv`, `conv_in`, mid block, up blocks of ResNets
 * with nearest 2x + conv, GroupNorm+SiLU -> `conv_out`. No latent scaling here (the caller's
 * `scalingFactor`).
 *
 * @module
 */
import {
  add,
  attention,
  clamp,
  MAX_HEAD_DIM,
  permute,
  reshape,
  scope,
  sliceChannels,
  type Tensor,
} from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { VAEConfig } from "../model_config/config.ts";
import { rowBlockedAttention, toDtype } from "./ops.ts";
import {
  Downsample2D,
  type NormSpec,
  ResnetBlock2D,
  Upsample2D,
  VAE_DOWNSAMPLE_PADDING,
} from "./resnet.ts";
import {
  type Conv2dModule,
  type GroupNormModule,
  type LayerModule,
  type LinearModule,
  type ModelWeights,
  ModuleBuilder,
} from "./weights.ts";

/** The encoder's moments: a diagonal Gaussian over latents. */
export interface LatentDistribution {
  mean: Tensor;
  /** Clamped to [-30, 20] as diffusers' `DiagonalGaussianDistribution`. */
  logvar: Tensor;
}

/** The mid block's attention: one head as wide as the channels, residual. */
class VaeAttention {
  readonly norm: GroupNormModule;
  readonly toQ: LinearModule;
  readonly toK: LinearModule;
  readonly toV: LinearModule;
  readonly toOut: LinearModule;

  constructor(b: ModuleBuilder, readonly name: string, norm: NormSpec) {
    this.norm = b.groupNorm(`${name}.group_norm`, norm.groups, norm.eps);
    this.toQ = b.linear(`${name}.to_q`);
    this.toK = b.linear(`${name}.to_k`);
    this.toV = b.linear(`${name}.to_v`);
    this.toOut = b.linear(`${name}.to_out.0`);
  }

  forward(x: Tensor): Tensor {
    return scope(() => {
      const [n, c, h, w] = x.shape;
      const t = reshape(permute(this.norm.forward(x), [0, 2, 3, 1]), [n, h * w, c]);
      const q = this.toQ.forward(t), k = this.toK.forward(t), v = this.toV.forward(t);
      let o: Tensor;
      if (c <= MAX_HEAD_DIM) {
        const head = (y: Tensor) => reshape(y, [n, 1, h * w, c]);
        o = reshape(attention(head(q), head(k), head(v)), [n, h * w, c]);
      } else {
        // Wider than the fused kernel's head limit (512 in the full-size VAE).
        o = rowBlockedAttention(q, k, v);
      }
      const out = permute(reshape(this.toOut.forward(o), [n, h, w, c]), [0, 3, 1, 2]);
      return add(out, x);
    });
  }
}

/** ResNet, attention, ResNet (`UNetMidBlock2D` without time embedding). */
class VaeMidBlock {
  readonly resnets: ResnetBlock2D[];
  readonly attention: VaeAttention;
  constructor(b: ModuleBuilder, name: string, norm: NormSpec) {
    this.resnets = [0, 1].map((j) => new ResnetBlock2D(b, `${name}.resnets.${j}`, norm));
    this.attention = new VaeAttention(b, `${name}.attentions.0`, norm);
  }
  forward(x: Tensor): Tensor {
    return scope(() =>
      this.resnets[1].forward(this.attention.forward(this.resnets[0].forward(x, null)), null)
    );
  }
}

/** A VAE level: ResNets, then a down- or upsampler when the weights have one. */
class VaeLevel {
  readonly resnets: ResnetBlock2D[];
  readonly sampler: Downsample2D | Upsample2D | null;

  constructor(
    b: ModuleBuilder,
    name: string,
    count: number,
    norm: NormSpec,
    kind: "down" | "up",
  ) {
    this.resnets = Array.from(
      { length: count },
      (_, j) => new ResnetBlock2D(b, `${name}.resnets.${j}`, norm),
    );
    const s = kind === "down" ? `${name}.downsamplers.0` : `${name}.upsamplers.0`;
    this.sampler = !b.store.has(`${s}.conv.weight`)
      ? null
      : kind === "down"
      ? new Downsample2D(b, s, VAE_DOWNSAMPLE_PADDING)
      : new Upsample2D(b, s);
  }

  forward(x: Tensor): Tensor {
    return scope(() => {
      let h = x;
      for (const r of this.resnets) h = r.forward(h, null);
      return this.sampler ? this.sampler.forward(h) : h;
    });
  }
}

/** The SD VAE (`AutoencoderKL`). */
export class AutoencoderKL {
  readonly config: VAEConfig;
  readonly weights: ModelWeights;
  readonly #modules: LayerModule[];
  readonly #enc: {
    convIn: Conv2dModule;
    levels: VaeLevel[];
    mid: VaeMidBlock;
    normOut: GroupNormModule;
    convOut: Conv2dModule;
    quantConv: Conv2dModule;
  };
  readonly #dec: {
    postQuantConv: Conv2dModule;
    convIn: Conv2dModule;
    mid: VaeMidBlock;
    levels: VaeLevel[];
    normOut: GroupNormModule;
    convOut: Conv2dModule;
  };

  constructor(weights: ModelWeights, config: VAEConfig) {
    this.config = config;
    this.weights = weights;
    const b = new ModuleBuilder(weights);
    const norm: NormSpec = { groups: config.normGroups, eps: config.normEps };
    const levels = config.blockOutChannels.length;
    const level = (p: string, i: number, count: number, kind: "down" | "up") =>
      new VaeLevel(b, `${p}.${i}`, count, norm, kind);
    this.#enc = {
      convIn: b.conv("vae.encoder.conv_in", { padding: 1 }),
      levels: Array.from(
        { length: levels },
        (_, i) => level("vae.encoder.down_blocks", i, config.layersPerBlock, "down"),
      ),
      mid: new VaeMidBlock(b, "vae.encoder.mid_block", norm),
      normOut: b.groupNorm("vae.encoder.conv_norm_out", norm.groups, norm.eps),
      convOut: b.conv("vae.encoder.conv_out", { padding: 1 }),
      quantConv: b.conv("vae.quant_conv"),
    };
    this.#dec = {
      postQuantConv: b.conv("vae.post_quant_conv"),
      convIn: b.conv("vae.decoder.conv_in", { padding: 1 }),
      mid: new VaeMidBlock(b, "vae.decoder.mid_block", norm),
      levels: Array.from(
        { length: levels },
        (_, i) => level("vae.decoder.up_blocks", i, config.layersPerBlock + 1, "up"),
      ),
      normOut: b.groupNorm("vae.decoder.conv_norm_out", norm.groups, norm.eps),
      convOut: b.conv("vae.decoder.conv_out", { padding: 1 }),
    };
    this.#modules = b.layers;
  }

  /** Storage dtype of the weights and activations. */
  get dtype(): Tensor["dtype"] {
    return this.weights.dtype;
  }

  /** Spatial down-scaling between images and latents (8 in SD). */
  get downscale(): number {
    return 2 ** this.#enc.levels.filter((l) => l.sampler).length;
  }

  /** Every Linear and Conv2d with its internal name. */
  modules(): LayerModule[] {
    return [...this.#modules];
  }

  /** Latent moments for images [B, 3, H, W] in [-1, 1]; H and W multiples of 8. */
  encode(images: Tensor): LatentDistribution {
    const c = this.config, f = this.downscale;
    const [, ch, h, w] = images.shape;
    if (images.rank !== 4 || ch !== c.inChannels || h % f !== 0 || w % f !== 0) {
      throw new LorakitError(
        `VAE encode: expected images [batch, ${c.inChannels}, H, W] with H and W multiples of ` +
          `${f}, found [${images.shape.join(",")}]`,
      );
    }
    return scope(() => {
      const e = this.#enc;
      let x = e.convIn.forward(toDtype(images, this.dtype));
      for (const l of e.levels) x = l.forward(x);
      x = e.mid.forward(x);
      x = e.convOut.forward(e.normOut.forward(x, { silu: true }));
      const moments = e.quantConv.forward(x);
      const lc = c.latentChannels;
      return {
        mean: sliceChannels(moments, 0, lc),
        // Exact in f16 too: the bounds are f16 values, and clamp only selects.
        logvar: clamp(sliceChannels(moments, lc, 2 * lc), -30, 20),
      };
    });
  }

  /** Images [B, 3, 8h, 8w] (about [-1, 1]) for unscaled latents [B, 4, h, w]. */
  decode(latents: Tensor): Tensor {
    const c = this.config;
    if (latents.rank !== 4 || latents.shape[1] !== c.latentChannels) {
      throw new LorakitError(
        `VAE decode: expected latents [batch, ${c.latentChannels}, h, w], found ` +
          `[${latents.shape.join(",")}]`,
      );
    }
    return scope(() => {
      const d = this.#dec;
      let x = d.convIn.forward(d.postQuantConv.forward(toDtype(latents, this.dtype)));
      x = d.mid.forward(x);
      for (const l of d.levels) x = l.forward(x);
      return d.convOut.forward(d.normOut.forward(x, { silu: true }));
    });
  }

  /** Free the weights. */
  dispose(): void {
    this.weights.dispose();
  }
}
