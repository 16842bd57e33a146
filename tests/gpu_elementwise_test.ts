import assert from "node:assert/strict";
import {
  add,
  backward,
  cast,
  clamp,
  div,
  gelu,
  geluTanh,
  initGpu,
  maximum,
  mean,
  minimum,
  mul,
  quickGelu,
  relu,
  rt,
  scale,
  silu,
  sub,
  sum,
  Tensor,
} from "../gpu/mod.ts";
import { checkOp, strides } from "./op_check.ts";

function bcast(
  f: (x: number, y: number) => number,
  sa: number[],
  sb: number[],
  so: number[],
): (xs: Float64Array[]) => Float64Array {
  return ([a, b]) => {
    const n = so.reduce((p, q) => p * q, 1);
    const out = new Float64Array(n);
    const st = strides(so);
    const ia = strides(sa), ib = strides(sb);
    for (let i = 0; i < n; i++) {
      let oa = 0, ob = 0;
      for (let k = 0; k < so.length; k++) {
        const c = Math.floor(i / st[k]) % so[k];
        const ka = k - (so.length - sa.length), kb = k - (so.length - sb.length);
        if (ka >= 0 && sa[ka] !== 1) oa += c * ia[ka];
        if (kb >= 0 && sb[kb] !== 1) ob += c * ib[kb];
      }
      out[i] = f(a[oa], b[ob]);
    }
    return out;
  };
}

const binCases: [string, (x: number, y: number) => number, typeof add][] = [
  ["add", (x, y) => x + y, add],
  ["sub", (x, y) => x - y, sub],
  ["mul", (x, y) => x * y, mul],
  ["maximum", Math.max, maximum],
  ["minimum", Math.min, minimum],
];
for (const [name, f, op] of binCases) {
  Deno.test(`${name} broadcasting f32`, async () => {
    await checkOp({
      name,
      shapes: [[2, 3, 4], [3, 1]],
      gpu: ([a, b]) => op(a, b),
      cpu: bcast(f, [2, 3, 4], [3, 1], [2, 3, 4]),
    });
  });
  Deno.test(`${name} f16`, async () => {
    await checkOp({
      name,
      dtype: "f16",
      shapes: [[4, 5], [4, 5]],
      gpu: ([a, b]) => op(a, b),
      cpu: bcast(f, [4, 5], [4, 5], [4, 5]),
    });
  });
}

Deno.test("div broadcasting", async () => {
  const d = new Float32Array([1.5, -2, 3]);
  await checkOp({
    name: "div",
    shapes: [[2, 3], [3]],
    data: [undefined, d],
    gpu: ([a, b]) => div(a, b),
    cpu: bcast((x, y) => x / y, [2, 3], [3], [2, 3]),
  });
});

const sig = (x: number) => 1 / (1 + Math.exp(-x));
function erf(x: number): number {
  // High-precision series/continued fraction is overkill; use a 1e-15 accurate expansion.
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y = 1 - t * Math.exp(
        -x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
                      t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
                                      t * (-0.82215223 + t * 0.17087277)))))))),
      );
  return x >= 0 ? y : -y;
}
const acts: [string, (x: number) => number, typeof silu][] = [
  ["relu", (x) => Math.max(x, 0), relu],
  ["clamp", (x) => Math.min(Math.max(x, -0.7), 1.1), (x) => clamp(x, -0.7, 1.1)],
  ["silu", (x) => x * sig(x), silu],
  ["quick_gelu", (x) => x * sig(1.702 * x), quickGelu],
  ["gelu", (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)), gelu],
  [
    "gelu_tanh",
    (x) => 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3))),
    geluTanh,
  ],
];
for (const [name, f, op] of acts) {
  for (const dtype of ["f32", "f16"] as const) {
    Deno.test(`${name} ${dtype}`, async () => {
      await checkOp({
        name,
        dtype,
        shapes: [[3, 7]],
        gpu: ([x]) => op(x),
        cpu: ([x]) => x.map(f),
        // erf's rational approximation has ~1.2e-7 abs error: fine for f32.
      });
    });
  }
}

Deno.test("scale", async () => {
  await checkOp({
    name: "scale",
    shapes: [[5]],
    gpu: ([x]) => scale(x, -2.5),
    cpu: ([x]) => x.map((v) => -2.5 * v),
  });
});

Deno.test("sum and mean over axes", async () => {
  await checkOp({
    name: "sum(1)",
    shapes: [[2, 3, 4]],
    gpu: ([x]) => sum(x, [1]),
    cpu: ([x]) => {
      const o = new Float64Array(8);
      for (let a = 0; a < 2; a++) {
        for (let b = 0; b < 3; b++) {
          for (let c = 0; c < 4; c++) o[a * 4 + c] += x[a * 12 + b * 4 + c];
        }
      }
      return o;
    },
  });
  await checkOp({
    name: "mean(all)",
    shapes: [[3, 300]],
    gpu: ([x]) => mean(x),
    cpu: ([x]) => Float64Array.of(x.reduce((a, b) => a + b, 0) / x.length),
  });
});

Deno.test("cast f32 <-> f16", async () => {
  await checkOp({
    name: "cast",
    shapes: [[10]],
    gpu: ([x]) => cast(x, "f16"),
    cpu: ([x]) => x,
    tol: 1e-3,
  });
});

Deno.test("maximum and minimum broadcast both ways", async () => {
  for (
    const [name, f, op] of [["maximum", Math.max, maximum], ["minimum", Math.min, minimum]] as const
  ) {
    await checkOp({
      name,
      shapes: [[3, 1, 4], [2, 1]],
      gpu: ([a, b]) => op(a, b),
      cpu: bcast(f, [3, 1, 4], [2, 1], [3, 2, 4]),
    });
  }
});

/** Gradients of `f` at exact inputs for an upstream gradient of ones. */
async function gradsAt(
  f: (xs: Tensor[]) => Tensor,
  inputs: [number[], number[]][],
): Promise<{ y: Float32Array; grads: Float32Array[] }> {
  await initGpu();
  const before = rt().storage.stats().liveBytes;
  const xs = inputs.map(([v, shape]) => {
    const t = Tensor.fromArray(v, shape);
    t.requiresGrad = true;
    return t;
  });
  const y = f(xs);
  const g = Tensor.full(y.shape, 1);
  const out = await y.toArray();
  backward(y, g);
  const grads = await Promise.all(xs.map((t) => t.grad!.toArray()));
  for (const t of [...xs, y, g]) {
    t.grad?.dispose();
    t.dispose();
  }
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before, "pool back to its baseline");
  return { y: out, grads };
}

// PyTorch's conventions where the derivative is undefined (tools/autograd/derivatives.yaml):
// maximum/minimum split a tie's gradient half and half, relu passes none at 0, clamp passes all
// of it on either bound.
Deno.test("maximum and minimum split the gradient of a tie", async () => {
  const a = [1, 2, 0, -1], b = [1];
  const max = await gradsAt(([x, y]) => maximum(x, y), [[a, [2, 2]], [b, [1]]]);
  assert.deepEqual([...max.y], [1, 2, 1, 1]);
  assert.deepEqual([...max.grads[0]], [0.5, 1, 0, 0]);
  assert.deepEqual([...max.grads[1]], [2.5]);
  const min = await gradsAt(([x, y]) => minimum(x, y), [[a, [2, 2]], [b, [1]]]);
  assert.deepEqual([...min.y], [1, 1, 0, -1]);
  assert.deepEqual([...min.grads[0]], [0.5, 0, 1, 1]);
  assert.deepEqual([...min.grads[1]], [1.5]);
});

Deno.test("relu passes no gradient at 0; clamp passes all of it on the bounds", async () => {
  const r = await gradsAt(([x]) => relu(x), [[[-2, 0, 3], [3]]]);
  assert.deepEqual([...r.y], [0, 0, 3]);
  assert.deepEqual([...r.grads[0]], [0, 0, 1]);
  const x = [-1e4, -31, -30, -29.5, 0.25, 20, 21, 1e5];
  const c = await gradsAt(([t]) => clamp(t, -30, 20), [[x, [x.length]]]);
  assert.deepEqual([...c.y], x.map((v) => Math.min(20, Math.max(-30, v))));
  assert.deepEqual([...c.grads[0]], [0, 0, 1, 1, 1, 1, 0, 0]);
  // torch.clamp with lo > hi returns hi everywhere (and no gradient passes).
  const inv = await gradsAt(([t]) => clamp(t, 2, 1), [[[0, 1.5, 3], [3]]]);
  assert.deepEqual([...inv.y], [1, 1, 1]);
  assert.deepEqual([...inv.grads[0]], [0, 0, 0]);
});
