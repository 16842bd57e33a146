/**
 * Golden test: every gen_img sampler on sd1-tiny against diffusers 0.21.4 run by kohya's loop
 * (`../shared/fixtures/gen/samplers.safetensors`): timesteps and init_noise_sigma to 1e-6, final
 * latents and decoded image to 1e-3 (max-abs error over max-abs reference).
 */
import assert from "node:assert/strict";
import { initGpu, scope, Tensor } from "../gpu/mod.ts";
import { loadStableDiffusion } from "../core/models/mod.ts";
import { openSafetensors, type SafetensorsFile } from "../core/io/safetensors.ts";
import { createScheduler, SAMPLERS } from "../core/sample/sampler_registry.ts";
import { decodeLatents, denoise } from "../core/sample/txt2img.ts";
import { ClipTokenizer } from "../core/text/clip_tokenizer.ts";
import { weightedTokens } from "../core/text/prompt_weighting.ts";
import { fixture } from "./fixtures.ts";

const samplersPath = fixture("gen/samplers.safetensors");
const modelPath = fixture("sd1-tiny/model.safetensors");

async function readF64(f: SafetensorsFile, key: string): Promise<Float64Array> {
  const raw = await f.readRaw(key);
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return Float64Array.from({ length: raw.byteLength / 8 }, (_, i) => dv.getFloat64(i * 8, true));
}

function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assert.equal(got.length, want.length);
  let err = 0, ref = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    ref = Math.max(ref, Math.abs(want[i]));
  }
  return err / ref;
}

async function upload(f: SafetensorsFile, key: string): Promise<Tensor> {
  const t = await f.readF32(key);
  return Tensor.fromArray(t.data, t.shape);
}

Deno.test({
  name: "gen samplers: schedules match diffusers 0.21 (timesteps, init_noise_sigma)",
  ignore: samplersPath === null,
  async fn() {
    const f = await openSafetensors(samplersPath!);
    try {
      for (const name of SAMPLERS) {
        const s = createScheduler(name);
        s.setTimesteps(8);
        const want = await readF64(f, `${name}.timesteps`);
        assert.equal(s.timesteps.length, want.length, `${name}: timestep count`);
        want.forEach((w, i) => {
          const err = Math.abs(s.timesteps[i] - w) / Math.max(Math.abs(w), 1);
          assert.ok(err <= 1e-6, `${name} timestep ${i}: ${s.timesteps[i]} vs ${w}`);
        });
        const sigma = (await readF64(f, `${name}.init_noise_sigma`))[0];
        assert.ok(
          Math.abs(s.initNoiseSigma - sigma) / sigma <= 1e-6,
          `${name}: init_noise_sigma ${s.initNoiseSigma} vs ${sigma}`,
        );
      }
      // The fixture's ids are kohya's lpw tokens of [negative, prompt] (one 77-token window).
      const tok = await ClipTokenizer.load();
      const w = weightedTokens(tok, [f.metadata.negative_prompt, f.metadata.prompt], 3);
      const ids = await f.readF32("input_ids");
      assert.deepEqual(Array.from(w.ids), Array.from(ids.data));
    } finally {
      f.close();
    }
  },
});

Deno.test({
  name: "gen samplers: kohya's loop on sd1-tiny matches diffusers' latents and images",
  ignore: samplersPath === null || modelPath === null,
  sanitizeResources: false,
  async fn(t) {
    await initGpu();
    const f = await openSafetensors(samplersPath!);
    const sd = await loadStableDiffusion(modelPath!, { parts: ["unet", "vae"] });
    const context = await upload(f, "context");
    const initNoise = await upload(f, "init_noise");
    const scale = Number(f.metadata.scale);
    const steps = Number(f.metadata.steps);
    const report: string[] = [];
    try {
      for (const name of SAMPLERS) {
        await t.step(name, async () => {
          const noises: Tensor[] = [];
          if (f.has(`${name}.noises`)) {
            const all = await f.readF32(`${name}.noises`);
            const per = all.data.length / all.shape[0];
            for (let i = 0; i < all.shape[0]; i++) {
              noises.push(
                Tensor.fromArray(all.data.subarray(i * per, (i + 1) * per), all.shape.slice(1)),
              );
            }
          }
          const latents = await denoise(sd.unet, {
            scheduler: createScheduler(name),
            steps,
            initNoise,
            context,
            guidanceScale: scale,
            noises,
          });
          const image = scope(() => decodeLatents(sd.vae, latents));
          const eLat = relErr(await latents.toArray(), (await f.readF32(`${name}.latents`)).data);
          const eImg = relErr(await image.toArray(), (await f.readF32(`${name}.image`)).data);
          latents.dispose();
          image.dispose();
          for (const n of noises) n.dispose();
          report.push(`${name}: latents ${eLat.toExponential(2)}, image ${eImg.toExponential(2)}`);
          assert.ok(eLat <= 1e-3, `${name}: latents rel error ${eLat}`);
          assert.ok(eImg <= 1e-3, `${name}: image rel error ${eImg}`);
        });
      }
    } finally {
      console.log(report.join("\n"));
      context.dispose();
      initNoise.dispose();
      sd.dispose();
      f.close();
    }
  },
});
