import assert from "node:assert/strict";
import {
  embedding,
  geglu,
  initGpu,
  mseLoss,
  OpArgumentError,
  permute,
  reshape,
  timestepEmbedding,
  transpose,
} from "../gpu/mod.ts";
import { Tensor } from "../gpu/mod.ts";
import { assertClose, checkOp, strides } from "./op_check.ts";

Deno.test("permute and transpose", async () => {
  const shape = [2, 3, 4];
  const perm = [2, 0, 1];
  await checkOp({
    name: "permute",
    shapes: [shape],
    gpu: ([x]) => permute(x, perm),
    cpu: ([x]) => {
      const out = new Float64Array(x.length);
      const os = perm.map((p) => shape[p]);
      const ost = strides(os), ist = strides(shape);
      for (let i = 0; i < x.length; i++) {
        let src = 0;
        for (let k = 0; k < 3; k++) src += (Math.floor(i / ost[k]) % os[k]) * ist[perm[k]];
        out[i] = x[src];
      }
      return out;
    },
  });
  await checkOp({
    name: "transpose+reshape",
    shapes: [[3, 5]],
    gpu: ([x]) => reshape(transpose(x, 0, 1), [15]),
    cpu: ([x]) => {
      const o = new Float64Array(15);
      for (let i = 0; i < 3; i++) for (let j = 0; j < 5; j++) o[j * 3 + i] = x[i * 5 + j];
      return o;
    },
  });
});

const erf = (x: number): number => {
  // Abramowitz-Stegun-free: integrate with a high-order series for |x| < 6.
  let sum = x, term = x;
  for (let n = 1; n < 200; n++) {
    term *= -x * x / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
};

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`geglu ${dtype}`, async () => {
    await checkOp({
      name: "geglu",
      dtype,
      shapes: [[3, 10]],
      gpu: ([x]) => geglu(x),
      cpu: ([x]) => {
        const o = new Float64Array(15);
        for (let r = 0; r < 3; r++) {
          for (let c = 0; c < 5; c++) {
            const a = x[r * 10 + c], z = x[r * 10 + 5 + c];
            o[r * 5 + c] = a * 0.5 * z * (1 + erf(z / Math.SQRT2));
          }
        }
        return o;
      },
      gradTol: dtype === "f16" ? 5e-2 : 1e-3,
    });
  });
}

Deno.test("embedding with repeated ids", async () => {
  const ids = [3, 1, 3, 0, 3, 2];
  await checkOp({
    name: "embedding",
    shapes: [[5, 4]],
    gpu: ([w]) => embedding(w, ids, [2, 3]),
    cpu: ([w]) => {
      const o = new Float64Array(ids.length * 4);
      ids.forEach((id, t) => {
        for (let c = 0; c < 4; c++) o[t * 4 + c] = w[id * 4 + c];
      });
      return o;
    },
  });
  await initGpu();
  const w = Tensor.zeros([5, 4]);
  assert.throws(() => embedding(w, [7]), OpArgumentError);
  w.dispose();
});

Deno.test("mse loss", async () => {
  await checkOp({
    name: "mse",
    shapes: [[2, 3, 4], [2, 3, 4]],
    gpu: ([a, b]) => mseLoss(a, b),
    cpu: ([a, b]) => {
      let s = 0;
      for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
      return Float64Array.of(s / a.length);
    },
  });
});

Deno.test("timestep embedding matches diffusers' f32 formula", async () => {
  await initGpu();
  const ts = [0, 10, 700, 999];
  const dim = 32;
  const t = timestepEmbedding(ts, dim, { flipSinToCos: true, freqShift: 0 });
  const got = await t.toArray();
  t.dispose();
  const half = dim / 2;
  const want = new Float64Array(ts.length * dim);
  // torch: exponent = float32(-ln 10000) * arange(half) / half, each op rounded to float32.
  const negLog = Math.fround(-Math.log(10000));
  ts.forEach((tv, b) => {
    for (let k = 0; k < half; k++) {
      const f = Math.fround(Math.exp(Math.fround(Math.fround(negLog * k) / half)));
      const arg = Math.fround(tv * f);
      want[b * dim + k] = Math.cos(arg);
      want[b * dim + half + k] = Math.sin(arg);
    }
  });
  // Only the final rounding of sin and cos to float32 may differ.
  assertClose("timestep embedding", got, want, 1e-7);
});
