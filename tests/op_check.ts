/**
 * Shared test harness for GPU ops: every op is compared with a float64 CPU reference (forward),
 * and its analytic backward with central finite differences of that reference (gradient check),
 * for a random upstream gradient. Also checks the buffer pool returns to its baseline.
 */
import { backward, initGpu, rt, scope, Tensor } from "../gpu/mod.ts";
import { randomNormals } from "../gpu/random.ts";

/** Deterministic normal samples (mulberry32 + Box-Muller). */
export function randn(n: number, seed = 1, scale = 1): Float32Array {
  return randomNormals(n, seed, { scale, pairs: false });
}

/** `max|a - b| / max(|b|, tiny)`: the relative error measure the fixture READMEs use. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-30);
}

/** Assert relErr below `tol`, with a helpful message. */
export function assertClose(
  what: string,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: number,
): void {
  const e = relErr(got, want);
  if (!(e <= tol)) {
    let worst = 0;
    for (let i = 0; i < got.length; i++) {
      if (Math.abs(got[i] - want[i]) > Math.abs(got[worst] - want[worst])) worst = i;
    }
    throw new Error(
      `${what}: relative error ${e.toExponential(3)} > ${tol} (worst at ${worst}: got ${
        got[worst]
      }, want ${want[worst]})`,
    );
  }
}

export interface OpCase {
  name: string;
  /** Input shapes (one per input). */
  shapes: number[][];
  /** The op on GPU tensors. */
  gpu: (xs: Tensor[]) => Tensor;
  /** The float64 reference: inputs -> output (flat, row-major). */
  cpu: (xs: Float64Array[]) => Float64Array;
  /** Inputs not differentiated (e.g. integer ids) by index. */
  noGrad?: number[];
  /** Custom input data by index. */
  data?: (Float32Array | undefined)[];
  dtype?: "f32" | "f16";
  /** Per-input dtypes where they differ from `dtype` (mixed precision: an f32 weight). */
  dtypes?: ("f32" | "f16" | undefined)[];
  tol?: number;
  gradTol?: number;
  /** Finite-difference step. */
  eps?: number;
  seed?: number;
}

/** Run the forward comparison and gradient check for one op. */
export async function checkOp(c: OpCase): Promise<void> {
  await initGpu();
  const dtype = c.dtype ?? "f32";
  const tol = c.tol ?? (dtype === "f16" ? 2e-2 : 1e-4);
  const gradTol = c.gradTol ?? (dtype === "f16" ? 3e-2 : 1e-3);
  const eps = c.eps ?? 1e-4;
  const seed = c.seed ?? 7;
  const before = rt().storage.stats().liveBytes;
  const hostIn = c.shapes.map((s, k) =>
    c.data?.[k] ?? randn(s.reduce((a, b) => a * b, 1), seed + 13 * k)
  );
  // f16 inputs are rounded; the reference sees the rounded values.
  const xs = hostIn.map((h, k) => {
    const t = Tensor.fromArray(h, c.shapes[k], c.dtypes?.[k] ?? dtype);
    if (!c.noGrad?.includes(k)) t.requiresGrad = true;
    return t;
  });
  const exact = await Promise.all(xs.map(async (t) => Float64Array.from(await t.toArray())));
  // Intermediates of composite ops are released by the scope; only the output survives.
  const y = scope(() => c.gpu(xs));
  const ref = c.cpu(exact);
  assertClose(`${c.name} forward`, await y.toArray(), ref, tol);

  const gHost = randn(y.size, seed + 99);
  const g = Tensor.fromArray(gHost, y.shape, y.dtype);
  const gExact = Float64Array.from(await g.toArray());
  backward(y, g);
  for (let k = 0; k < xs.length; k++) {
    if (c.noGrad?.includes(k)) continue;
    const x = exact[k];
    const num = new Float64Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const keep = x[i];
      x[i] = keep + eps;
      const fp = dot(c.cpu(exact), gExact);
      x[i] = keep - eps;
      const fm = dot(c.cpu(exact), gExact);
      x[i] = keep;
      num[i] = (fp - fm) / (2 * eps);
    }
    const grad = xs[k].grad;
    if (!grad) throw new Error(`${c.name}: input ${k} received no gradient`);
    assertClose(`${c.name} grad of input ${k}`, await grad.toArray(), num, gradTol);
  }
  for (const t of xs) {
    t.grad?.dispose();
    t.dispose();
  }
  y.dispose();
  g.dispose();
  rt().flush();
  const after = rt().storage.stats().liveBytes;
  if (after !== before) {
    throw new Error(`${c.name}: pool not back to baseline (${before} -> ${after} bytes live)`);
  }
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** Row-major index helpers for CPU references. */
export function strides(shape: number[]): number[] {
  const s = new Array(shape.length).fill(1);
  for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1];
  return s;
}
