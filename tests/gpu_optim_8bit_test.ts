/**
 * AdamW8bit against a float32 CPU simulation of bitsandbytes' block-wise algorithm (same maps,
 * same search, same operation order: codes should match exactly, up to rare last-bit
 * differences of the GPU's arithmetic), and against plain float64 AdamW over 20 steps (close,
 * within 8-bit noise). Also the maps themselves and the memory the 8-bit state saves.
 */
import assert from "node:assert/strict";
import { AdamW8bit, adamw8bitMaps, createDynamicMap, initGpu, rt, Tensor } from "../gpu/mod.ts";
import { quantizeCode } from "../gpu/optim/qmap.ts";
import { f16ToF32, f32ToF16 } from "../gpu/tensor.ts";
import { assertClose, randn, relErr } from "./op_check.ts";

const f = Math.fround;

Deno.test("dynamic maps equal bitsandbytes' create_dynamic_map (torch 1.13 x86 values)", () => {
  const s = createDynamicMap(true), u = createDynamicMap(false);
  assert.equal(s.length, 256);
  assert.equal(u.length, 256);
  for (let i = 1; i < 256; i++) assert.ok(s[i] >= s[i - 1] && u[i] >= u[i - 1]);
  assert.equal(s[127], 0);
  assert.equal(s[255], 1);
  assert.equal(u[0], 0);
  assert.equal(u[255], 1);
  // Entries printed by the Python original; they depend on torch.linspace's last bits.
  assert.equal(s[0], -0.992968738079071);
  assert.equal(s[1], -0.9789062142372131);
  assert.equal(s[128], 5.500000384017767e-7);
  assert.equal(u[1], 3.2500003044333425e-7);
  assert.equal(u[9], 3.8124999264255166e-5);
  let h = 0;
  for (const v of adamw8bitMaps()) {
    h = (Math.imul(h, 31) + new Uint32Array(new Float32Array([v]).buffer)[0]) >>> 0;
  }
  assert.equal(h, 2919284230, "hash of all 512 entries as computed with torch 1.13");
});

interface Sim {
  p: Float32Array;
  c1: Uint8Array;
  c2: Uint8Array;
  a1: Float32Array;
  a2: Float32Array;
}

/** One bitsandbytes block-wise 8-bit AdamW step in float32, in the kernel's operation order. */
function simStep(
  s: Sim,
  g: Float32Array,
  t: number,
  o: { lr: number; b1: number; b2: number; eps: number; wd: number; block: number; f16: boolean },
): void {
  const qs = createDynamicMap(true), qu = createDynamicMap(false);
  const lr = f(o.lr), b1 = f(o.b1), b2 = f(o.b2), eps = f(o.eps), wd = f(o.wd);
  const bc1 = 1 - o.b1 ** t, bc2 = 1 - o.b2 ** t;
  const c2 = f(Math.sqrt(bc2)), stepSize = f((-o.lr * Math.sqrt(bc2)) / bc1);
  const omb1 = f(1 - b1), omb2 = f(1 - b2), decay = f(1 - f(lr * wd));
  const round = (x: number) => (o.f16 ? f16(x) : f(x));
  const n = s.p.length;
  for (let b0 = 0; b0 < n; b0 += o.block) {
    const b = b0 / o.block, end = Math.min(n, b0 + o.block);
    const v1 = new Float64Array(end - b0), v2 = new Float64Array(end - b0);
    const ok: boolean[] = [];
    let m1 = 0, m2 = 0;
    for (let e = b0; e < end; e++) {
      const gi = g[e];
      ok.push(Number.isFinite(gi));
      if (!Number.isFinite(gi)) continue;
      const gg = f(gi * 1);
      let x2 = f(qu[s.c2[e]] * s.a2[b]);
      x2 = f(f(x2 * b2) + f(f(omb2 * gg) * gg));
      let x1 = f(qs[s.c1[e]] * s.a1[b]);
      x1 = f(f(x1 * b1) + f(omb1 * gg));
      v1[e - b0] = x1;
      v2[e - b0] = x2;
      m1 = Math.max(m1, Math.abs(x1));
      m2 = Math.max(m2, Math.abs(x2));
    }
    s.a1[b] = m1;
    s.a2[b] = m2;
    for (let e = b0; e < end; e++) {
      const x1 = v1[e - b0], x2 = v2[e - b0];
      if (ok[e - b0]) {
        let w = f(s.p[e] + f(stepSize * f(x1 / f(f(Math.sqrt(x2)) + f(c2 * eps)))));
        w = round(w);
        if (wd > 0) w = f(w * decay);
        s.p[e] = round(w);
      }
      let c = quantizeCode(qs, m1 > 0 ? f(x1 / m1) : 0, true);
      if ((qs[c] < 0 || Object.is(qs[c], -0)) !== (x1 < 0 || Object.is(x1, -0))) {
        c = x1 > 0 ? (c + 1) & 255 : (c + 255) & 255;
      }
      s.c1[e] = c;
      s.c2[e] = quantizeCode(qu, m2 > 0 ? f(x2 / m2) : 0, false);
    }
  }
}

/** Round to f16 (nearest even), as the kernel's stores do. */
function f16(x: number): number {
  return f16ToF32(f32ToF16(f(x)));
}

async function codesOf(t: Tensor, n: number): Promise<Uint8Array> {
  const raw = await rt().readBuffer(t.buffer, 0, t.size * 4);
  return new Uint8Array(raw).slice(0, n);
}

async function runVsSim(n: number, dtype: "f32" | "f16", block: 256 | 2048, steps: number) {
  await initGpu();
  const o = { lr: 1e-2, b1: 0.9, b2: 0.999, eps: 1e-8, wd: 0.01, block, f16: dtype === "f16" };
  const p = Tensor.fromArray(randn(n, 11), [n], dtype).param();
  const p0 = await p.toArray();
  const sim: Sim = {
    p: Float32Array.from(p0),
    c1: new Uint8Array(n),
    c2: new Uint8Array(n),
    a1: new Float32Array(Math.ceil(n / block)),
    a2: new Float32Array(Math.ceil(n / block)),
  };
  const opt = new AdamW8bit([p], { lr: o.lr, weightDecay: o.wd, blockSize: block });
  for (let t = 1; t <= steps; t++) {
    const gh = randn(n, 100 + t, 0.1 * t);
    if (t === 2) gh[5] = Infinity;
    p.grad = Tensor.fromArray(gh, [n], dtype);
    const ge = await p.grad.toArray();
    opt.update();
    opt.zeroGrad();
    simStep(sim, ge, t, o);
  }
  const s = opt.stateOf(p)!;
  const c1 = await codesOf(s.state1, n), c2 = await codesOf(s.state2, n);
  let same = 0, far = 0;
  for (let i = 0; i < n; i++) {
    same += (c1[i] === sim.c1[i] ? 1 : 0) + (c2[i] === sim.c2[i] ? 1 : 0);
    far += (Math.abs(c1[i] - sim.c1[i]) > 1 ? 1 : 0) + (Math.abs(c2[i] - sim.c2[i]) > 1 ? 1 : 0);
  }
  const frac = same / (2 * n);
  const ep = relErr(await p.toArray(), sim.p);
  const ea = relErr(await s.absmax1.toArray(), sim.a1);
  console.log(
    `  ${dtype} n=${n} block=${block}: codes equal ${(100 * frac).toFixed(3)}%, ` +
      `param relErr ${ep.toExponential(2)}, absmax1 relErr ${ea.toExponential(2)}`,
  );
  assert.ok(frac >= 0.995, `codes equal only ${frac}`);
  assert.equal(far, 0, "codes differing by more than one step");
  assert.ok(ep < (dtype === "f16" ? 2e-3 : 1e-5), `param relErr ${ep}`);
  assert.ok(ea < 1e-3, `absmax relErr ${ea}`);
  opt.dispose();
  p.dispose();
}

Deno.test("AdamW8bit matches the float32 simulation of bitsandbytes' block-wise kernel", async () => {
  await runVsSim(4099, "f32", 256, 4);
  await runVsSim(5000, "f32", 2048, 3);
  await runVsSim(4100, "f16", 256, 3);
});

/** float64 torch AdamW. */
function adamwRef(p: Float64Array, grads: Float32Array[], lr: number, wd: number): Float64Array {
  const m = new Float64Array(p.length), v = new Float64Array(p.length);
  grads.forEach((g, k) => {
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      p[i] -= lr * wd * p[i];
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      p[i] -= (lr / (1 - 0.9 ** t)) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(1 - 0.999 ** t) + 1e-8);
    }
  });
  return p;
}

Deno.test("AdamW8bit follows plain AdamW over 20 steps; state is ~4x smaller", async () => {
  await initGpu();
  const n = 8192, lr = 1e-3, wd = 0.01;
  const before = rt().storage.stats().liveBytes;
  const p0 = randn(n, 21);
  const p = Tensor.fromArray(p0, [n]).param();
  const opt = new AdamW8bit([p], { lr, weightDecay: wd });
  const grads: Float32Array[] = [];
  for (let t = 1; t <= 20; t++) {
    // A drifting mean plus noise, so the moments carry signal across steps.
    const g = randn(n, 300 + t, 0.5);
    for (let i = 0; i < n; i++) g[i] += Math.sin(i * 0.01);
    grads.push(g);
    p.grad = Tensor.fromArray(g, [n]);
    opt.update();
    opt.zeroGrad();
  }
  const got = await p.toArray();
  const want = adamwRef(Float64Array.from(p0), grads, lr, wd);
  const dGot = got.map((x, i) => x - p0[i]), dWant = want.map((x, i) => x - p0[i]);
  const eUpd = relErr(dGot, dWant);
  console.log(`  20 steps: relErr of the total update vs float64 AdamW ${eUpd.toExponential(2)}`);
  assert.ok(eUpd < 0.08, `update relErr ${eUpd}`);
  assertClose("params", got, want, 1e-3);
  const bytes = opt.stateBytes();
  console.log(
    `  state: ${bytes} bytes for ${n} params = ${(bytes / n).toFixed(4)} B/param vs AdamW 8 ` +
      `(saves ${(100 * (1 - bytes / (8 * n))).toFixed(1)}%)`,
  );
  assert.equal(bytes, n * 2 + 2 * 4 * (n / 256));
  opt.dispose();
  p.dispose();
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before);
});

Deno.test("AdamW8bit keeps f32 moments below min_8bit_size (bitsandbytes' 32-bit kernel)", async () => {
  await initGpu();
  const n = 100, lr = 1e-2, wd = 0.1;
  const p0 = randn(n, 5);
  const p = Tensor.fromArray(p0, [n]).param();
  const opt = new AdamW8bit([p], { lr, weightDecay: wd });
  const want = Float64Array.from(p0), m = new Float64Array(n), v = new Float64Array(n);
  for (let t = 1; t <= 3; t++) {
    const g = randn(n, 50 + t);
    p.grad = Tensor.fromArray(g, [n]);
    opt.update();
    opt.zeroGrad();
    const c2 = Math.sqrt(1 - 0.999 ** t), step = -lr * c2 / (1 - 0.9 ** t);
    for (let i = 0; i < n; i++) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      want[i] = (want[i] + step * m[i] / (Math.sqrt(v[i]) + c2 * 1e-8)) * (1 - lr * wd);
    }
  }
  assert.ok(!opt.isQuantized(p));
  assertClose("adamw8bit small", await p.toArray(), want, 1e-5);
  opt.dispose();
  p.dispose();
});
