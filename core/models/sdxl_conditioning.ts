/**
 * SDXL's conditioning, as kohya's `train_util.get_hidden_states_sdxl` and
 * `sdxl_train_util.get_size_embeddings` (and diffusers' SDXL pipeline) compute it:
 * - the context: `cat(te1 hidden_states[-2], te2 hidden_states[-2])` along the width (both the
 *   penultimate layer's output, without the final LayerNorm);
 * - the pooled embedding: TE2's last hidden state (final LayerNorm applied) at each prompt's EOS
 *   token (the first highest id, HF's `argmax`), through `text_projection` (no bias);
 * - the vector `y`: `cat(pooled, emb(orig h), emb(orig w), emb(crop top), emb(crop left),
 *   emb(target h), emb(target w))`, each `emb` the sinusoidal embedding of width
 *   `timeIdEmbedDim` (cos half first, `exp(-ln(10000) i / half)`, in f32 as PyTorch computes).
 *
 * @module
 */
import { concat, reshape, scope, type Tensor, timestepEmbedding } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { AddEmbeddingConfig } from "../model_config/config.ts";
import type { ClipTextEncoder } from "./clip.ts";
import { gatherRows, toDtype } from "./ops.ts";
import { LinearModule } from "./weights.ts";

/** SDXL's text conditioning of one batch. */
export interface SdxlTextEncoding {
  /** [B, 77, C1 + C2]: the U-Net's cross-attention context. */
  context: Tensor;
  /** [B, P]: TE2's projected pooled output, the head of `y`. */
  pooled: Tensor;
}

/** TE2's outputs: what SDXL conditions on, plus its last hidden state. */
export interface Te2Outputs {
  /** `hidden_states[-2]` [B, 77, C2] (no final LayerNorm). */
  penultimate: Tensor;
  /** `last_hidden_state` [B, 77, C2] (final LayerNorm applied). */
  last: Tensor;
  /** `text_embeds` [B, P]. */
  pooled: Tensor;
}

/**
 * Row of each prompt's EOS in ids [B x T] viewed as [B*T] rows: the first position holding the
 * row's highest id (`<|endoftext|>` 49407 with either padding), as transformers' pooling does.
 */
export function eosRows(ids: Int32Array, tokens: number): Int32Array {
  const batch = ids.length / tokens;
  const rows = new Int32Array(batch);
  for (let b = 0; b < batch; b++) {
    let best = 0;
    for (let i = 1; i < tokens; i++) {
      if (ids[b * tokens + i] > ids[b * tokens + best]) best = i;
    }
    rows[b] = b * tokens + best;
  }
  return rows;
}

/**
 * TE2's `text_projection` (internal `text_encoder_2.text_projection.weight`, the Linear weight
 * W out x in: `pooled = x @ W^T`, which is OpenCLIP's `x @ P` for the stored `P = W^T`).
 */
export function textProjection(te2: ClipTextEncoder): LinearModule {
  const part = te2.prefix.replace(/\.text_model$/, "");
  return new LinearModule(te2.weights, `${part}.text_projection`);
}

/**
 * TE2 (`CLIPTextModelWithProjection`) on ids [B x 77]: penultimate, last and pooled. `layers`
 * picks another hidden state than the penultimate for `penultimate` (the output after that many
 * layers; kohya's gen_img `--clip_skip k` on SDXL is `numLayers + 1 - k`).
 */
export function encodeTe2(
  te2: ClipTextEncoder,
  ids: Int32Array,
  layers = te2.config.numLayers - 1,
): Te2Outputs {
  const n = te2.config.numLayers;
  const proj = textProjection(te2);
  return scope(() => {
    const [penultimate, top] = te2.hiddenStates(ids, [layers, n]);
    const last = te2.finalNorm.forward(top);
    const t = te2.config.maxPositions;
    const rows = eosRows(ids, t);
    const eos = gatherRows(last, rows, [rows.length, te2.config.hiddenSize]);
    return { penultimate, last, pooled: proj.forward(eos) };
  });
}

/**
 * SDXL's text conditioning from both encoders' ids (tokenizer 1 pads with EOS, tokenizer 2
 * with 0; the pooled output does not depend on the padding).
 */
export function encodeSdxlText(
  te1: ClipTextEncoder,
  te2: ClipTextEncoder,
  ids1: Int32Array,
  ids2: Int32Array,
): SdxlTextEncoding {
  if (ids1.length !== ids2.length) {
    throw new LorakitError(
      `SDXL text encoders: expected the same number of token ids for both, found ` +
        `${ids1.length} and ${ids2.length}`,
    );
  }
  return scope(() => {
    const [h1] = te1.hiddenStates(ids1, [te1.config.numLayers - 1]);
    const { penultimate, pooled } = encodeTe2(te2, ids2);
    const context = concat([h1, toDtype(penultimate, h1.dtype)], 2);
    return { context, pooled };
  });
}

/** One sample's SDXL size conditioning. */
export interface SdxlSizeCond {
  /** Original image [height, width]. */
  originalSize: [number, number];
  /** Crop [top, left]. */
  cropTopLeft: [number, number];
  /** Target [height, width]. */
  targetSize: [number, number];
}

/** The 6 time ids of a sample, in SDXL's order. */
export function timeIds(c: SdxlSizeCond): number[] {
  return [...c.originalSize, ...c.cropTopLeft, ...c.targetSize];
}

/**
 * Sinusoidal embeddings of each sample's time ids (`ids` [B][numTimeIds]) -> [B, numTimeIds x
 * timeIdEmbedDim], kohya's `get_size_embeddings` (= diffusers' `add_time_proj`).
 */
export function sizeEmbeddings(
  ids: readonly (readonly number[])[],
  add: AddEmbeddingConfig,
  dtype: Tensor["dtype"] = "f32",
): Tensor {
  const bad = ids.findIndex((r) => r.length !== add.numTimeIds || !r.every(Number.isFinite));
  if (bad >= 0) {
    throw new LorakitError(
      `SDXL size conditioning: sample ${bad}: expected ${add.numTimeIds} finite time ids ` +
        `(original h, w, crop top, left, target h, w), found [${ids[bad].join(",")}]`,
    );
  }
  const flat = ids.flat();
  return scope(() => {
    const e = timestepEmbedding(flat, add.timeIdEmbedDim, {
      flipSinToCos: true,
      freqShift: 0,
      dtype,
    });
    return reshape(e, [ids.length, add.numTimeIds * add.timeIdEmbedDim]);
  });
}

/** The U-Net's vector `y` [B, adm]: `cat(pooled, sizeEmbeddings(ids))`. */
export function sdxlVector(
  pooled: Tensor,
  ids: readonly (readonly number[])[],
  add: AddEmbeddingConfig,
): Tensor {
  if (pooled.rank !== 2 || pooled.shape[0] !== ids.length) {
    throw new LorakitError(
      `SDXL vector: expected a pooled embedding [${ids.length}, P], found [${pooled.shape}]`,
    );
  }
  const width = pooled.shape[1] + add.numTimeIds * add.timeIdEmbedDim;
  if (width !== add.inChannels) {
    throw new LorakitError(
      `SDXL vector: pooled width ${pooled.shape[1]} + ${add.numTimeIds} x ${add.timeIdEmbedDim} ` +
        `= ${width}, but the U-Net's label_emb takes ${add.inChannels}`,
    );
  }
  return scope(() => concat([pooled, sizeEmbeddings(ids, add, pooled.dtype)], 1));
}
