/**
 * The GPU steps the LoRA tools share: a module's weight delta `up @ down * scale` as one matrix
 * (3x3 convs flattened to [out, in*kh*kw], as kohya's `conv2d(down.permute(1,0,2,3), up)`
 * computes it), and the way back from a matrix to LoRA factors: a rank-k SVD
 * (`up = U·diag(S)`, `down = Vh`) in lorakit's sign convention, optionally clamped to a quantile
 * of the signed factor values as kohya's extract and SVD-merge tools do.
 *
 * Only the factors (k·(m+n) values) and the singular values come back to the host; the products
 * and the SVD's products with the matrix run on the GPU.
 *
 * @module
 */
import { addScaled, matmul, scale, Tensor } from "../../gpu/mod.ts";
import { quantile, svdTopK } from "../../gpu/linalg/mod.ts";
import { decodeToF32, encodeFromF32 } from "../io/dtype.ts";
import type { HostTensor } from "../io/tensor_source.ts";

/** kohya's `--precision` / `--save_precision` names. */
export type Precision = "float" | "fp16" | "bf16";

/**
 * Round values to a PyTorch dtype in place (`float` keeps them). The engine computes in f32; for
 * kohya's `--precision fp16|bf16` the inputs and each result are rounded as torch's `.to(dtype)`
 * would, which reproduces kohya's rounding of stored values (not of every intermediate sum).
 */
export function roundToPrecision(values: Float32Array, precision: Precision): Float32Array {
  if (precision === "float") return values;
  const dtype = precision === "fp16" ? "F16" : "BF16";
  return decodeToF32(dtype, encodeFromF32(dtype, values), values);
}

/** [rows, cols] of a weight as a matrix: [out, in*kh*kw] for a conv, [out, in] for a Linear. */
export function matrixShape(shape: readonly number[]): [number, number] {
  const cols = shape.slice(1).reduce((a, b) => a * b, 1);
  return [shape[0], cols];
}

/** Upload a host tensor as a 2-D f32 matrix (convs flattened). */
export function uploadMatrix(t: HostTensor): Tensor {
  return Tensor.fromArray(t.data, matrixShape(t.shape));
}

/**
 * `acc + factor * up @ down` on the GPU, `up` [out, r(,1,1)] and `down` [r, in(,kh,kw)] given as
 * host tensors; `acc` null starts from zero. `acc` is disposed (the result replaces it).
 */
export function addLoraProduct(
  acc: Tensor | null,
  up: HostTensor,
  down: HostTensor,
  factor: number,
): Tensor {
  const u = uploadMatrix(up), d = uploadMatrix(down);
  const prod = matmul(u, d);
  u.dispose();
  d.dispose();
  let out: Tensor;
  if (acc === null) out = scale(prod, factor);
  else {
    out = addScaled(acc, prod, factor);
    acc.dispose();
  }
  prod.dispose();
  return out;
}

/** LoRA factors of one matrix as host arrays (row-major). */
export interface LowRankFactors {
  /** [m, k] = U·diag(S) (clamped when asked). */
  up: Float32Array;
  /** [k, n] = Vh (clamped when asked). */
  down: Float32Array;
  rank: number;
  /** The k singular values kept, descending. */
  S: Float64Array;
  /** The clamp bound h (values clamped to [-h, h]), or null without a clamp. */
  clamp: number | null;
}

/**
 * Rank-`rank` factors of `w` (f32 [m, n] on the GPU; not disposed): `up = U[:, :k]·diag(S[:k])`,
 * `down = Vh[:k]`, k = min(rank, m, n), with lorakit's sign rule (each left singular vector's
 * entry of largest magnitude positive). With `clampQuantile`, both factors are clamped to
 * `[-h, h]`, h = the quantile (torch.quantile's linear interpolation) of the signed values of
 * `up` and `down` together, as kohya's extract_lora_from_models and svd_merge_lora do.
 */
export async function lowRankFactors(
  w: Tensor,
  rank: number,
  clampQuantile: number | null = null,
): Promise<LowRankFactors> {
  const [m, n] = w.shape;
  const k = Math.min(rank, m, n);
  const svd = await svdTopK(w, k);
  let u: Float32Array, vt: Float32Array;
  try {
    [u, vt] = [await svd.U.toArray(), await svd.Vt.toArray()];
  } finally {
    svd.U.dispose();
    svd.Vt.dispose();
  }
  // U·diag(S) in float32, as torch's `U @ torch.diag(S)` rounds it.
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < k; j++) u[i * k + j] = Math.fround(u[i * k + j] * Math.fround(svd.S[j]));
  }
  let clamp: number | null = null;
  if (clampQuantile !== null) {
    const all = new Float32Array(u.length + vt.length);
    all.set(u);
    all.set(vt, u.length);
    const hi = quantile(all, clampQuantile);
    clamp = hi;
    clampInPlace(u, -hi, hi);
    clampInPlace(vt, -hi, hi);
  }
  return { up: u, down: vt, rank: k, S: svd.S, clamp };
}

/** torch.clamp(min=lo, max=hi): the max bound wins when lo > hi (a negative quantile). */
function clampInPlace(x: Float32Array, lo: number, hi: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i] < lo ? lo : x[i];
    x[i] = v > hi ? hi : v;
  }
}

/** Host factors shaped as kohya stores them: up [out, k(,1,1)], down [k, in(,kh,kw)]. */
export function factorsAsLora(
  f: Pick<LowRankFactors, "up" | "down" | "rank">,
  weightShape: readonly number[],
): { up: HostTensor; down: HostTensor } {
  const [out, inp] = weightShape;
  const k = f.rank;
  if (weightShape.length === 4) {
    return {
      up: { shape: [out, k, 1, 1], data: f.up },
      down: { shape: [k, inp, weightShape[2], weightShape[3]], data: f.down },
    };
  }
  return { up: { shape: [out, k], data: f.up }, down: { shape: [k, inp], data: f.down } };
}
