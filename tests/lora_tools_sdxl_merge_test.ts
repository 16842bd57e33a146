/**
 * sdxl_merge_lora --sd_model on sdxl-tiny with kohya's LierLa and C3Lier files: the merged SGM
 * file re-loads, and its text encoders and U-Net equal the base model with the LoRA applied
 * (createNetworkFromWeights + applyTo) and kohya's own LoRA forward, within 1e-4 relative;
 * --lbws zeroes or keeps blocks as kohya's block indices say.
 */
import assert from "node:assert/strict";
import { initGpu, noGrad, scope, Tensor } from "../gpu/mod.ts";
import { loadSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import type { HostTensor } from "../core/io/tensor_source.ts";
import { encodeTe2, loadStableDiffusionXL, type StableDiffusionXL } from "../core/models/mod.ts";
import { createNetworkFromWeights, type LoraNetwork } from "../core/lora/network.ts";
import { mergeIntoSdxlCheckpoint } from "../core/lora/merge_model_sdxl.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";

const MODEL = "sdxl-tiny/model.safetensors";
const LORA = (n: string) => fixture(`sdxl-tiny/kohya/${n}.safetensors`)!;

async function readAll(path: string): Promise<Map<string, HostTensor>> {
  const f = await openSafetensors(path);
  try {
    const m = new Map<string, HostTensor>();
    for (const t of f.list()) m.set(t.name, await f.readF32(t.name));
    return m;
  } finally {
    f.close();
  }
}

/** TE1/TE2 penultimate states, TE2's pooled output and the U-Net on the fixture's conditioning. */
async function outputs(sd: StableDiffusionXL): Promise<Record<string, Float32Array>> {
  const fwd = await readAll(fixture("sdxl-tiny/forward.safetensors")!);
  const get = (k: string) => fwd.get(k)!;
  const up = (h: HostTensor) => Tensor.fromArray(h.data, h.shape);
  const ids1 = Int32Array.from(get("te1_ids").data), ids2 = Int32Array.from(get("te2_ids").data);
  const out = noGrad(() =>
    scope(() => {
      const te1 = sd.textEncoder;
      const [te1Pen] = te1.hiddenStates(ids1, [te1.config.numLayers - 1]);
      const t2 = encodeTe2(sd.textEncoder2, ids2);
      const unet = sd.unet.forward(
        up(get("unet_sample")),
        Array.from(get("unet_timesteps").data),
        up(get("unet_context")),
        up(get("unet_y")),
      );
      return {
        te1_penultimate: te1Pen,
        te2_penultimate: t2.penultimate,
        te2_pooled: t2.pooled,
        unet_out_fixed_cond: unet,
      };
    })
  );
  const res: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) {
    res[k] = await t.toArray();
    t.dispose();
  }
  return res;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lorakit_sdxl_merge_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const CASES: [string, string[], number[]][] = [
  ["lierla", ["lierla"], [0.7]],
  ["c3lier", ["c3lier"], [0.7]],
  ["both", ["lierla", "c3lier"], [0.5, -0.8]],
];

Deno.test("sdxl_merge_lora --sd_model equals the LoRA applied (rel 1e-4), and re-loads", async () => {
  const model = fixture(MODEL);
  if (model === null) return;
  await initGpu();
  const kohya = await readAll(fixture("sdxl-tiny/kohya/lora_forward.safetensors")!);
  const base = await loadStableDiffusionXL(model);
  try {
    for (const [name, loras, ratios] of CASES) {
      const nets: LoraNetwork[] = [];
      for (const [i, l] of loras.entries()) {
        const net = await createNetworkFromWeights(ratios[i], LORA(l), base);
        net.applyTo(base);
        nets.push(net);
      }
      const want = await outputs(base);
      for (const net of nets.reverse()) {
        net.restore();
        net.dispose();
      }
      await withDir(async (dir) => {
        const out = `${dir}/merged.safetensors`;
        const r = await mergeIntoSdxlCheckpoint({
          sdModel: model,
          models: loras.map(LORA),
          ratios,
          saveTo: out,
        });
        assert.ok(r.yamlWritten !== null, "the base's yaml is copied beside the output");
        const merged = await loadStableDiffusionXL(out);
        try {
          const got = await outputs(merged);
          const errs: string[] = [];
          for (const k of Object.keys(want)) {
            const e = relErr(got[k], want[k]);
            errs.push(`${k} ${e.toExponential(2)}`);
            assert.ok(e <= 1e-4, `${name} ${k}: relative error ${e} against the applied LoRA`);
          }
          if (loras.length === 1) {
            // kohya's own forward of the LoRA at 0.7 (its pooled convention differs, see README).
            for (const k of ["te1_penultimate", "te2_penultimate", "unet_out_fixed_cond"]) {
              const e = relErr(got[k], kohya.get(`${name}_${k}`)!.data);
              errs.push(`kohya ${k} ${e.toExponential(2)}`);
              assert.ok(e <= 1e-4, `${name} ${k}: relative error ${e} against kohya`);
            }
          }
          console.log(`${name}: ${r.weightsChanged} weights, ${errs.join(", ")}`);
        } finally {
          merged.dispose();
        }
      });
    }
  } finally {
    base.dispose();
  }
});

Deno.test("sdxl_merge_lora --lbws: block weight 0 keeps a block's weights, 1 merges them", async () => {
  const model = fixture(MODEL);
  if (model === null) return;
  await initGpu();
  await withDir(async (dir) => {
    const merge = async (out: string, lbws?: string[]) => {
      await mergeIntoSdxlCheckpoint({
        sdModel: model,
        models: [LORA("c3lier")],
        ratios: [0.7],
        lbws,
        saveTo: `${dir}/${out}`,
        noMetadata: true,
      });
      return await loadSdxlCheckpoint(`${dir}/${out}`, { headsOptional: true });
    };
    const base = await loadSdxlCheckpoint(model, { headsOptional: true });
    const full = await merge("full.safetensors");
    // 12 weights: BASE, IN04, IN05, IN07, IN08, MID, OUT00-OUT05. Text encoders and the
    // middle block (SGM middle_block: block 13) off, the rest on.
    const noTe = await merge("no_te.safetensors", ["[0,1,1,1,1,0,1,1,1,1,1,1]"]);
    try {
      let off = 0, on = 0;
      for (const n of base.names()) {
        const b = (await base.readF32(n)).data, f = (await full.readF32(n)).data;
        const x = (await noTe.readF32(n)).data;
        const changed = relErr(f, b) > 0;
        if (n.startsWith("text_encoder") || n.startsWith("unet.mid_block.")) {
          assert.deepEqual(x, b, n);
          if (changed) off++;
        } else {
          // SDXL input_blocks 1-3 and 6, output_blocks 6-8 are not among the 12: merged as is.
          assert.deepEqual(x, f, n);
          if (changed) on++;
        }
      }
      assert.ok(off > 0 && on > 0, `${off} ${on}`);
    } finally {
      for (const c of [base, full, noTe]) c.close();
    }
  });
});

Deno.test("sdxl_merge_lora --sd_model --save_precision fp16: SGM keys, fp16 model tensors, SDXL modelspec", async () => {
  const model = fixture(MODEL);
  if (model === null) return;
  const { main } = await import("../cli/sdxl_merge_lora.ts");
  await withDir(async (dir) => {
    const out = `${dir}/merged_fp16.safetensors`;
    const argv = ["--sd_model", model, "--models", LORA("lierla"), "--ratios", "0.7"];
    assert.equal(await main([...argv, "--save_to", out, "--save_precision", "fp16"]), 0);
    const a = await openSafetensors(model), b = await openSafetensors(out);
    try {
      assert.deepEqual(b.list().map((t) => t.name).sort(), a.list().map((t) => t.name).sort());
      for (const t of a.list()) {
        const extra = t.name.endsWith("position_ids") || t.name.endsWith("logit_scale");
        assert.equal(b.info(t.name).dtype, extra ? t.dtype : "F16", t.name);
      }
      assert.equal(b.metadata["modelspec.architecture"], "stable-diffusion-xl-v1-base");
      assert.equal(
        b.metadata["modelspec.implementation"],
        "https://github.com/Stability-AI/generative-models",
      );
      assert.equal(b.metadata["modelspec.merged_from"], "model, lierla");
      assert.equal(b.metadata["modelspec.title"], "merged_fp16");
    } finally {
      a.close();
      b.close();
    }
    const c = await loadSdxlCheckpoint(out);
    assert.equal(c.config.unet.numHeads.join(","), "2,2,4");
    c.close();
  });
});
