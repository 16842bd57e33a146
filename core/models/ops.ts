/**
 * Composite tensor ops the models need beyond the engine's primitives, built only from exported
 * differentiable ops (no host reads, so training can back-propagate through them): a row
 * gather, PyTorch's nearest resize to an explicit size, a clamp, and a dtype cast that is free
 * when the dtype already matches. Model-owned constants live in a `ConstCache`.
 *
 * @module
 */
import {
  add,
  affine,
  cast,
  concat,
  embedding,
  matmul,
  permute,
  reshape,
  scale,
  scope,
  slice,
  softmax,
  sqrt,
  square,
  type Tensor,
  upsampleNearest2x,
} from "../../gpu/mod.ts";

/**
 * Constant tensors (selection matrices) built once per shape and dtype and owned by a model, so
 * a forward pass uploads nothing; `dispose()` frees them with the model.
 */
export class ConstCache {
  #map = new Map<string, Tensor>();

  /** The constant for `key`, made (and kept out of any scope) on first use. */
  get(key: string, make: () => Tensor): Tensor {
    let t = this.#map.get(key);
    if (t === undefined || t.isDisposed) {
      t = make().keep();
      this.#map.set(key, t);
    }
    return t;
  }

  /** Free every constant. */
  dispose(): void {
    for (const t of this.#map.values()) t.dispose();
    this.#map.clear();
  }
}

/**
 * Rows `rows` of x viewed as [R, C] (C its last dimension), shaped `outShape`. An embedding
 * lookup, so the backward is a scatter-add.
 */
export function gatherRows(x: Tensor, rows: Int32Array, outShape: number[]): Tensor {
  const c = x.shape[x.rank - 1];
  return reshape(embedding(reshape(x, [-1, c]), rows, [rows.length]), outShape);
}

/** Row indices `p * inLen + floor(i * inLen / outLen)` for every plane p: PyTorch's nearest. */
function nearestRows(planes: number, inLen: number, outLen: number): Int32Array {
  const rows = new Int32Array(planes * outLen);
  for (let p = 0; p < planes; p++) {
    for (let i = 0; i < outLen; i++) {
      rows[p * outLen + i] = p * inLen + Math.floor((i * inLen) / outLen);
    }
  }
  return rows;
}

/**
 * Nearest-neighbour resize of x [N, C, H, W] to [N, C, outH, outW] with PyTorch's rule
 * `src = floor(dst * in / out)` (diffusers' `upsample_size` path for latents that are not a
 * multiple of 8). For outputs of 2x or 2x - 1 that rule picks `floor(dst / 2)`, so it is the 2x
 * kernel, cropped; other sizes use two row gathers.
 */
export function upsampleNearest(x: Tensor, outH: number, outW: number): Tensor {
  const [n, c, h, w] = x.shape;
  const near2x = (o: number, i: number) => o === 2 * i || o === 2 * i - 1;
  if (near2x(outH, h) && near2x(outW, w)) {
    let y = upsampleNearest2x(x);
    if (outH !== 2 * h) y = slice(y, 2, 0, outH);
    if (outW !== 2 * w) y = slice(y, 3, 0, outW);
    return y;
  }
  const planes = n * c;
  const tall = gatherRows(reshape(x, [planes * h, w]), nearestRows(planes, h, outH), [
    planes,
    outH,
    w,
  ]);
  // Columns: gather rows of the transpose, then transpose back.
  const t = reshape(permute(tall, [0, 2, 1]), [planes * w, outH]);
  const wide = gatherRows(t, nearestRows(planes, w, outW), [planes, outW, outH]);
  return reshape(permute(wide, [0, 2, 1]), [n, c, outH, outW]);
}

/** max(y, 0) as (y + |y|) / 2 with |y| = sqrt(y^2), which is exact for finite f32 values. */
function relu(y: Tensor): Tensor {
  return scale(add(y, sqrt(square(y))), 0.5);
}

/**
 * Clamp x to [lo, hi] (the VAE's logvar to [-30, 20]) from elementwise ops:
 * `max(x, lo) = lo + relu(x - lo)`, `min(z, hi) = hi - relu(hi - z)`. Values inside the range
 * come back within a rounding of `max(|lo|, |hi|)`.
 */
export function clamp(x: Tensor, lo: number, hi: number): Tensor {
  const z = affine(relu(affine(x, 1, -lo)), 1, lo);
  return affine(relu(affine(z, -1, hi)), -1, hi);
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
