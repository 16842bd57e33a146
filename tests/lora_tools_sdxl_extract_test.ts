/**
 * extract_lora_from_models --sdxl on sdxl-tiny: the tuned model is the fixture model with kohya's
 * C3Lier file (sdxl-tiny/kohya/c3lier.safetensors, ranks 4 and 2) merged in at multiplier 1 and
 * written as an SGM file. Extracting at its ranks without the clamp recovers the LoRA exactly up
 * to float32 rounding, so the extracted file applied at 0.7 must give kohya's own outputs of
 * c3lier at 0.7 (lora_forward.safetensors) within the fixture's float32 tolerance, 1e-4; with
 * kohya's default clamp (0.99) the outputs move by what the clamp cuts (measured, bounded
 * loosely). Names, ranks and shapes are kohya's (lora_modules.json); metadata is SDXL's.
 */
import assert from "node:assert/strict";
import { main as extractCli } from "../cli/extract_lora_from_models.ts";
import { loadSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { extractLoraFromModels } from "../core/lora/extract.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";
import { delta, listNames, readModules, tempDir } from "./lora_tools_common.ts";
import {
  appliedErrors,
  formatErrors,
  moduleSpec,
  writeTunedSdxl,
} from "./lora_tools_sdxl_common.ts";

const MODEL = fixture("sdxl-tiny/model.safetensors");
const C3LIER = fixture("sdxl-tiny/kohya/c3lier.safetensors");
const SPEC = fixture("sdxl-tiny/kohya/lora_modules.json");
const ready = MODEL !== null && C3LIER !== null && SPEC !== null &&
  fixture("sdxl-tiny/forward.safetensors") !== null &&
  fixture("sdxl-tiny/kohya/lora_forward.safetensors") !== null;

/** Worst per-module delta error of `got` against the fixture LoRA's deltas. */
async function deltaError(got: string): Promise<number> {
  const [g, w] = await Promise.all([readModules(got), readModules(C3LIER!)]);
  let worst = 0;
  for (const [p, wm] of w) worst = Math.max(worst, relErr(delta(g.get(p)!), delta(wm)));
  return worst;
}

const outputErrors = (lora: string) => appliedErrors(lora, "c3lier");
const fmt = formatErrors;

Deno.test("extract_lora_from_models --sdxl: kohya's C3Lier names, SDXL metadata; applied it gives the tuned outputs", async () => {
  if (!ready) return;
  const dir = tempDir();
  try {
    const tuned = `${dir}/tuned.safetensors`;
    const teMax = await writeTunedSdxl(MODEL!, C3LIER!, tuned);
    assert.ok(teMax > 0.01, `text-encoder change ${teMax} must pass --min_diff 0.01`);
    const out = `${dir}/extracted.safetensors`;
    const code = await extractCli([
      "--sdxl",
      "--model_org",
      MODEL!,
      "--model_tuned",
      tuned,
      "--save_to",
      out,
      "--dim",
      "4",
      "--conv_dim",
      "2",
      "--device",
      "cuda",
      "--load_original_model_to",
      "cpu",
      "--load_tuned_model_to",
      "cuda",
      "--save_precision",
      "float",
    ]);
    assert.equal(code, 0);
    assert.deepEqual(listNames(dir), ["extracted.safetensors", "tuned.safetensors"]);
    const spec = await moduleSpec(SPEC!, "c3lier");
    const mods = await readModules(out);
    const names = [...mods.keys()];
    const of = (p: string) => names.filter((n) => n.startsWith(p)).sort();
    assert.deepEqual(of("lora_te1_"), spec.lora_te1);
    assert.deepEqual(of("lora_te2_"), spec.lora_te2);
    assert.deepEqual(of("lora_unet_"), spec.lora_unet);
    assert.equal(names.length, Object.keys(spec.rank_alpha_down_up_shapes).length);
    for (const [p, m] of mods) {
      const [rank, , down, up] = spec.rank_alpha_down_up_shapes[p];
      assert.deepEqual([m.rank, m.alpha, m.downShape, m.upShape], [rank, rank, down, up], p);
    }
    const f = await openSafetensors(out);
    const md = f.metadata;
    f.close();
    assert.equal(md.ss_base_model_version, "sdxl_base_v1-0");
    assert.equal(md.ss_v2, "False");
    assert.equal(md.ss_network_module, "networks.lora");
    assert.equal(md.ss_network_dim, "4");
    assert.equal(md.ss_network_alpha, "4.0");
    assert.equal(md.ss_network_args, '{"conv_dim": "2", "conv_alpha": "2.0"}');
    assert.equal(md["modelspec.architecture"], "stable-diffusion-xl-v1-base/lora");
    assert.equal(
      md["modelspec.implementation"],
      "https://github.com/Stability-AI/generative-models",
    );
    assert.equal(md["modelspec.resolution"], "1024x1024");
    assert.equal(md["modelspec.prediction_type"], "epsilon");
    assert.equal(md["modelspec.title"], "extracted");
    // The original model as a diffusers folder: the same weights, so the same file.
    const folder = fixture("sdxl-tiny/diffusers");
    if (folder !== null) {
      const fromFolder = `${dir}/from_folder.safetensors`;
      const fargs = ["--sdxl", "--model_org", folder, "--model_tuned", tuned, "--dim", "4"];
      assert.equal(await extractCli([...fargs, "--conv_dim", "2", "--save_to", fromFolder]), 0);
      const [x, y] = [await readModules(fromFolder), await readModules(out)];
      assert.deepEqual([...x.keys()].sort(), [...y.keys()].sort());
      for (const [p, m] of y) assert.deepEqual(x.get(p), m, `${p} from the diffusers folder`);
      Deno.removeSync(fromFolder);
    }
    const clampedDelta = await deltaError(out);
    const clamped = await outputErrors(out);
    console.log(
      `extract --sdxl, clamp 0.99: worst module delta rel err ${clampedDelta.toExponential(2)}; ` +
        `outputs at 0.7 vs kohya's c3lier: ${fmt(clamped)}`,
    );
    // The clamp cuts 1% of each module's factor values: a bounded, not a rounding, error.
    for (const [k, e] of Object.entries(clamped)) assert.ok(e < 0.1, `clamped ${k}: ${e}`);

    // Without the clamp, at the LoRA's own ranks: exact up to float32 rounding.
    const exact = `${dir}/exact.safetensors`;
    const org = await loadSdxlCheckpoint(MODEL!, { headsOptional: true });
    const tunedCkpt = await loadSdxlCheckpoint(tuned, { headsOptional: true });
    try {
      const r = await extractLoraFromModels(org, tunedCkpt, {
        saveTo: exact,
        dim: 4,
        convDim: 2,
        clampQuantile: null,
      });
      assert.ok(r.textEncoderIncluded);
      assert.equal(r.modules, names.length);
    } finally {
      org.close();
      tunedCkpt.close();
    }
    const exactDelta = await deltaError(exact);
    const errs = await outputErrors(exact);
    console.log(
      `extract --sdxl, no clamp: worst module delta rel err ${exactDelta.toExponential(2)}; ` +
        `outputs at 0.7 vs kohya's c3lier: ${fmt(errs)}`,
    );
    assert.ok(exactDelta < 1e-3, `delta rel err ${exactDelta}`);
    for (const [k, e] of Object.entries(errs)) assert.ok(e <= 1e-4, `${k}: ${e} > 1e-4`);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("extract_lora_from_models --sdxl: LierLa names; --min_diff leaves both text encoders out", async () => {
  if (!ready) return;
  const dir = tempDir();
  try {
    const tuned = `${dir}/tuned.safetensors`;
    await writeTunedSdxl(MODEL!, C3LIER!, tuned);
    const out = `${dir}/unet_only.safetensors`;
    const args = ["--sdxl", "--model_org", MODEL!, "--model_tuned", tuned, "--save_to", out];
    assert.equal(await extractCli([...args, "--dim", "2", "--min_diff", "10"]), 0);
    const spec = await moduleSpec(SPEC!, "lierla");
    const mods = await readModules(out);
    assert.deepEqual([...mods.keys()].sort(), spec.lora_unet);
    for (const m of mods.values()) assert.deepEqual([m.rank, m.alpha], [2, 2]);
    // --load_precision fp16: weights and differences rounded to fp16, the same module set.
    const half = `${dir}/half.safetensors`;
    const hargs = ["--sdxl", "--model_org", MODEL!, "--model_tuned", tuned, "--save_to", half];
    assert.equal(await extractCli([...hargs, "--load_precision", "fp16", "--no_metadata"]), 0);
    const h = await readModules(half);
    assert.deepEqual(
      [...h.keys()].sort(),
      [...spec.lora_te1, ...spec.lora_te2, ...spec.lora_unet].sort(),
    );
    const f = await openSafetensors(half);
    assert.equal(f.metadata.ss_base_model_version, "sdxl_base_v1-0");
    assert.equal(f.metadata["modelspec.architecture"], undefined);
    f.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("extract_lora_from_models: --sdxl and the models' family must agree, naming the flag", async () => {
  const sd1 = fixture("sd1-tiny/model.safetensors");
  if (!ready || sd1 === null) return;
  const dir = tempDir();
  const out = `${dir}/x.safetensors`;
  const errors: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.join(" "));
  try {
    const run = (...a: string[]) => extractCli([...a, "--save_to", out]);
    assert.equal(await run("--sdxl", "--model_org", sd1, "--model_tuned", sd1), 1);
    assert.equal(await run("--model_org", MODEL!, "--model_tuned", MODEL!), 1);
    assert.equal(await run("--sdxl", "--v2", "--model_org", MODEL!, "--model_tuned", MODEL!), 1);
    assert.equal(await run("--sdxl", "--model_org", MODEL!, "--model_tuned", sd1), 1);
  } finally {
    console.error = orig;
  }
  const text = errors.join("\n");
  assert.match(text, /--model_org .*expected an SDXL model with --sdxl/);
  assert.match(text, /--model_org .*pass --sdxl/);
  assert.match(text, /--v2 and --sdxl/);
  assert.match(text, /--model_tuned .*expected an SDXL model/);
  assert.deepEqual(listNames(dir), []);
  Deno.removeSync(dir, { recursive: true });
});
