/**
 * The U-Net's spatial transformer, as diffusers 0.21 builds it for SD 1.x/2.x:
 * `Transformer2DModel` (GroupNorm eps 1e-6 -> `proj_in` -> `BasicTransformerBlock`s ->
 * `proj_out` -> + input), each block LayerNorm -> self-attention, LayerNorm -> cross-attention
 * over the text context, LayerNorm -> GEGLU feed-forward, all residual. `proj_in`/`proj_out`
 * are 1x1 convs (SD1) or Linear layers (SD2, `use_linear_in_transformer`).
 *
 * @module
 */
import { add, attention, geglu, permute, reshape, scope, type Tensor } from "../../gpu/mod.ts";
import type {
  Conv2dModule,
  GroupNormModule,
  LayerNormModule,
  LinearModule,
  ModuleBuilder,
} from "./weights.ts";

/** diffusers `Attention` (the U-Net's `attn1`/`attn2`): bias-free q/k/v, `to_out.0` with bias. */
export class CrossAttention {
  readonly toQ: LinearModule;
  readonly toK: LinearModule;
  readonly toV: LinearModule;
  readonly toOut: LinearModule;

  constructor(b: ModuleBuilder, readonly name: string, readonly heads: number) {
    this.toQ = b.linear(`${name}.to_q`);
    this.toK = b.linear(`${name}.to_k`);
    this.toV = b.linear(`${name}.to_v`);
    this.toOut = b.linear(`${name}.to_out.0`);
  }

  /**
   * x [B, T, C]; `context` [B, S, D] for cross-attention, null for self-attention; `residual`
   * (the block's input) is added in `to_out`'s GEMM.
   */
  forward(x: Tensor, context: Tensor | null, residual: Tensor | null = null): Tensor {
    return scope(() => {
      const ctx = context ?? x;
      // q, k, v stay in the token layout [B, T, H*D]: the kernels address the heads by stride
      // (scale 1/sqrt(D) as diffusers).
      const o = attention(
        this.toQ.forward(x),
        this.toK.forward(ctx),
        this.toV.forward(ctx),
        { heads: this.heads },
      );
      return this.toOut.forward(o, residual);
    });
  }
}

/** GEGLU feed-forward: `ff.net.0.proj` (to 2F) -> x * gelu(gate) -> `ff.net.2` (back to C). */
export class FeedForward {
  readonly proj: LinearModule;
  readonly out: LinearModule;
  constructor(b: ModuleBuilder, readonly name: string) {
    this.proj = b.linear(`${name}.net.0.proj`);
    this.out = b.linear(`${name}.net.2`);
  }
  /** `residual` (the block's input) is added in `ff.net.2`'s GEMM. */
  forward(x: Tensor, residual: Tensor | null = null): Tensor {
    return scope(() => this.out.forward(geglu(this.proj.forward(x)), residual));
  }
}

/** diffusers `BasicTransformerBlock` with LayerNorms (SD's only kind). */
export class BasicTransformerBlock {
  readonly norm1: LayerNormModule;
  readonly attn1: CrossAttention;
  readonly norm2: LayerNormModule;
  readonly attn2: CrossAttention;
  readonly norm3: LayerNormModule;
  readonly ff: FeedForward;

  constructor(b: ModuleBuilder, readonly name: string, heads: number, eps: number) {
    this.norm1 = b.layerNorm(`${name}.norm1`, eps);
    this.attn1 = new CrossAttention(b, `${name}.attn1`, heads);
    this.norm2 = b.layerNorm(`${name}.norm2`, eps);
    this.attn2 = new CrossAttention(b, `${name}.attn2`, heads);
    this.norm3 = b.layerNorm(`${name}.norm3`, eps);
    this.ff = new FeedForward(b, `${name}.ff`);
  }

  forward(x: Tensor, context: Tensor): Tensor {
    return scope(() => {
      // Each residual add happens in the epilogue of the sublayer's last GEMM.
      const h1 = this.attn1.forward(this.norm1.forward(x), null, x);
      const h2 = this.attn2.forward(this.norm2.forward(h1), context, h1);
      return this.ff.forward(this.norm3.forward(h2), h2);
    });
  }
}

/** Settings of the transformers of one U-Net. */
export interface TransformerSpec {
  heads: number;
  depth: number;
  normGroups: number;
  /** GroupNorm eps at the input (1e-6 in SD). */
  normEps: number;
  layerNormEps: number;
  /** `proj_in`/`proj_out` are Linear (SD2) rather than 1x1 convs (SD1). */
  linearProjection: boolean;
}

/** diffusers `Transformer2DModel` over NCHW feature maps. */
export class Transformer2DModel {
  readonly norm: GroupNormModule;
  readonly projIn: LinearModule | Conv2dModule;
  readonly blocks: BasicTransformerBlock[];
  readonly projOut: LinearModule | Conv2dModule;

  constructor(b: ModuleBuilder, readonly name: string, readonly spec: TransformerSpec) {
    this.norm = b.groupNorm(`${name}.norm`, spec.normGroups, spec.normEps);
    this.projIn = spec.linearProjection ? b.linear(`${name}.proj_in`) : b.conv(`${name}.proj_in`);
    this.blocks = Array.from(
      { length: spec.depth },
      (_, i) =>
        new BasicTransformerBlock(
          b,
          `${name}.transformer_blocks.${i}`,
          spec.heads,
          spec.layerNormEps,
        ),
    );
    this.projOut = spec.linearProjection
      ? b.linear(`${name}.proj_out`)
      : b.conv(`${name}.proj_out`);
  }

  /** x [B, C, H, W], context [B, S, D] -> [B, C, H, W]. */
  forward(x: Tensor, context: Tensor): Tensor {
    return scope(() => {
      const [n, , h, w] = x.shape;
      const toTokens = (y: Tensor) => reshape(permute(y, [0, 2, 3, 1]), [n, h * w, y.shape[1]]);
      const toMap = (y: Tensor) => permute(reshape(y, [n, h, w, y.shape[2]]), [0, 3, 1, 2]);
      const normed = this.norm.forward(x);
      // The conv projection runs on the map, the linear one on the tokens (same math).
      let t = this.spec.linearProjection
        ? this.projIn.forward(toTokens(normed))
        : toTokens(this.projIn.forward(normed));
      for (const block of this.blocks) t = block.forward(t, context);
      // The conv projection adds the input in its own store; the linear one works on tokens.
      return this.spec.linearProjection
        ? add(toMap(this.projOut.forward(t)), x)
        : this.projOut.forward(toMap(t), x);
    });
  }
}
