/**
 * Adafactor against a float64 reference of transformers.optimization.Adafactor: factored second
 * moments for rank >= 2 (2-D and 4-D here), a full one for rank 1, relative steps with and
 * without warmup_init, a manual lr, beta1 and weight decay, f32 and f16 parameters.
 */
import assert from "node:assert/strict";
import { Adafactor, type AdafactorOptions, initGpu, rt, Tensor } from "../gpu/mod.ts";
import { assertClose, randn } from "./op_check.ts";

interface RefState {
  row?: Float64Array;
  col?: Float64Array;
  v?: Float64Array;
  m?: Float64Array;
}

const rms = (x: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s / x.length);
};

/** One transformers Adafactor step of one parameter, in float64. */
function refStep(
  p: Float64Array,
  shape: number[],
  g: Float64Array,
  st: RefState,
  t: number,
  o: Required<Omit<AdafactorOptions, "lr" | "beta1">> & { lr: number | null; beta1: number | null },
): void {
  const n = p.length;
  const minStep = o.warmupInit ? 1e-6 * t : 1e-2;
  let lr = o.relativeStep ? Math.min(minStep, 1 / Math.sqrt(t)) : o.lr!;
  if (o.scaleParameter) lr *= Math.max(o.eps[1], rms(p));
  const beta2t = 1 - t ** o.decayRate;
  const upd = new Float64Array(n);
  if (shape.length >= 2) {
    const C = shape[shape.length - 1], R = shape[shape.length - 2], B = n / (R * C);
    st.row ??= new Float64Array(B * R);
    st.col ??= new Float64Array(B * C);
    for (let br = 0; br < B * R; br++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += g[br * C + c] ** 2 + o.eps[0];
      st.row[br] = beta2t * st.row[br] + (1 - beta2t) * (s / C);
    }
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let r = 0; r < R; r++) s += g[(b * R + r) * C + c] ** 2 + o.eps[0];
        st.col[b * C + c] = beta2t * st.col[b * C + c] + (1 - beta2t) * (s / R);
      }
    }
    for (let b = 0; b < B; b++) {
      let mean = 0;
      for (let r = 0; r < R; r++) mean += st.row[b * R + r] / R;
      for (let r = 0; r < R; r++) {
        for (let c = 0; c < C; c++) {
          const i = (b * R + r) * C + c;
          upd[i] = g[i] / Math.sqrt(st.row[b * R + r] / mean) / Math.sqrt(st.col[b * C + c]);
        }
      }
    }
  } else {
    st.v ??= new Float64Array(n);
    for (let i = 0; i < n; i++) {
      st.v[i] = beta2t * st.v[i] + (1 - beta2t) * (g[i] ** 2 + o.eps[0]);
      upd[i] = g[i] / Math.sqrt(st.v[i]);
    }
  }
  const denom = Math.max(1, rms(upd) / o.clipThreshold);
  for (let i = 0; i < n; i++) upd[i] = (upd[i] / denom) * lr;
  if (o.beta1 !== null) {
    st.m ??= new Float64Array(n);
    for (let i = 0; i < n; i++) upd[i] = st.m[i] = o.beta1 * st.m[i] + (1 - o.beta1) * upd[i];
  }
  for (let i = 0; i < n; i++) {
    if (o.weightDecay !== 0) p[i] += p[i] * (-o.weightDecay * lr);
    p[i] -= upd[i];
  }
}

async function check(opts: AdafactorOptions, dtype: "f32" | "f16", tol: number): Promise<void> {
  await initGpu();
  const shapes = [[12, 40], [37], [3, 2, 5, 7]];
  const o = {
    lr: opts.lr ?? null,
    eps: opts.eps ?? [1e-30, 1e-3] as [number, number],
    clipThreshold: opts.clipThreshold ?? 1,
    decayRate: opts.decayRate ?? -0.8,
    beta1: opts.beta1 ?? null,
    weightDecay: opts.weightDecay ?? 0,
    scaleParameter: opts.scaleParameter ?? true,
    relativeStep: opts.relativeStep ?? true,
    warmupInit: opts.warmupInit ?? false,
  };
  const ps = shapes.map((s, k) =>
    Tensor.fromArray(randn(s.reduce((a, b) => a * b, 1), 7 + k, 0.3), s, dtype).param()
  );
  const refs = await Promise.all(ps.map(async (p) => Float64Array.from(await p.toArray())));
  const states: RefState[] = shapes.map(() => ({}));
  const opt = new Adafactor(o.relativeStep ? ps : [{ params: ps, lr: o.lr! }], opts);
  for (let t = 1; t <= 4; t++) {
    for (const [k, p] of ps.entries()) {
      p.grad = Tensor.fromArray(randn(p.size, 100 * t + k, 0.1), p.shape, dtype);
      const g = Float64Array.from(await p.grad.toArray());
      refStep(refs[k], shapes[k], g, states[k], t, o);
    }
    opt.update();
    opt.zeroGrad();
    // The reference takes the rounded parameters, as transformers does with an fp16 model.
    if (dtype === "f16") {
      for (const [k, p] of ps.entries()) refs[k].set(await p.toArray());
    }
  }
  for (const [k, p] of ps.entries()) {
    assertClose(`adafactor ${dtype} [${shapes[k]}]`, await p.toArray(), refs[k], tol);
  }
  if (o.relativeStep && o.scaleParameter) {
    const want = Math.min(o.warmupInit ? 4e-6 : 1e-2, 0.5) * Math.max(1e-3, rms(refs[0]));
    assert.ok(Math.abs((await opt.reportedLr()) - want) / want < 0.05, "reported lr");
  }
  opt.dispose();
  for (const p of ps) p.dispose();
}

Deno.test("Adafactor (kohya defaults: relative_step, scale_parameter) matches transformers", async () => {
  const before = (await initGpu(), rt().storage.stats().liveBytes);
  await check({}, "f32", 1e-5);
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before);
});

Deno.test("Adafactor with warmup_init, beta1 and weight decay", async () => {
  await check({ warmupInit: true, beta1: 0.9, weightDecay: 0.1 }, "f32", 1e-5);
});

Deno.test("Adafactor with a manual lr, no parameter scaling, clip 0.5", async () => {
  await check(
    { lr: 1e-2, relativeStep: false, scaleParameter: false, clipThreshold: 0.5 },
    "f32",
    1e-5,
  );
});

Deno.test("Adafactor on f16 parameters", async () => {
  await check({ beta1: 0.9 }, "f16", 2e-3);
});

Deno.test("Adafactor rejects lr with relative_step and warmup_init without it", () => {
  assert.throws(() => new Adafactor([], { lr: 1e-3 }), /relative_step/);
  assert.throws(
    () => new Adafactor([], { relativeStep: false, warmupInit: true, lr: 1 }),
    /warmup/,
  );
  assert.throws(() => new Adafactor([], { relativeStep: false }), /learning rate/);
});
