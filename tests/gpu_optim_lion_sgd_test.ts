/** Lion and SGD with Nesterov momentum against float64 references of their algorithms. */
import { initGpu, Lion, SGDNesterov, Tensor } from "../gpu/mod.ts";
import { assertClose, randn } from "./op_check.ts";

/** lion-pytorch's update in float64. */
function lionRef(p: Float64Array, grads: Float64Array[], lr: number, wd: number): Float64Array {
  const m = new Float64Array(p.length);
  for (const g of grads) {
    for (let i = 0; i < p.length; i++) {
      p[i] *= 1 - lr * wd;
      p[i] -= lr * Math.sign(0.9 * m[i] + 0.1 * g[i]);
      m[i] = 0.99 * m[i] + 0.01 * g[i];
    }
  }
  return p;
}

/** torch.optim.SGD(momentum, nesterov=True, weight_decay) in float64. */
function sgdRef(
  p: Float64Array,
  grads: Float64Array[],
  lr: number,
  mom: number,
  wd: number,
): Float64Array {
  const buf = new Float64Array(p.length);
  grads.forEach((g, k) => {
    for (let i = 0; i < p.length; i++) {
      const d = g[i] + wd * p[i];
      buf[i] = k === 0 ? d : mom * buf[i] + d;
      p[i] -= lr * (d + mom * buf[i]);
    }
  });
  return p;
}

async function run(
  make: (p: Tensor) => { update(o?: { gradScale?: number }): void; dispose(): void },
  ref: (p: Float64Array, g: Float64Array[]) => Float64Array,
  dtype: "f32" | "f16",
  tol: number,
): Promise<void> {
  await initGpu();
  const n = 301;
  const p = Tensor.fromArray(randn(n, 3), [n], dtype).param();
  const p0 = Float64Array.from(await p.toArray());
  const opt = make(p);
  const grads: Float64Array[] = [];
  for (let t = 0; t < 4; t++) {
    // The gradient is uploaded doubled and halved by gradScale: the scale must reach the kernel.
    const g = randn(n, 40 + t);
    p.grad = Tensor.fromArray(g.map((x) => 2 * x), [n], dtype);
    grads.push(Float64Array.from(await p.grad.toArray()).map((x) => x / 2));
    opt.update({ gradScale: 0.5 });
    p.grad.dispose();
    p.grad = null;
  }
  assertClose(`${dtype}`, await p.toArray(), ref(p0, grads), tol);
  opt.dispose();
  p.dispose();
}

Deno.test("Lion matches lion-pytorch over 4 steps (f32, f16)", async () => {
  const make = (p: Tensor) => new Lion([p], { lr: 1e-3, weightDecay: 0.1 });
  const ref = (p: Float64Array, g: Float64Array[]) => lionRef(p, g, 1e-3, 0.1);
  await run(make, ref, "f32", 1e-6);
  await run(make, ref, "f16", 2e-3);
});

Deno.test("SGDNesterov matches torch SGD(nesterov=True) over 4 steps (f32, f16)", async () => {
  const make = (p: Tensor) => new SGDNesterov([p], { lr: 1e-2, weightDecay: 0.01 });
  const ref = (p: Float64Array, g: Float64Array[]) => sgdRef(p, g, 1e-2, 0.9, 0.01);
  await run(make, ref, "f32", 1e-6);
  await run(make, ref, "f16", 2e-3);
});
