/**
 * clipGradNorm (norm value, factor, the scaled update through gradScaleTensor) and LossScaler
 * (overflow detection, skip, backoff and growth all decided on the GPU; every optimizer skips).
 */
import assert from "node:assert/strict";
import {
  Adafactor,
  AdamW,
  AdamW8bit,
  clipGradNorm,
  initGpu,
  Lion,
  LossScaler,
  type Optimizer,
  rt,
  SGDNesterov,
  Tensor,
} from "../gpu/mod.ts";
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
  const step = async (g: Float32Array, opts = {}) => {
    p.grad = Tensor.fromArray(g, [n], "f16");
    const r = await scaler.step(opt, opts);
    opt.zeroGrad();
    await scaler.settle();
    return r;
  };
  const last = () => scaler.history[scaler.history.length - 1];
  const before = await p.toArray();
  const bad = randn(n, 2);
  bad[2999] = 1e6; // overflows f16 to inf
  await step(bad);
  assert.deepEqual(last(), { overflowed: true, scale: 1024 });
  assert.equal(scaler.scale, 512);
  assert.equal(opt.step, 0, "a skipped step is not counted");
  assert.deepEqual(await p.toArray(), before, "a skipped step leaves the parameters alone");
  const nan = randn(n, 3);
  nan[7] = NaN;
  await step(nan);
  assert.equal(last().overflowed, true);
  assert.equal(scaler.scale, 256);
  assert.equal(scaler.skippedSteps, 2);
  // Clean steps: the update is unscaled (g / 256), and the scale doubles every 2 steps.
  const g = randn(n, 4).map((x) => x * 256);
  await step(g);
  assert.equal(last().overflowed, false);
  assert.equal(opt.step, 1);
  const after = await p.toArray();
  const gx = await Tensor.fromArray(g, [n], "f16").toArray();
  for (const i of [0, 100, 2999]) {
    assert.ok(Math.abs(after[i] - (before[i] - 0.1 * gx[i] / 256)) < 2e-3, `unscaled at ${i}`);
  }
  assert.equal(scaler.scale, 256);
  await step(g);
  assert.equal(scaler.scale, 512);
  assert.equal(scaler.growthTracker, 0);
  assert.equal((await scaler.scaleTensor.toArray())[0], 512, "the GPU holds the same scale");
  // With maxNorm the clip factor of the unscaled gradients is folded in as well.
  const p2 = await p.toArray();
  const r = await step(g, { maxNorm: 0.5, lrScale: 100 });
  const norm = Math.sqrt(gx.reduce((a, x) => a + (x / 512) ** 2, 0));
  assert.ok(Math.abs((await r.clip!.read()) - norm) / norm < 1e-4, "norm of unscaled grads");
  const k = 0.5 / (norm + 1e-6);
  const p3 = await p.toArray();
  for (const i of [0, 100, 2999]) {
    assert.ok(Math.abs(p3[i] - (p2[i] - 10 * k * gx[i] / 512)) < 4e-3, `clipped at ${i}`);
  }
  r.clip!.dispose();
  // With clipping, the norm's pass over the gradients checks them for inf and NaN too.
  for (const [what, g] of [["an inf", bad], ["a NaN", nan]] as const) {
    const skipped: number = scaler.skippedSteps;
    const kept = await p.toArray();
    (await step(g, { maxNorm: 0.5 })).clip?.dispose();
    assert.equal(last().overflowed, true, `${what} skips a clipped step`);
    assert.equal(scaler.skippedSteps, skipped + 1);
    assert.deepEqual(await p.toArray(), kept, `${what}: the parameters are left alone`);
  }
  scaler.dispose();
  opt.dispose();
  p.dispose();
});

/** Every optimizer, as the loop builds them (small 8-bit blocks so AdamW8bit quantizes). */
const OPTIMIZERS: [string, (ps: Tensor[]) => Optimizer][] = [
  ["AdamW", (ps) => new AdamW(ps, { lr: 1e-2 })],
  ["AdamW8bit", (ps) => new AdamW8bit(ps, { lr: 1e-2, min8bitSize: 64, blockSize: 256 })],
  ["Lion", (ps) => new Lion(ps, { lr: 1e-3, weightDecay: 0.1 })],
  ["SGDNesterov", (ps) => new SGDNesterov(ps, { lr: 1e-2, momentum: 0.9 })],
  ["Adafactor", (ps) => new Adafactor(ps, {})],
];

Deno.test("LossScaler: every optimizer skips overflowed steps on the GPU, bit for bit", async () => {
  await initGpu();
  const shapes = [[24, 40], [300]];
  // Gradients per step (already multiplied by the loss scale in force); null marks an overflow.
  const plan = [true, false, true, true, false, true];
  for (const [name, make] of OPTIMIZERS) {
    const init = shapes.map((s, k) => randn(s[0] * (s[1] ?? 1), 50 + k));
    const grads = plan.map((_, t) =>
      shapes.map((s, k) => randn(s[0] * (s[1] ?? 1), 100 + 10 * t + k))
    );
    // Reference: the clean steps alone, at the scales the scaler uses (1024 halves on overflow).
    const refPs = shapes.map((s, k) => Tensor.fromArray(init[k], s).param());
    const ref = make(refPs);
    let scale = 1024;
    for (const [t, clean] of plan.entries()) {
      if (!clean) {
        scale /= 2;
        continue;
      }
      refPs.forEach((
        p,
        k,
      ) => (p.grad = Tensor.fromArray(grads[t][k].map((x) => x * scale), p.shape)));
      ref.update({ gradScale: 1 / scale });
      ref.zeroGrad();
    }
    // The scaler: overflowed steps carry an inf; nothing is read back until the end.
    const ps = shapes.map((s, k) => Tensor.fromArray(init[k], s).param());
    const opt = make(ps);
    const scaler = new LossScaler({ initScale: 1024 });
    scale = 1024;
    for (const [t, clean] of plan.entries()) {
      ps.forEach((p, k) => {
        const g = grads[t][k].map((x) => x * scale);
        if (!clean && k === 1) g[5] = Infinity;
        p.grad = Tensor.fromArray(g, p.shape);
      });
      (await scaler.step(opt)).clip?.dispose();
      opt.zeroGrad();
      if (!clean) scale /= 2;
    }
    await scaler.settle();
    assert.equal(scaler.skippedSteps, 2, name);
    assert.equal(opt.step, ref.step, `${name}: step count`);
    for (const [k, p] of ps.entries()) {
      assert.deepEqual(await p.toArray(), await refPs[k].toArray(), `${name}: parameter ${k}`);
    }
    const [a, b] = [await opt.exportState(), await ref.exportState()];
    assert.deepEqual(a.params, b.params, `${name}: optimizer state`);
    for (const o of [opt, ref]) o.dispose();
    for (const p of [...ps, ...refPs]) p.dispose();
    scaler.dispose();
  }
});
