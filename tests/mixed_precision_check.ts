/**
 * Checks of the mixed-precision launches (an f32 weight read as f16 by an f16 GEMM, an f32
 * gradient stored from one): each must give, bit for bit, what cast kernels around the plain f16
 * op give, which is what the training step computed before the casts were folded in.
 */
import assert from "node:assert/strict";
import { backward, cast, initGpu, noGrad, rt, scope, Tensor } from "../gpu/mod.ts";
import { gemm, type GemmArgs } from "../gpu/ops/matmul.ts";
import { assertClose, randn } from "./op_check.ts";

/** Equal arrays, element for element (the same bits for non-NaN floats). */
export function assertSame(what: string, got: ArrayLike<number>, want: ArrayLike<number>): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < got.length; i++) {
    if (!Object.is(got[i], want[i])) {
      assert.fail(`${what}: element ${i} is ${got[i]}, the cast path gives ${want[i]}`);
    }
  }
}

/** One GEMM launch without its operands (see gemm_args.ts). */
export type GemmLayout = Omit<GemmArgs, "a" | "b" | "bias" | "residual" | "outDtype" | "tile">;

/** float64 reference of a launch: alpha · Σ_r op(A)[z, r]·op(B)[z, r] (+ residual). */
export function gemmLayoutRef(g: GemmLayout) {
  return (a: Float64Array, b: Float64Array, res: Float64Array | null): Float64Array => {
    const { M, N, K } = g;
    const out = new Float64Array(g.batch * M * N);
    for (let z = 0; z < g.batch; z++) {
      for (let r = 0; r < g.nRed; r++) {
        const oa = z * g.aOut + r * g.aRed, ob = z * g.bOut + r * g.bRed;
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < N; n++) {
            let s = 0;
            for (let k = 0; k < K; k++) {
              s += a[oa + (g.transA ? k * M + m : m * K + k)] *
                b[ob + (g.transB ? n * K + k : k * N + n)];
            }
            out[(z * M + m) * N + n] += s;
          }
        }
      }
    }
    const alpha = g.alpha ?? 1;
    for (let i = 0; i < out.length; i++) out[i] = alpha * out[i] + (res ? res[i] : 0);
    return out;
  };
}

/** A plain layout: `batch` output batches of M x N, `nRed` batches summed, no sharing. */
export function layout(
  M: number,
  N: number,
  K: number,
  o: { tA?: boolean; tB?: boolean; batch?: number; nRed?: number; alpha?: number } = {},
): { g: GemmLayout; sizes: { a: number; b: number } } {
  const batch = o.batch ?? 1, nRed = o.nRed ?? 1;
  const g: GemmLayout = {
    M,
    N,
    K,
    transA: !!o.tA,
    transB: !!o.tB,
    batch,
    nRed,
    aOut: M * K * nRed,
    bOut: K * N * nRed,
    aRed: M * K,
    bRed: K * N,
    alpha: o.alpha,
    outShape: [batch, M, N],
  };
  return { g, sizes: { a: batch * nRed * M * K, b: batch * nRed * K * N } };
}

/** The storage mixes a GEMM meets in training: weight (A or B) in f32, gradient out in f32. */
export const MIXES: MixedStorage[] = [
  { a: false, b: true, out: false },
  { a: true, b: false, out: false },
  { a: false, b: false, out: true },
];

/** Which parts of a mixed launch are stored in f32. */
export interface MixedStorage {
  a: boolean;
  b: boolean;
  out: boolean;
}

/**
 * `gemm()` with the operands marked in `f32` stored in f32 (and the result too, when `f32.out`)
 * against the f16 GEMM of the operands cast to f16 by the cast kernel (and its result cast to
 * f32): bit for bit, and both within f16 accuracy of the float64 product `ref` of the f16 inputs.
 */
export async function checkMixedGemm(
  name: string,
  g: GemmLayout,
  sizes: { a: number; b: number },
  f32: MixedStorage,
  ref?: (a: Float64Array, b: Float64Array, res: Float64Array | null) => Float64Array,
  residual = false,
): Promise<void> {
  await initGpu();
  const ha = randn(sizes.a, 1), hb = randn(sizes.b, 2);
  const out = g.outShape.reduce((x, y) => x * y, 1);
  const hr = randn(out, 3);
  const a32 = Tensor.fromArray(ha, [sizes.a], "f32"), b32 = Tensor.fromArray(hb, [sizes.b], "f32");
  const a16 = noGrad(() => cast(a32, "f16")), b16 = noGrad(() => cast(b32, "f16"));
  // The residual has the result's type; the cast path adds an f16 one (so f32 results have none).
  const r16 = residual ? Tensor.fromArray(hr, g.outShape, "f16") : null;
  const mixed = gemm({
    ...g,
    a: f32.a ? a32 : a16,
    b: f32.b ? b32 : b16,
    residual: r16,
    outDtype: f32.out ? "f32" : "f16",
  });
  const plain16 = gemm({ ...g, a: a16, b: b16, residual: r16 });
  const plain = f32.out ? noGrad(() => cast(plain16, "f32")) : plain16;
  assert.equal(mixed.dtype, f32.out ? "f32" : "f16", `${name}: result dtype`);
  const got = await mixed.toArray();
  assertSame(`${name} (mixed ${JSON.stringify(f32)})`, got, await plain.toArray());
  if (ref) {
    const [ea, eb] = await Promise.all([a16.toArray(), b16.toArray()]);
    const er = r16 ? Float64Array.from(await r16.toArray()) : null;
    assertClose(name, got, ref(Float64Array.from(ea), Float64Array.from(eb), er), 2e-3);
  }
  for (const t of [a32, b32, a16, b16, r16, mixed, plain16, plain]) t?.dispose();
}

/**
 * An op with an f32 weight and f16 data (`build(x, w, res)`) against the same op on the weight
 * cast to f16 by the differentiable cast: the output and the gradients of x, the weight (f32
 * both ways) and the residual, bit for bit, for one random upstream gradient. The pool must
 * return to its baseline.
 */
export async function checkMixedAutograd(
  name: string,
  shapes: { x: number[]; w: number[]; out: number[] },
  build: (x: Tensor, w: Tensor, res: Tensor) => Tensor,
): Promise<void> {
  await initGpu();
  rt().flush();
  const before = rt().storage.stats().liveBytes;
  const n = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const hx = randn(n(shapes.x), 5), hw = randn(n(shapes.w), 6, 0.3);
  const hr = randn(n(shapes.out), 7), hg = randn(n(shapes.out), 8);
  const run = async (viaCast: boolean) => {
    const x = Tensor.fromArray(hx, shapes.x, "f16");
    const w = Tensor.fromArray(hw, shapes.w, "f32");
    const r = Tensor.fromArray(hr, shapes.out, "f16");
    for (const t of [x, w, r]) t.requiresGrad = true;
    // Intermediates (the cast weight) are released by the scope; only the output survives.
    const y = scope(() => build(x, viaCast ? cast(w, "f16") : w, r));
    const g = Tensor.fromArray(hg, shapes.out, "f16");
    const yh = await y.toArray();
    backward(y, g);
    const out = {
      y: yh,
      gx: await x.grad!.toArray(),
      gw: await w.grad!.toArray(),
      gr: await r.grad!.toArray(),
      wDtype: w.grad!.dtype,
    };
    for (const t of [x, w, r]) {
      t.grad?.dispose();
      t.dispose();
    }
    y.dispose();
    g.dispose();
    return out;
  };
  const mixed = await run(false), casts = await run(true);
  assert.equal(mixed.wDtype, "f32", `${name}: the f32 weight's gradient is f32`);
  assertSame(`${name} output`, mixed.y, casts.y);
  assertSame(`${name} grad x`, mixed.gx, casts.gx);
  assertSame(`${name} grad weight`, mixed.gw, casts.gw);
  assertSame(`${name} grad residual`, mixed.gr, casts.gr);
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before, `${name}: pool not back to baseline`);
}
