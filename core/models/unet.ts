/**
 * diffusers' `UNet2DConditionModel` for SD 1.x/2.x and SDXL: sinusoidal time embedding
 * (flip_sin_to_cos, shift 0) -> `linear_1` -> SiLU -> `linear_2` (SDXL adds `add_embedding`,
 * kohya's `label_emb`, of the vector `y`); `conv_in`; down blocks collecting skip connections;
 * the mid block; up blocks consuming them; GroupNorm+SiLU -> `conv_out`. Heads per level come
 * from the config (SD1: a fixed count; SD2, SDXL: a fixed head width); transformer depth per
 * level (SDXL: none on level 0). Latents of any size work: when a side is not a multiple of 8
 * the upsamplers resize to the skip's size, as diffusers' `upsample_size` does.
 *
 * @module
 */
import { scope, silu, type Tensor, timestepEmbedding } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { TransformerSpec } from "./attention.ts";
import type { UNetConfig } from "../model_config/config.ts";
import { toDtype } from "./ops.ts";
import type { NormSpec } from "./resnet.ts";
import { DownBlock, MidBlock, UpBlock } from "./unet_blocks.ts";
import {
  type Conv2dModule,
  type GroupNormModule,
  type LayerModule,
  type LinearModule,
  type ModelWeights,
  ModuleBuilder,
} from "./weights.ts";

const P = "unet";

/** The SD 1.x/2.x U-Net (epsilon or v prediction: the same network). */
export class UNet2DConditionModel {
  readonly config: UNetConfig;
  readonly weights: ModelWeights;
  readonly timeLinear1: LinearModule;
  readonly timeLinear2: LinearModule;
  /** SDXL's `add_embedding` (LDM `label_emb`) Linear, SiLU, Linear; null in SD 1.x/2.x. */
  readonly addLinear1: LinearModule | null;
  readonly addLinear2: LinearModule | null;
  readonly convIn: Conv2dModule;
  readonly downBlocks: DownBlock[];
  readonly midBlock: MidBlock;
  readonly upBlocks: UpBlock[];
  readonly normOut: GroupNormModule;
  readonly convOut: Conv2dModule;
  readonly #modules: LayerModule[];

  constructor(weights: ModelWeights, config: UNetConfig) {
    this.config = config;
    this.weights = weights;
    const b = new ModuleBuilder(weights);
    const c = config;
    const levels = c.blockOutChannels.length;
    const norm: NormSpec = { groups: c.normGroups, eps: c.normEps };
    const tspec = (level: number, depth: number): TransformerSpec => ({
      heads: c.numHeads[level],
      depth,
      normGroups: c.normGroups,
      normEps: c.transformerNormEps,
      layerNormEps: c.layerNormEps,
      linearProjection: c.useLinearProjection,
    });
    this.timeLinear1 = b.linear(`${P}.time_embedding.linear_1`);
    this.timeLinear2 = b.linear(`${P}.time_embedding.linear_2`);
    const added = c.addEmbedding !== undefined;
    this.addLinear1 = added ? b.linear(`${P}.add_embedding.linear_1`) : null;
    this.addLinear2 = added ? b.linear(`${P}.add_embedding.linear_2`) : null;
    this.convIn = b.conv(`${P}.conv_in`, { padding: 1 });
    this.downBlocks = c.downBlockTypes.map((type, i) =>
      new DownBlock(b, `${P}.down_blocks.${i}`, {
        resnets: c.layersPerBlock,
        norm,
        attention: type === "CrossAttnDownBlock2D" ? tspec(i, c.transformerDepth[i]) : null,
      })
    );
    this.midBlock = new MidBlock(
      b,
      `${P}.mid_block`,
      norm,
      tspec(levels - 1, c.midTransformerDepth),
    );
    this.upBlocks = c.upBlockTypes.map((type, i) => {
      const level = levels - 1 - i; // up blocks run the levels in reverse
      return new UpBlock(b, `${P}.up_blocks.${i}`, {
        resnets: c.layersPerBlock + 1,
        norm,
        attention: type === "CrossAttnUpBlock2D" ? tspec(level, c.transformerDepth[level]) : null,
      });
    });
    this.normOut = b.groupNorm(`${P}.conv_norm_out`, c.normGroups, c.normEps);
    this.convOut = b.conv(`${P}.conv_out`, { padding: 1 });
    this.#modules = b.layers;
  }

  /** Storage dtype of the weights and activations. */
  get dtype(): Tensor["dtype"] {
    return this.weights.dtype;
  }

  /** Every Linear and Conv2d with its internal name (LoRA's `lora_unet_*` targets). */
  modules(): LayerModule[] {
    return [...this.#modules];
  }

  /** Bad shapes are the caller's error: name what was expected and what was found. */
  #check(sample: Tensor, timesteps: readonly number[], context: Tensor, y?: Tensor): void {
    const c = this.config;
    const s = `[${sample.shape.join(",")}]`;
    if (sample.rank !== 4 || sample.shape[1] !== c.inChannels) {
      throw new LorakitError(
        `U-Net: expected latents [batch, ${c.inChannels}, h, w], found ${s}`,
      );
    }
    const n = sample.shape[0];
    if (timesteps.length !== n && timesteps.length !== 1) {
      throw new LorakitError(
        `U-Net: expected 1 or ${n} timesteps for latents ${s}, found ${timesteps.length}`,
      );
    }
    if (!timesteps.every(Number.isFinite)) {
      throw new LorakitError(`U-Net: timesteps must be finite, found [${timesteps.join(",")}]`);
    }
    const ctx = `[${context.shape.join(",")}]`;
    if (context.rank !== 3 || context.shape[2] !== c.crossAttentionDim) {
      throw new LorakitError(
        `U-Net: expected a text context [batch, tokens, ${c.crossAttentionDim}] (the U-Net's ` +
          `cross-attention width), found ${ctx}`,
      );
    }
    if (context.shape[0] !== n) {
      throw new LorakitError(
        `U-Net: the context ${ctx} has batch ${context.shape[0]}, the latents ${s} have ${n}`,
      );
    }
    const adm = c.addEmbedding?.inChannels;
    if (adm === undefined && y !== undefined) {
      throw new LorakitError(
        `U-Net: an added conditioning vector y was given, but this U-Net has no 'label_emb' ` +
          `(SD 1.x/2.x take only the text context)`,
      );
    }
    if (
      adm !== undefined && (y === undefined || y.rank !== 2 || y.shape[1] !== adm ||
        y.shape[0] !== n)
    ) {
      throw new LorakitError(
        `U-Net: SDXL expects the added conditioning y [${n}, ${adm}] (pooled text embedding and ` +
          `size embeddings), found ${y === undefined ? "none" : `[${y.shape.join(",")}]`}`,
      );
    }
  }

  /**
   * SiLU(time embedding) [B, T]: what every ResNet's `time_emb_proj` reads. SDXL adds
   * `add_embedding(y)` before the SiLU.
   */
  #timeEmbedding(timesteps: readonly number[], batch: number, y?: Tensor): Tensor {
    const ts = timesteps.length === batch ? timesteps : new Array(batch).fill(timesteps[0]);
    const dim = this.timeLinear1.inFeatures;
    const proj = timestepEmbedding(ts, dim, {
      flipSinToCos: true,
      freqShift: 0,
      dtype: this.dtype,
    });
    const emb = this.timeLinear2.forward(silu(this.timeLinear1.forward(proj)));
    if (this.addLinear1 === null || this.addLinear2 === null || y === undefined) return silu(emb);
    // diffusers: emb + add_embedding(y); the add happens in linear_2's GEMM.
    const a = this.addLinear1.forward(toDtype(y, this.dtype));
    return silu(this.addLinear2.forward(silu(a), emb));
  }

  /**
   * Noise (or velocity) prediction [B, 4, h, w] for latents `sample` [B, 4, h, w] at
   * `timesteps` (one per sample, or one for all) with text `context` [B, T, C]; SDXL also
   * takes `y` [B, adm] (kohya's vector: pooled text embedding, then size embeddings; see
   * `sdxl_conditioning.ts`). Inputs in another dtype are cast to the model's; the output is in
   * the model's dtype.
   */
  forward(sample: Tensor, timesteps: readonly number[], context: Tensor, y?: Tensor): Tensor {
    this.#check(sample, timesteps, context, y);
    return scope(() => {
      const n = sample.shape[0];
      const ctx = toDtype(context, this.dtype);
      const tembAct = this.#timeEmbedding(timesteps, n, y);
      let h = this.convIn.forward(toDtype(sample, this.dtype));
      const skips: Tensor[] = [h];
      for (const block of this.downBlocks) {
        const r = block.forward(h, tembAct, ctx);
        h = r.out;
        skips.push(...r.skips);
      }
      h = this.midBlock.forward(h, tembAct, ctx);
      const factor = 2 ** this.upBlocks.filter((u) => u.upsampler).length;
      const odd = sample.shape.slice(2).some((d) => d % factor !== 0);
      this.upBlocks.forEach((block, i) => {
        const k = block.resnets.length;
        const mine = skips.splice(skips.length - k, k);
        const next = skips[skips.length - 1];
        const size: [number, number] | undefined = odd && next
          ? [next.shape[2], next.shape[3]]
          : undefined;
        h = block.forward(h, mine, tembAct, ctx, i < this.upBlocks.length - 1 ? size : undefined);
      });
      return this.convOut.forward(this.normOut.forward(h, { silu: true }));
    });
  }

  /** Free the weights. */
  dispose(): void {
    this.weights.dispose();
  }
}
