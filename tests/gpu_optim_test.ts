import { AdamW, initGpu, Tensor } from "../gpu/mod.ts";
import { assertClose, randn } from "./op_check.ts";

/** torch.optim.AdamW reference in float64. */
function adamwRef(
  p: Float64Array,
  grads: Float64Array[],
  lr: number,
  b1: number,
  b2: number,
  eps: number,
  wd: number,
): Float64Array {
  const m = new Float64Array(p.length), v = new Float64Array(p.length);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      p[i] -= lr * wd * p[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      const denom = Math.sqrt(v[i]) / Math.sqrt(1 - b2 ** t) + eps;
      p[i] -= (lr / (1 - b1 ** t)) * m[i] / denom;
    }
  });
  return p;
}

Deno.test("AdamW matches torch's update over 3 steps", async () => {
  await initGpu();
  const n = 37;
  const p0 = randn(n, 3);
  const grads = [randn(n, 4), randn(n, 5), randn(n, 6)];
  const p = Tensor.fromArray(p0, [n]).param();
  const opt = new AdamW([p], { lr: 1e-2, weightDecay: 0.1 });
  for (const g of grads) {
    p.grad = Tensor.fromArray(g, [n]);
    opt.update();
    opt.zeroGrad();
  }
  const want = adamwRef(
    Float64Array.from(p0),
    grads.map((g) => Float64Array.from(g)),
    1e-2,
    0.9,
    0.999,
    1e-8,
    0.1,
  );
  assertClose("adamw", await p.toArray(), want, 1e-5);
  opt.dispose();
  p.dispose();
});
