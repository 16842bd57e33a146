/**
 * The multi-tensor optimizer launches give exactly what one launch per tensor gives: AdamW over
 * more tensors than fit one dispatch (odd sizes, f32 and f16) and the clipping's partial sums.
 */
import assert from "node:assert/strict";
import { adamKernel, initGpu, rt, Tensor } from "../gpu/mod.ts";
import { adamMulti, nonfiniteMulti, sumsqMulti } from "../gpu/optim/multi_tensor.ts";
import { encodeSumsq, partsFor } from "../gpu/optim/reduce.ts";
import { randn } from "./op_check.ts";

const SIZES = [37, 1, 300, 4097, 5, 256, 257, 1000, 3, 64, 70000, 12, 9, 2, 511, 513, 33, 700];

function equalBits(a: Float32Array, b: Float32Array, what: string): void {
  assert(a.length === b.length, `${what}: lengths`);
  const ua = new Uint32Array(a.buffer), ub = new Uint32Array(b.buffer);
  for (let i = 0; i < ua.length; i++) {
    if (ua[i] !== ub[i]) throw new Error(`${what}: element ${i} differs (${a[i]} vs ${b[i]})`);
  }
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`adamMulti equals adamKernel per tensor bit for bit (${dtype})`, async () => {
    await initGpu();
    if (dtype === "f16" && !rt().gpu.hasF16) return;
    const before = rt().storage.stats().liveBytes;
    const make = () =>
      SIZES.map((n, k) => {
        const p = Tensor.fromArray(randn(n, 10 + k), [n], dtype).param();
        p.grad = Tensor.fromArray(randn(n, 50 + k), [n], dtype);
        const m = Tensor.fromArray(randn(n, 90 + k).map((x) => x * 0.1), [n]);
        const v = Tensor.fromArray(randn(n, 130 + k).map((x) => x * x * 0.01), [n]);
        return { p, m, v };
      });
    const a = make(), b = make();
    const gs = Tensor.full([1], 0.75);
    const s = { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, bc1: 0.19, bc2: 0.002997 };
    for (const x of a) adamKernel(x.p, x.m, x.v, gs.buffer, { ...s, gscale: 0.5, bnb: false });
    adamMulti(b, gs.buffer, { ...s, gscale: 0.5 });
    for (let k = 0; k < SIZES.length; k++) {
      for (const f of ["p", "m", "v"] as const) {
        equalBits(await a[k][f].toArray(), await b[k][f].toArray(), `${f} of tensor ${k}`);
      }
    }
    for (const x of [...a, ...b]) {
      x.p.grad!.dispose();
      x.p.dispose();
      x.m.dispose();
      x.v.dispose();
    }
    gs.dispose();
    rt().flush();
    assert(rt().storage.stats().liveBytes === before, "pool back to its baseline");
  });
}

Deno.test("sumsqMulti writes the partial sums encodeSumsq writes, in the same layout", async () => {
  await initGpu();
  const xs = SIZES.map((n, k) => Tensor.fromArray(randn(n, 200 + k), [n]));
  const total = SIZES.reduce((s, n) => s + partsFor(n), 0);
  const one = Tensor.empty([total]), multi = Tensor.empty([total]);
  let off = 0;
  for (const x of xs) off += encodeSumsq(x, one, off, 0.25);
  const written = sumsqMulti(xs, multi, 0, 0.25);
  assert(written === off, `wrote ${written} partials, want ${off}`);
  equalBits(await one.toArray(), await multi.toArray(), "partials");
  for (const t of [...xs, one, multi]) t.dispose();
});

Deno.test("nonfiniteMulti flags an inf or NaN in any tensor of any batch, and nothing else", async () => {
  await initGpu();
  const clean = SIZES.map((n, k) => Tensor.fromArray(randn(n, 300 + k), [n]));
  const flagOf = async (xs: Tensor[]) => {
    const flag = Tensor.zeros([1]);
    nonfiniteMulti(xs, flag);
    const v = new Uint32Array((await flag.toArray()).buffer)[0];
    flag.dispose();
    return v;
  };
  assert(await flagOf(clean) === 0, "finite tensors raise no flag");
  for (const [k, bad] of [[0, Infinity], [9, NaN], [17, -Infinity], [10, NaN]] as const) {
    const data = randn(SIZES[k], 300 + k);
    data[data.length - 1] = bad;
    const dirty = clean.slice();
    dirty[k] = Tensor.fromArray(data, [SIZES[k]]);
    assert(await flagOf(dirty) === 1, `${bad} in tensor ${k}`);
    dirty[k].dispose();
  }
  for (const t of clean) t.dispose();
});

Deno.test("sumsqMulti with a flag: the same partial sums, and nonfiniteMulti's flag", async () => {
  await initGpu();
  const before = rt().storage.stats().liveBytes;
  const total = SIZES.reduce((s, n) => s + partsFor(n), 0);
  const run = async (xs: Tensor[]) => {
    const plain = Tensor.empty([total]), fused = Tensor.empty([total]);
    const flag = Tensor.zeros([1]), want = Tensor.zeros([1]);
    sumsqMulti(xs, plain, 0, 0.25);
    nonfiniteMulti(xs, want);
    const written = sumsqMulti(xs, fused, 0, 0.25, flag);
    assert.equal(written, total);
    const [p, f] = [await plain.toArray(), await fused.toArray()];
    const bits = async (t: Tensor) => new Uint32Array((await t.toArray()).buffer)[0];
    const out = { p, f, flag: await bits(flag), want: await bits(want) };
    for (const t of [plain, fused, flag, want]) t.dispose();
    return out;
  };
  const clean = SIZES.map((n, k) => Tensor.fromArray(randn(n, 400 + k), [n]));
  const c = await run(clean);
  equalBits(c.p, c.f, "partials");
  assert.equal(c.flag, 0, "finite tensors raise no flag");
  assert.equal(c.want, 0);
  for (const [k, bad] of [[0, Infinity], [9, NaN], [17, -Infinity], [10, NaN]] as const) {
    const data = randn(SIZES[k], 400 + k);
    data[data.length - 1] = bad;
    const dirty = clean.slice();
    dirty[k] = Tensor.fromArray(data, [SIZES[k]]);
    const d = await run(dirty);
    assert.equal(d.flag, 1, `${bad} in tensor ${k}`);
    assert.equal(d.want, 1);
    dirty[k].dispose();
  }
  for (const t of clean) t.dispose();
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before, "pool back to its baseline");
});
