/**
 * `quantile` with linear interpolation, as `torch.quantile(x, q)` computes it (LoRA extraction
 * and SVD merging clamp both factors to a quantile of all their values). Runs on the host: the input is at most a few
 * hundred thousand values (rank x (out + in)), read back once per module, and a sort of that size
 * costs milliseconds. torch.quantile refuses inputs over 2^24 elements ("quantile() input tensor
 * is too large"); LoRA factors stay far below (rank 128 of a 1280 x 11520 conv: 1.6M), and this
 * function has no such limit.
 *
 * @module
 */

/**
 * The q-quantile (0 <= q <= 1) of `values` with linear interpolation between the two nearest
 * order statistics: rank = q·(N-1), lerp(sorted[floor], sorted[ceil], rank - floor). For a
 * Float32Array the rank and the interpolation are rounded to float32 as PyTorch does for a float32
 * tensor (q itself is a float32 scalar there), so the result equals torch's bit for bit in the
 * common case; for other inputs the arithmetic is float64. NaN if any value is NaN.
 */
export function quantile(values: ArrayLike<number>, q: number): number {
  const n = values.length;
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile: q must be in [0, 1], got ${q}`);
  if (n === 0) throw new RangeError("quantile: empty input");
  const f32 = values instanceof Float32Array;
  const sorted = f32 ? Float32Array.from(values) : Float64Array.from(values);
  for (let i = 0; i < n; i++) if (Number.isNaN(sorted[i])) return NaN;
  sorted.sort();
  const round = f32 ? Math.fround : (x: number) => x;
  const rank = round(round(q) * (n - 1));
  const below = Math.floor(rank), above = Math.ceil(rank);
  const w = round(rank - below);
  const a = sorted[below], b = sorted[above];
  // torch.lerp: a + w·(b - a) for w < 0.5, else b - (b - a)·(1 - w), each step in the dtype.
  const diff = round(b - a);
  return w < 0.5 ? round(a + round(w * diff)) : round(b - round(diff * round(1 - w)));
}
