/**
 * clipGradNorm (norm value, factor, the scaled update through gradScaleTensor) and LossScaler
 * (overflow detection on the GPU, skip, backoff, growth).
 */
import assert from "node:assert/strict";
import { clipGradNorm, initGpu, LossScaler, rt, SGDNesterov, Tensor } from "../gpu/mod.ts";
import { randn } from "./op_check.ts";

Deno.test("clipGradNorm: global norm, factor, and the clipped SGD step", async () => {
  await initGpu();
  const before = rt().storage.stats().liveBytes;
  const sizes = [70000, 33, 1000];
  const ps = sizes.map((n, k) => Tensor.fromArray(randn(n, k + 1), [n]).param());
  const gh = sizes.map((n, k) => randn(n, 10 + k, 0.01));
  ps.forEach((p, k) => (p.grad = Tensor.fromArray(gh[k], [p.size], k === 1 ? "f16" : "f32")));
  let sq = 0;
  for (const [k, g] of gh.entries()) {
    const exact = await ps[k].grad!.toArray();
    for (let i = 0; i < g.length; i++) sq += exact[i] * exact[i];
  }
  const norm = Math.sqrt(sq);
  const maxNorm = norm / 3;
  const clip = clipGradNorm(ps, maxNorm);
  const got = await clip.read();
  assert.ok(Math.abs(got - norm) / norm < 1e-5, `norm ${got} vs ${norm}`);
  const factor = maxNorm / (norm + 1e-6);
  assert.ok(Math.abs((await clip.readScale()) - factor) < 1e-6);
  // Plain SGD (momentum 0): p -= lr * factor * g shows the factor reached the kernel.
  const p0 = await ps[0].toArray();
  const opt = new SGDNesterov(ps, { lr: 0.5, momentum: 0, nesterov: false });
  opt.update({ gradScaleTensor: clip.scale });
  const p1 = await ps[0].toArray();
  let worst = 0;
  for (let i = 0; i < p1.length; i++) {
    worst = Math.max(worst, Math.abs(p1[i] - (p0[i] - 0.5 * factor * gh[0][i])));
  }
  assert.ok(worst < 1e-6, `clipped update off by ${worst}`);
  // Below the threshold the factor is 1 (times inScale).
  const loose = clipGradNorm(ps, norm * 10, { inScale: 0.25 });
  assert.ok(Math.abs((await loose.readScale()) - 0.25) < 1e-7);
  assert.ok(Math.abs((await loose.read()) - norm / 4) / norm < 1e-5);
  loose.dispose();
  clip.dispose();
  opt.zeroGrad();
  opt.dispose();
  for (const p of ps) p.dispose();
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before);
});

Deno.test("LossScaler: skips and backs off on inf/nan, grows after the interval", async () => {
  await initGpu();
  const n = 3000;
  const p = Tensor.fromArray(randn(n, 1), [n], "f16").param();
  const opt = new SGDNesterov([p], { lr: 0.1, momentum: 0, nesterov: false });
  const scaler = new LossScaler({ initScale: 1024, growthInterval: 2 });
  const step = async (g: Float32Array) => {
    p.grad = Tensor.fromArray(g, [n], "f16");
    const r = await scaler.step(opt);
    opt.zeroGrad();
    return r;
  };
  const before = await p.toArray();
  const bad = randn(n, 2);
  bad[2999] = 1e6; // overflows f16 to inf
  let r = await step(bad);
  assert.equal(r.skipped, true);
  assert.equal(scaler.scale, 512);
  assert.deepEqual(await p.toArray(), before, "a skipped step leaves the parameters alone");
  const nan = randn(n, 3);
  nan[7] = NaN;
  r = await step(nan);
  assert.equal(r.skipped, true);
  assert.equal(scaler.scale, 256);
  // Clean steps: the update is unscaled (g / 256), and the scale doubles every 2 steps.
  const g = randn(n, 4).map((x) => x * 256);
  r = await step(g);
  assert.equal(r.skipped, false);
  const after = await p.toArray();
  const gx = await Tensor.fromArray(g, [n], "f16").toArray();
  for (const i of [0, 100, 2999]) {
    assert.ok(Math.abs(after[i] - (before[i] - 0.1 * gx[i] / 256)) < 2e-3, `unscaled at ${i}`);
  }
  assert.equal(scaler.scale, 256);
  r = await step(g);
  assert.equal(scaler.scale, 512);
  assert.equal(scaler.growthTracker, 0);
  // With maxNorm the clip factor of the unscaled gradients is folded in as well.
  const p2 = await p.toArray();
  p.grad = Tensor.fromArray(g, [n], "f16");
  r = await scaler.step(opt, { maxNorm: 0.5, lrScale: 100 });
  opt.zeroGrad();
  const norm = Math.sqrt(gx.reduce((a, x) => a + (x / 512) ** 2, 0));
  assert.ok(Math.abs((await r.clip!.read()) - norm) / norm < 1e-4, "norm of unscaled grads");
  const k = 0.5 / (norm + 1e-6);
  const p3 = await p.toArray();
  for (const i of [0, 100, 2999]) {
    assert.ok(Math.abs(p3[i] - (p2[i] - 10 * k * gx[i] / 512)) < 4e-3, `clipped at ${i}`);
  }
  r.clip!.dispose();
  opt.dispose();
  p.dispose();
});
