/**
 * merge_lora against kohya's fixtures: into the sd1-tiny checkpoint (changed tensors rel 1e-5,
 * every other tensor and the key set unchanged), two LoRAs into one (factors rel 1e-5), --concat;
 * and the error cases (ratio count, SD2 LoRA into SD1, corrupt input: no partial output).
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { loadCheckpoint } from "../core/io/checkpoint.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { saveLoraFile } from "../core/lora/lora_file.ts";
import { mergeLoraFiles } from "../core/lora/merge.ts";
import { mergeIntoCheckpoint } from "../core/lora/merge_model.ts";
import { loraTargets } from "../core/lora/modules.ts";
import { main as mergeCli } from "../cli/merge_lora.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";
import { listNames, readModules, tempDir } from "./lora_tools_common.ts";

const K = (f: string) => fixture(`kohya/${f}`);

Deno.test("merge_lora --sd_model matches kohya (changed tensors rel 1e-5, rest unchanged)", async () => {
  const model = fixture("sd1-tiny/model.safetensors");
  if (model === null) return;
  const dir = tempDir();
  const out = `${dir}/merged.safetensors`;
  const res = await mergeIntoCheckpoint({
    sdModel: model,
    models: [K("lierla_a.safetensors")!, K("c3lier.safetensors")!],
    ratios: [0.8, -0.5],
    saveTo: out,
    savePrecision: "float",
  });
  const [src, got, want] = await Promise.all(
    [model, out, K("merged_model_changed.safetensors")!].map(openSafetensors),
  );
  try {
    const srcKeys = src.list().map((t) => t.name).sort();
    assert.deepEqual(got.list().map((t) => t.name).sort(), srcKeys);
    assert.equal(want.list().length, 295);
    assert.equal(res.weightsChanged, 295);
    let worst = 0;
    for (const key of srcKeys) {
      if (want.has(key)) {
        const e = relErr((await got.readF32(key)).data, (await want.readF32(key)).data);
        worst = Math.max(worst, e);
        assert.ok(e < 1e-5, `${key}: rel ${e}`);
      } else {
        assert.deepEqual(await got.readRaw(key), await src.readRaw(key), key);
      }
    }
    console.log(`merge into model: worst rel err ${worst.toExponential(2)} over 295 tensors`);
  } finally {
    for (const f of [src, got, want]) f.close();
  }
  // The base has a model.yaml beside it: the merged checkpoint gets its own copy.
  assert.deepEqual(listNames(dir), ["merged.safetensors", "merged.yaml"]);
  Deno.removeSync(dir, { recursive: true });
});

async function compareFactors(got: string, want: string, tol: number): Promise<number> {
  const [g, w] = await Promise.all([readModules(got), readModules(want)]);
  assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort());
  let worst = 0;
  for (const [p, wm] of w) {
    const gm = g.get(p)!;
    assert.deepEqual(gm.downShape, wm.downShape, p);
    assert.deepEqual(gm.upShape, wm.upShape, p);
    assert.ok(Math.abs(gm.alpha - wm.alpha) <= tol * Math.abs(wm.alpha), `${p} alpha`);
    worst = Math.max(worst, relErr(gm.down, wm.down), relErr(gm.up, wm.up));
  }
  assert.ok(worst < tol, `worst factor rel err ${worst}`);
  return worst;
}

Deno.test("merge_lora of two LoRAs matches kohya's factors (rel 1e-5)", async () => {
  if (K("merged_lora.safetensors") === null) return;
  const dir = tempDir();
  const out = `${dir}/merged_lora.safetensors`;
  const res = await mergeLoraFiles({
    models: [K("lierla_a.safetensors")!, K("lierla_b.safetensors")!],
    ratios: [0.8, -0.5],
    saveTo: out,
    savePrecision: "float",
  });
  const e = await compareFactors(out, K("merged_lora.safetensors")!, 1e-5);
  console.log(`merged_lora: worst factor rel err ${e.toExponential(2)}`);
  assert.equal(res.dim, "4");
  assert.equal(res.alpha, "2.0");
  for (const k of ["ss_network_module", "ss_v2", "ss_base_model_version"]) {
    assert.ok(k in res.metadata);
  }
  assert.equal(res.metadata["modelspec.merged_from"], "lierla_a, lierla_b");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("merge_lora --concat matches kohya's factors (rel 1e-5); Dynamic dims", async () => {
  if (K("merged_lora_concat.safetensors") === null) return;
  const dir = tempDir();
  const out = `${dir}/merged_lora_concat.safetensors`;
  const code = await mergeCli([
    "--save_to",
    out,
    "--models",
    K("lierla_a.safetensors")!,
    K("c3lier.safetensors")!,
    "--ratios",
    "0.8",
    "-0.5",
    "--concat",
    "--save_precision",
    "float",
  ]);
  assert.equal(code, 0);
  const e = await compareFactors(out, K("merged_lora_concat.safetensors")!, 1e-5);
  console.log(`merged_lora_concat: worst factor rel err ${e.toExponential(2)}`);
  const st = await openSafetensors(out);
  assert.equal(st.metadata.ss_network_dim, "Dynamic");
  assert.equal(st.metadata.ss_network_alpha, "Dynamic");
  st.close();
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("merge_lora errors: ratio count, different ranks without --concat", async () => {
  if (K("lierla_a.safetensors") === null) return;
  const dir = tempDir();
  await assert.rejects(
    mergeLoraFiles({
      models: [K("lierla_a.safetensors")!, K("lierla_b.safetensors")!],
      ratios: [0.8],
      saveTo: `${dir}/x.safetensors`,
    }),
    (e: Error) => e instanceof LorakitError && /--ratios/.test(e.message),
  );
  await assert.rejects(
    mergeLoraFiles({
      models: [K("lierla_a.safetensors")!, K("c3lier.safetensors")!],
      ratios: [1, 1],
      saveTo: `${dir}/y.safetensors`,
    }),
    (e: Error) => e instanceof LorakitError && /--concat/.test(e.message),
  );
  assert.equal(
    await mergeCli(["--save_to", `${dir}/z.safetensors`, "--models", "a", "--ratios"]),
    1,
  );
  assert.deepEqual(listNames(dir), []);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("merge_lora: an SD2 LoRA into SD1 and a corrupt LoRA fail, leaving no output", async () => {
  const sd1 = fixture("sd1-tiny/model.safetensors");
  const sd2 = fixture("sd2-tiny/model.safetensors");
  if (sd1 === null || sd2 === null) return;
  const dir = tempDir();
  // A LoRA for sd2-tiny: every text-encoder and transformer layer, rank 2, written by lorakit.
  const ck2 = await loadCheckpoint(sd2);
  const targets = loraTargets(ck2.names().map((n) => ({ name: n, shape: ck2.info(n).shape })))
    .filter((t) => !t.convBlock);
  ck2.close();
  const sd2Lora = `${dir}/sd2_lora.safetensors`;
  await saveLoraFile(
    sd2Lora,
    targets.map((t) => {
      const k = t.kind === "linear" ? [] : t.kernel;
      return {
        prefix: t.prefix,
        down: {
          shape: [2, t.inFeatures, ...k],
          data: new Float32Array(2 * t.inFeatures * t.kernel[0] * t.kernel[1]).fill(0.01),
        },
        up: {
          shape: [t.outFeatures, 2, ...(k.length ? [1, 1] : [])],
          data: new Float32Array(t.outFeatures * 2).fill(0.01),
        },
        alpha: 1,
      };
    }),
    { precision: "float", metadata: { ss_v2: "True", ss_base_model_version: "sd_v2" } },
  );
  const out = `${dir}/merged.safetensors`;
  await assert.rejects(
    mergeIntoCheckpoint({ sdModel: sd1, models: [sd2Lora], ratios: [1], saveTo: out }),
    (e: Error) =>
      e instanceof LorakitError && /SD 2\.x/.test(e.message) && /SD 1\.x/.test(e.message),
  );
  const corrupt = `${dir}/corrupt.safetensors`;
  const bytes = Deno.readFileSync(K("lierla_a.safetensors")!);
  Deno.writeFileSync(corrupt, bytes.subarray(0, bytes.length - 1000));
  await assert.rejects(
    mergeIntoCheckpoint({
      sdModel: sd1,
      models: [K("c3lier.safetensors")!, corrupt],
      ratios: [1, 1],
      saveTo: out,
    }),
    (e: Error) => e instanceof LorakitError && e.message.includes("corrupt.safetensors"),
  );
  assert.deepEqual(listNames(dir), ["corrupt.safetensors", "sd2_lora.safetensors"]);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("merge_lora into a checkpoint with a <stem>.yaml writes the merged one's yaml", async () => {
  const sd2 = fixture("sd2-tiny/model.safetensors");
  if (sd2 === null) return;
  const dir = tempDir();
  try {
    const base = `${dir}/base.safetensors`;
    Deno.copyFileSync(sd2, base);
    Deno.copyFileSync(sd2.replace(/\.safetensors$/, ".yaml"), `${dir}/base.yaml`);
    // A rank-1 LoRA on every transformer linear of sd2-tiny.
    const ck2 = await loadCheckpoint(base);
    const targets = loraTargets(ck2.names().map((n) => ({ name: n, shape: ck2.info(n).shape })))
      .filter((t) => t.kind === "linear");
    ck2.close();
    const lora = `${dir}/lora.safetensors`;
    await saveLoraFile(
      lora,
      targets.map((t) => ({
        prefix: t.prefix,
        down: { shape: [1, t.inFeatures], data: new Float32Array(t.inFeatures).fill(0.01) },
        up: { shape: [t.outFeatures, 1], data: new Float32Array(t.outFeatures).fill(0.01) },
        alpha: 1,
      })),
      { precision: "float", metadata: { ss_v2: "True", ss_base_model_version: "sd_v2" } },
    );
    const out = `${dir}/merged.safetensors`;
    const r = await mergeIntoCheckpoint({
      sdModel: base,
      models: [lora],
      ratios: [1],
      saveTo: out,
    });
    assert.equal(r.yamlWritten, `${dir}/merged.yaml`);
    assert.equal(
      Deno.readTextFileSync(`${dir}/merged.yaml`),
      Deno.readTextFileSync(`${dir}/base.yaml`),
    );
    // The merged model now loads with the base's head widths (the yaml's, not SD2's default 64).
    const ck = await loadCheckpoint(out);
    assert.deepEqual(ck.config.unet.numHeads, [2, 4, 4, 4]);
    ck.close();
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
