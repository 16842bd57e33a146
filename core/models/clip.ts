/**
 * The CLIP text encoder in Hugging Face `CLIPTextModel`'s layout (SD2's OpenCLIP weights arrive
 * converted to it by the loader): token + position embeddings, pre-LN transformer layers with
 * causal self-attention and a QuickGELU (SD1) or GELU (SD2) MLP, and the final LayerNorm.
 * `clipSkip` n runs all but the last n-1 layers and then the final LayerNorm, as kohya and
 * A1111 do; kohya's long prompts encode 77-token windows separately and stitch the rows.
 *
 * @module
 */
import { add, attention, embedding, gelu, quickGelu, scope, type Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { stitchRows, WINDOW_LENGTH, type WindowedIds } from "../text/token_windows.ts";
import type { TextEncoderConfig } from "../model_config/config.ts";
import { gatherRows } from "./ops.ts";
import {
  type LayerModule,
  type LayerNormModule,
  type LinearModule,
  type ModelWeights,
  ModuleBuilder,
} from "./weights.ts";

/** Options of {@link ClipTextEncoder.forward}. */
export interface ClipForwardOptions {
  /** 1 (default): the last layer's output; 2: one layer earlier (kohya's `--clip_skip 2`). */
  clipSkip?: number;
}

/** Multi-head causal self-attention with q/k/v/out projections. */
class ClipAttention {
  readonly q: LinearModule;
  readonly k: LinearModule;
  readonly v: LinearModule;
  readonly out: LinearModule;

  constructor(b: ModuleBuilder, p: string, readonly heads: number) {
    this.q = b.linear(`${p}.q_proj`);
    this.k = b.linear(`${p}.k_proj`);
    this.v = b.linear(`${p}.v_proj`);
    this.out = b.linear(`${p}.out_proj`);
  }

  /** `residual` (the layer's input) is added in out_proj's GEMM. */
  forward(x: Tensor, residual: Tensor | null = null): Tensor {
    // q, k, v in the token layout [B, T, H*D]: the kernels address the heads by stride.
    const o = attention(this.q.forward(x), this.k.forward(x), this.v.forward(x), {
      causal: true,
      heads: this.heads,
    });
    return this.out.forward(o, residual);
  }
}

/** One pre-LN encoder layer: x + attn(ln1(x)), then x + mlp(ln2(x)). */
class ClipLayer {
  readonly ln1: LayerNormModule;
  readonly attn: ClipAttention;
  readonly ln2: LayerNormModule;
  readonly fc1: LinearModule;
  readonly fc2: LinearModule;

  constructor(b: ModuleBuilder, p: string, readonly config: TextEncoderConfig) {
    const eps = config.layerNormEps;
    this.ln1 = b.layerNorm(`${p}.layer_norm1`, eps);
    this.attn = new ClipAttention(b, `${p}.self_attn`, config.numHeads);
    this.ln2 = b.layerNorm(`${p}.layer_norm2`, eps);
    this.fc1 = b.linear(`${p}.mlp.fc1`);
    this.fc2 = b.linear(`${p}.mlp.fc2`);
  }

  forward(x: Tensor): Tensor {
    return scope(() => {
      // The residual adds happen in out_proj's and fc2's GEMMs.
      const h = this.attn.forward(this.ln1.forward(x), x);
      const a = this.fc1.forward(this.ln2.forward(h));
      const act = this.config.hiddenAct === "gelu" ? gelu(a) : quickGelu(a);
      return this.fc2.forward(act, h);
    });
  }
}

/** The CLIP text transformer of SD 1.x/2.x. */
export class ClipTextEncoder {
  readonly config: TextEncoderConfig;
  readonly weights: ModelWeights;
  readonly layers: ClipLayer[];
  readonly finalNorm: LayerNormModule;
  /** Internal name prefix of the transformer, `<part>.text_model`. */
  readonly prefix: string;
  readonly #modules: LayerModule[];

  /**
   * `part` is the internal prefix of the encoder's weights: `text_encoder`, or SDXL's
   * `text_encoder_2`.
   */
  constructor(weights: ModelWeights, config: TextEncoderConfig, part = "text_encoder") {
    this.config = config;
    this.weights = weights;
    const p = this.prefix = `${part}.text_model`;
    const b = new ModuleBuilder(weights);
    weights.get(`${p}.embeddings.token_embedding.weight`);
    weights.get(`${p}.embeddings.position_embedding.weight`);
    this.layers = Array.from(
      { length: config.numLayers },
      (_, i) => new ClipLayer(b, `${p}.encoder.layers.${i}`, config),
    );
    this.finalNorm = b.layerNorm(`${p}.final_layer_norm`, config.layerNormEps);
    this.#modules = b.layers;
  }

  /** Storage dtype of the weights and activations. */
  get dtype(): Tensor["dtype"] {
    return this.weights.dtype;
  }

  /** Every Linear of the encoder with its internal name (LoRA's `lora_te_*` targets). */
  modules(): LayerModule[] {
    return [...this.#modules];
  }

  /** Check `ids` (batch x maxPositions, in the vocabulary); returns the batch size. */
  #checkIds(ids: Int32Array): number {
    const t = this.config.maxPositions;
    if (ids.length === 0 || ids.length % t !== 0) {
      throw new LorakitError(
        `text encoder: expected token ids shaped [batch, ${t}] (a multiple of ${t} values), ` +
          `found ${ids.length} values`,
      );
    }
    const v = this.config.vocabSize;
    const bad = ids.findIndex((id) => id < 0 || id >= v);
    if (bad >= 0) {
      throw new LorakitError(
        `text encoder: token id ${ids[bad]} at position ${bad} is outside the vocabulary ` +
          `[0, ${v})`,
      );
    }
    return ids.length / t;
  }

  /**
   * Hidden states [B, 77, C] for token ids [B x 77] (row-major): clipSkip 1 is HF's
   * `last_hidden_state`; clipSkip n takes the output n-1 layers before the last, through the
   * final LayerNorm.
   */
  forward(ids: Int32Array, opts: ClipForwardOptions = {}): Tensor {
    const skip = opts.clipSkip ?? 1;
    const n = this.config.numLayers;
    if (!Number.isInteger(skip) || skip < 1 || skip > n) {
      throw new LorakitError(`--clip_skip: expected an integer from 1 to ${n}, found ${skip}`);
    }
    return scope(() => {
      const [h] = this.hiddenStates(ids, [n - (skip - 1)]);
      return this.finalNorm.forward(h);
    });
  }

  /**
   * Hidden states [B, 77, C] after each count of layers in `after` (0: the embeddings; HF's
   * `hidden_states[k]`), without the final LayerNorm, from one pass that stops at the largest.
   * SDXL conditions on `hidden_states[-2]` of both encoders (the penultimate layer's output).
   */
  hiddenStates(ids: Int32Array, after: readonly number[]): Tensor[] {
    const n = this.config.numLayers;
    const bad = after.find((k) => !Number.isInteger(k) || k < 0 || k > n);
    if (bad !== undefined) {
      throw new LorakitError(
        `text encoder: hidden state ${bad} requested, expected 0 to ${n} (its layer count)`,
      );
    }
    const batch = this.#checkIds(ids);
    const t = this.config.maxPositions;
    const p = this.prefix;
    return scope(() => {
      const w = this.weights;
      const tok = embedding(w.get(`${p}.embeddings.token_embedding.weight`), ids, [batch, t]);
      const positions = Int32Array.from({ length: t }, (_, i) => i);
      const pos = embedding(w.get(`${p}.embeddings.position_embedding.weight`), positions, [t]);
      let h = add(tok, pos);
      const out: Tensor[] = after.map(() => h);
      const last = Math.max(0, ...after);
      for (let i = 0; i <= last; i++) {
        if (i > 0) h = this.layers[i - 1].forward(h);
        after.forEach((k, j) => {
          if (k === i) out[j] = h;
        });
      }
      return out;
    });
  }

  /**
   * kohya's long-prompt encoding: `windowed.ids` [B, n, 77] (from `windowIds`) encoded as B*n
   * windows, then stitched per caption into [B, 75n + 2, C] (see `stitchRows`).
   */
  forwardWindows(windowed: WindowedIds, opts: ClipForwardOptions = {}): Tensor {
    const { batch, windows } = windowed;
    if (windowed.ids.length !== batch * windows * WINDOW_LENGTH) {
      throw new LorakitError(
        `text encoder: expected ${batch}x${windows}x${WINDOW_LENGTH} window ids, found ` +
          `${windowed.ids.length}`,
      );
    }
    return scope(() => {
      const states = this.forward(windowed.ids, opts);
      if (windows === 1) return states;
      const rows = stitchRows(windows);
      const per = windows * WINDOW_LENGTH;
      const all = new Int32Array(batch * rows.length);
      for (let b = 0; b < batch; b++) {
        for (let r = 0; r < rows.length; r++) all[b * rows.length + r] = b * per + rows[r];
      }
      const c = this.config.hiddenSize;
      return gatherRows(states, all, [batch, rows.length, c]);
    });
  }

  /** Free the weights. */
  dispose(): void {
    this.weights.dispose();
  }
}
