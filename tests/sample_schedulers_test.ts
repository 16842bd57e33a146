/**
 * Scheduler and loop checks that need no model: v-prediction gives the same run as epsilon for a
 * fake model whose v is derived from its eps; seeded noise is deterministic and independent of the batch; kohya's img2img timestep
 * arithmetic; aliases and errors.
 */
import assert from "node:assert/strict";
import { initGpu, scale, type Tensor } from "../gpu/mod.ts";
import { Tensor as T } from "../gpu/mod.ts";
import {
  createScheduler,
  noisesPerStep,
  resolveSampler,
  SAMPLER_CHOICES,
  SAMPLERS,
} from "../core/sample/sampler_registry.ts";
import {
  alphasCumprod,
  interpIndex,
  KOHYA_SCHEDULE,
  trainSigmas,
} from "../core/sample/schedulers/schedule.ts";
import { denoise, img2imgTimesteps } from "../core/sample/txt2img.ts";
import { GaussianGenerator, noiseBatch, seedNoises } from "../core/sample/noise.ts";
import { LorakitError } from "../core/errors.ts";

const acp = alphasCumprod(KOHYA_SCHEDULE);
const sig = trainSigmas(acp);
const DDPM = new Set(["ddim", "pndm", "dpmsolver", "dpmsolver++", "dpmsingle"]);

/** alpha and sigma (DDPM form) the fake model assumes at timestep t for a sampler. */
function alphaSigma(name: string, t: number): [number, number] {
  if (DDPM.has(name)) return [Math.sqrt(acp[t]), Math.sqrt(1 - acp[t])];
  const s = interpIndex(t, sig);
  return [1 / Math.sqrt(s * s + 1), s / Math.sqrt(s * s + 1)];
}

/** eps = 0.5 x_in; v = alpha eps - sigma x0 with x0 = (x_in - sigma eps) / alpha. */
function fakeUnet(name: string, v: boolean) {
  return {
    forward(sample: Tensor, ts: readonly number[]): Tensor {
      if (!v) return scale(sample, 0.5);
      const [a, s] = alphaSigma(name, ts[0]);
      return scale(sample, a * 0.5 - (s * (1 - 0.5 * s)) / a);
    },
  };
}

function maxRel(a: Float32Array, b: Float32Array): number {
  let e = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    (e = Math.max(e, Math.abs(a[i] - b[i]))), (m = Math.max(m, Math.abs(b[i])));
  }
  return e / m;
}

Deno.test("samplers: v-prediction runs match epsilon runs of the same fake model", async () => {
  await initGpu();
  const plan = { latentShape: [4, 4, 4] as [number, number, number], steps: 6, noisesPerStep: 2 };
  const nb = noiseBatch([7], plan);
  const context = T.zeros([1, 1, 1]);
  try {
    // PNDM converts v to eps after combining outputs of several steps (each at its own sample
    // and timestep), so in diffusers its v run is not the eps run: left out.
    for (const name of SAMPLERS.filter((n) => n !== "pndm")) {
      const run = async (v: boolean): Promise<Float32Array> => {
        const out = await denoise(fakeUnet(name, v), {
          scheduler: createScheduler(name, { vPrediction: v }),
          steps: 6,
          initNoise: nb.initNoise,
          context,
          guidanceScale: 1,
          noises: nb.noises,
        });
        const a = await out.toArray();
        out.dispose();
        return a;
      };
      const eps = await run(false), vel = await run(true);
      // dpm_2's midpoint timesteps come from log-sigma interpolation, the fake model's sigma
      // from linear interpolation: a small, expected mismatch.
      const tol = name.startsWith("dpm_2") ? 2e-3 : 1e-4;
      const e = maxRel(vel, eps);
      assert.ok(e <= tol, `${name}: v vs eps ${e}`);
    }
  } finally {
    nb.dispose();
    context.dispose();
  }
});

Deno.test("samplers: names, k_ aliases, noises per step, errors", () => {
  assert.equal(SAMPLER_CHOICES.length, 16);
  assert.equal(resolveSampler("k_dpm_2_a"), "dpm_2_a");
  assert.equal(noisesPerStep("k_dpm_2_a"), 2);
  assert.equal(noisesPerStep("euler_a"), 1);
  assert.throws(() => resolveSampler("ddpm"), LorakitError);
  assert.throws(() => createScheduler("pndm").setTimesteps(3), LorakitError);
  assert.throws(() => createScheduler("ddim").setTimesteps(0), LorakitError);
  const s = createScheduler("dpmsingle");
  assert.equal(s.config.stepsOffset, 0);
  // round(linspace(0, 999, 1001)) repeats values; diffusers keeps each once (0 is dropped).
  s.setTimesteps(1000);
  assert.equal(new Set(s.timesteps).size, s.timesteps.length);
  assert.equal(s.timesteps[0], 999);
});

Deno.test("img2img: kohya's strength arithmetic", () => {
  const s = createScheduler("ddim");
  s.setTimesteps(8);
  const r = img2imgTimesteps(s.timesteps, 8, 0.8, 1);
  assert.equal(r.noiseTimestep, 751); // timesteps[-7]
  assert.deepEqual(Array.from(r.run), [626, 501, 376, 251, 126, 1]); // from index 2
  const full = img2imgTimesteps(s.timesteps, 8, 1, 0);
  assert.equal(full.noiseTimestep, 876);
  assert.equal(full.run.length, 8);
  assert.throws(() => img2imgTimesteps(s.timesteps, 8, 1.5, 1), LorakitError);
});

Deno.test("noise: seeded, normal, and the same for a seed at any batch position", async () => {
  const a = new GaussianGenerator(42).gaussian(20000);
  const b = new GaussianGenerator(42).gaussian(20000);
  assert.deepEqual(a, b);
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  const varc = a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(varc - 1) < 0.05, `${mean} ${varc}`);
  assert.notDeepEqual(new GaussianGenerator(43).gaussian(4), b.subarray(0, 4));
  assert.throws(() => new GaussianGenerator(-1), LorakitError);
  const plan = { latentShape: [4, 2, 2] as [number, number, number], steps: 3, noisesPerStep: 2 };
  const one = seedNoises(5, plan);
  assert.equal(one.sampler.length, 6);
  await initGpu();
  const nb = noiseBatch([9, 5], plan);
  const second = (await nb.noises[4].toArray()).subarray(16);
  assert.deepEqual(second, one.sampler[4]);
  assert.deepEqual((await nb.initNoise.toArray()).subarray(16), one.start);
  nb.dispose();
});
