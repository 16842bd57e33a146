/**
 * sdxl_merge_lora without --sd_model (kohya's merge_lora_models for SDXL) on sdxl-tiny's kohya
 * files: two LoRAs on different layers (LierLa's text encoders, C3Lier's U-Net) merge into one
 * whose application equals applying both (rel 1e-4), with kohya's SDXL metadata; on shared
 * modules the factors are kohya's (down Σ s_i·down_i, up Σ |s_i|·up_i), --lbws scales both
 * factors of a set block, --concat stacks the ranks; the CLI's flags and one-line errors, and
 * merge_lora pointing SDXL inputs to sdxl_merge_lora.
 */
import assert from "node:assert/strict";
import { initGpu, noGrad, scope, Tensor } from "../gpu/mod.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import type { HostTensor } from "../core/io/tensor_source.ts";
import { encodeTe2, loadStableDiffusionXL, type StableDiffusionXL } from "../core/models/mod.ts";
import { createNetworkFromWeights, type LoraNetwork } from "../core/lora/network.ts";
import { openLoraFile, saveLoraFile } from "../core/lora/lora_file.ts";
import { mergeLoraFiles } from "../core/lora/merge.ts";
import { parseLbws } from "../core/lora/lbw.ts";
import { LorakitError } from "../core/errors.ts";
import { main as sdxlMergeMain } from "../cli/sdxl_merge_lora.ts";
import { main as mergeMain } from "../cli/merge_lora.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";

const LORA = (n: string) => fixture(`sdxl-tiny/kohya/${n}.safetensors`)!;

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lorakit_sdxl_mergef_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The modules of `src` whose names start with `prefix`, saved (float32) as `out`. */
async function subset(src: string, prefix: string, out: string): Promise<string> {
  const f = await openLoraFile(src);
  try {
    const mods = [];
    for (const m of f.modules.filter((m) => m.prefix.startsWith(prefix))) {
      const w = await f.readModule(m.prefix);
      mods.push({ prefix: m.prefix, down: w.down, up: w.up, alpha: m.alpha });
    }
    const metadata = { ...f.metadata };
    await saveLoraFile(out, mods, { precision: "float", metadata });
  } finally {
    f.close();
  }
  return out;
}

async function count(path: string): Promise<number> {
  const f = await openLoraFile(path);
  f.close();
  return f.modules.length;
}

async function outputs(sd: StableDiffusionXL): Promise<Record<string, Float32Array>> {
  const f = await openSafetensors(fixture("sdxl-tiny/forward.safetensors")!);
  const fwd = new Map<string, HostTensor>();
  for (const t of f.list()) fwd.set(t.name, await f.readF32(t.name));
  f.close();
  const get = (k: string) => fwd.get(k)!;
  const up = (h: HostTensor) => Tensor.fromArray(h.data, h.shape);
  const ids1 = Int32Array.from(get("te1_ids").data), ids2 = Int32Array.from(get("te2_ids").data);
  const out = noGrad(() =>
    scope(() => {
      const [te1] = sd.textEncoder.hiddenStates(ids1, [sd.textEncoder.config.numLayers - 1]);
      const t2 = encodeTe2(sd.textEncoder2, ids2);
      const unet = sd.unet.forward(
        up(get("unet_sample")),
        Array.from(get("unet_timesteps").data),
        up(get("unet_context")),
        up(get("unet_y")),
      );
      return { te1, te2: t2.penultimate, pooled: t2.pooled, unet };
    })
  );
  const res: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) {
    res[k] = await t.toArray();
    t.dispose();
  }
  return res;
}

async function applied(sd: StableDiffusionXL, files: string[]) {
  const nets: LoraNetwork[] = [];
  for (const file of files) {
    const net = await createNetworkFromWeights(1, file, sd);
    net.applyTo(sd);
    nets.push(net);
  }
  const out = await outputs(sd);
  for (const net of nets.reverse()) {
    net.restore();
    net.dispose();
  }
  return out;
}

Deno.test("sdxl_merge_lora: LoRAs on different layers merge into one that applies as both", async () => {
  const model = fixture("sdxl-tiny/model.safetensors");
  if (model === null) return;
  await initGpu();
  await withDir(async (dir) => {
    const te = await subset(LORA("lierla"), "lora_te", `${dir}/te.safetensors`);
    const unet = await subset(LORA("c3lier"), "lora_unet", `${dir}/unet.safetensors`);
    const out = `${dir}/merged.safetensors`;
    const code = await sdxlMergeMain([
      "--models",
      te,
      unet,
      "--ratios",
      "1",
      "1",
      "--save_to",
      out,
      "--save_precision",
      "float",
    ]);
    assert.equal(code, 0);
    const f = await openLoraFile(out);
    try {
      assert.equal(f.metadata.ss_base_model_version, "sdxl_base_v1-0");
      assert.equal(f.metadata.ss_v2, "False");
      assert.equal(f.metadata["modelspec.architecture"], "stable-diffusion-xl-v1-base/lora");
      assert.equal(
        f.metadata["modelspec.implementation"],
        "https://github.com/Stability-AI/generative-models",
      );
      assert.equal(f.metadata["modelspec.merged_from"], "te, unet");
      assert.equal(f.metadata.ss_network_dim, "Dynamic");
      assert.equal(f.version.version, "sdxl");
      assert.equal(f.modules.length, await count(te) + await count(unet));
    } finally {
      f.close();
    }
    const sd = await loadStableDiffusionXL(model);
    try {
      const want = await applied(sd, [te, unet]);
      const got = await applied(sd, [out]);
      const errs = Object.keys(want).map((k) => [k, relErr(got[k], want[k])] as const);
      console.log(errs.map(([k, e]) => `${k} ${e.toExponential(2)}`).join(", "));
      for (const [k, e] of errs) assert.ok(e <= 1e-4, `${k}: relative error ${e}`);
    } finally {
      sd.dispose();
    }
  });
});

Deno.test("sdxl_merge_lora: kohya's factors on shared modules, --lbws on both, --concat", async () => {
  if (fixture("sdxl-tiny/kohya/lierla.safetensors") === null) return;
  await withDir(async (dir) => {
    const [a, b] = [LORA("lierla"), LORA("c3lier")];
    const ratios = [0.6, -0.3];
    // 12 entries: BASE (text encoders) 0.5, MID 2, the rest 1.
    const lbws = parseLbws(["[0.5,1,1,1,1,2,1,1,1,1,1,1]", "[1,1,1,1,1,1,1,1,1,1,1,1]"], 2);
    const out = `${dir}/m.safetensors`, cat = `${dir}/c.safetensors`;
    const r = await mergeLoraFiles({ models: [a, b], ratios, saveTo: out, sdxl: true, lbws });
    assert.equal(r.metadata.ss_base_model_version, "sdxl_base_v1-0");
    await mergeLoraFiles({ models: [a, b], ratios, saveTo: cat, sdxl: true, concat: true });
    const fa = await openLoraFile(a), fb = await openLoraFile(b);
    const m = await openLoraFile(out), c = await openLoraFile(cat);
    try {
      const check = async (prefix: string, w: number) => {
        const x = await fa.readModule(prefix), y = await fb.readModule(prefix);
        const z = await m.readModule(prefix), zc = await c.readModule(prefix);
        const [s1, s2] = ratios; // equal alphas: s_i = ratio_i
        const down = x.down.data.map((v, i) => s1 * w * v + s2 * y.down.data[i]);
        const up = x.up.data.map((v, i) => Math.abs(s1) * w * v + Math.abs(s2) * y.up.data[i]);
        assert.ok(relErr(z.down.data, down) < 1e-6, `${prefix} down`);
        assert.ok(relErr(z.up.data, up) < 1e-6, `${prefix} up`);
        assert.equal(zc.down.shape[0], x.down.shape[0] + y.down.shape[0], `${prefix} concat`);
      };
      await check("lora_te1_text_model_encoder_layers_0_self_attn_q_proj", 0.5);
      await check("lora_te2_text_model_encoder_layers_1_mlp_fc2", 0.5);
      const mid = fa.modules.find((x) => x.prefix.startsWith("lora_unet_middle_block_"))!.prefix;
      await check(mid, 2);
      const out4 = fa.modules.find((x) => x.prefix.startsWith("lora_unet_output_blocks_4"));
      await check(out4!.prefix, 1);
    } finally {
      for (const f of [fa, fb, m, c]) f.close();
    }
  });
});

Deno.test("sdxl_merge_lora and merge_lora: one-line errors name the flag and the other tool", async () => {
  const sdxlLora = fixture("sdxl-tiny/kohya/lierla.safetensors");
  const sdxlModel = fixture("sdxl-tiny/model.safetensors");
  const sd1Lora = fixture("kohya/lierla_a.safetensors");
  if (sdxlLora === null || sdxlModel === null || sd1Lora === null) return;
  await withDir(async (dir) => {
    const out = `${dir}/o.safetensors`;
    const errors: string[] = [];
    const orig = console.error;
    console.error = (...a: unknown[]) => errors.push(a.join(" "));
    try {
      const runs: [() => Promise<number>, RegExp][] = [
        [
          () => sdxlMergeMain(["--models", sd1Lora, "--ratios", "1", "--save_to", out]),
          /--models .*lierla_a\.safetensors: expected an SDXL LoRA, found SD 1\.x.*merge_lora/,
        ],
        [
          () =>
            sdxlMergeMain([
              "--models",
              sdxlLora,
              "--ratios",
              "1",
              "--lbws",
              "[1,2]",
              "--save_to",
              out,
            ]),
          /--lbws: expected a list of 12, 17, 20 or 26 weights, found 2/,
        ],
        [
          () =>
            sdxlMergeMain(["--models", sdxlLora, "--ratios", "1", "--lbws", "x", "--save_to", out]),
          /--lbws: expected a JSON list/,
        ],
        [
          () => mergeMain(["--models", sdxlLora, "--ratios", "1", "--save_to", out]),
          /--models .*lierla\.safetensors: an SDXL LoRA .*sdxl_merge_lora/,
        ],
        [
          () =>
            mergeMain([
              "--sd_model",
              sdxlModel,
              "--models",
              sdxlLora,
              "--ratios",
              "1",
              "--save_to",
              out,
            ]),
          /--sd_model .*model\.safetensors: an SDXL checkpoint.*sdxl_merge_lora/,
        ],
      ];
      for (const [run, re] of runs) {
        errors.length = 0;
        assert.equal(await run(), 1);
        const text = errors.join("\n");
        assert.match(text, re);
        assert.equal(text.trim().split("\n").length, 1, text);
      }
    } finally {
      console.error = orig;
    }
    await assert.rejects(Deno.stat(out));
    assert.throws(() => parseLbws(["[1,1,1,1,1,1,1,1,1,1,1,1]"], 2), LorakitError);
  });
});
