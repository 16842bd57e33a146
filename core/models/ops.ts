/**
 * Composite tensor ops the models need beyond the engine's primitives, built only from exported
 * differentiable ops (no host reads, so training can back-propagate through them): a row
 * gather, a dtype cast that is free when the dtype already matches, and attention for heads too
 * wide for the fused kernel.
 *
 * @module
 */
import {
  cast,
  concat,
  embedding,
  matmul,
  reshape,
  scale,
  scope,
  slice,
  softmax,
  type Tensor,
} from "../../gpu/mod.ts";

/**
 * Rows `rows` of x viewed as [R, C] (C its last dimension), shaped `outShape`. An embedding
 * lookup, so the backward is a scatter-add.
 */
export function gatherRows(x: Tensor, rows: Int32Array, outShape: number[]): Tensor {
  const c = x.shape[x.rank - 1];
  return reshape(embedding(reshape(x, [-1, c]), rows, [rows.length]), outShape);
}

/** `x` in `dtype`, cast when it differs (f32 inputs from host code into an f16 model). */
export function toDtype(x: Tensor, dtype: Tensor["dtype"]): Tensor {
  return x.dtype === dtype ? x : cast(x, dtype);
}

/**
 * Single-head attention `softmax(q kᵀ / sqrt(d)) v` for q/k/v [B, T, d] of any width, computed a
 * block of query rows at a time (at most `blockBytes` of f32 scores per block), so no full
 * [T, T] score matrix is ever stored (4096 x 4096 for the VAE at 512 px). Used where the head is
 * wider than the fused attention kernel supports.
 */
export function rowBlockedAttention(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  blockBytes = 16 << 20,
): Tensor {
  const [, tokens, d] = q.shape;
  const rows = Math.max(1, Math.min(tokens, Math.floor(blockBytes / (4 * k.shape[1]))));
  const parts: Tensor[] = [];
  for (let s0 = 0; s0 < tokens; s0 += rows) {
    const qb = slice(q, 1, s0, Math.min(tokens, s0 + rows));
    parts.push(scope(() => {
      const scores = scale(matmul(qb, k, { transB: true }), 1 / Math.sqrt(d));
      return matmul(softmax(scores), v);
    }));
  }
  return parts.length === 1 ? parts[0] : concat(parts, 1);
}
