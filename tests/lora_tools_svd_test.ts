/**
 * svd_merge_lora and extract_lora_from_models against kohya's canonical-sign fixtures: per
 * module delta rel 1e-3; key set, ranks and alphas exact; kohya's ss_* keys.
 */
import assert from "node:assert/strict";
import { loadCheckpoint, loadLdmSource } from "../core/io/checkpoint.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import type { TensorSource } from "../core/io/tensor_source.ts";
import { parseLdmYaml } from "../core/model_config/hints.ts";
import { extractLoraFromModels } from "../core/lora/extract.ts";
import { main as svdMergeCli } from "../cli/svd_merge_lora.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";
import { delta, listNames, readModules, tempDir } from "./lora_tools_common.ts";

const K = (f: string) => fixture(`kohya/${f}`);

/** Compare per-module deltas; key set, ranks and alphas exact. Returns the worst rel error. */
async function compareDeltas(got: string, want: string, tol: number): Promise<number> {
  const [g, w] = await Promise.all([readModules(got), readModules(want)]);
  assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort());
  let worst = 0, at = "";
  for (const [p, wm] of w) {
    const gm = g.get(p)!;
    assert.equal(gm.rank, wm.rank, `${p} rank`);
    assert.equal(gm.alpha, wm.alpha, `${p} alpha`);
    assert.deepEqual(gm.downShape, wm.downShape, p);
    assert.deepEqual(gm.upShape, wm.upShape, p);
    const e = relErr(delta(gm), delta(wm));
    if (e > worst) [worst, at] = [e, p];
  }
  assert.ok(worst < tol, `worst delta rel err ${worst} at ${at}`);
  return worst;
}

Deno.test("svd_merge_lora matches kohya's canonical-sign output (delta rel 1e-3)", async () => {
  const want = K("svd_merged.canonical.safetensors");
  if (want === null) return;
  const dir = tempDir();
  const out = `${dir}/svd_merged.safetensors`;
  const code = await svdMergeCli([
    "--save_to",
    out,
    "--models",
    K("lierla_a.safetensors")!,
    K("c3lier.safetensors")!,
    "--ratios",
    "0.8",
    "-0.5",
    "--new_rank",
    "4",
    "--new_conv_rank",
    "2",
    "--save_precision",
    "float",
    "--device",
    "cuda",
  ]);
  assert.equal(code, 0);
  const e = await compareDeltas(out, want, 1e-3);
  console.log(`svd_merge: worst per-module delta rel err ${e.toExponential(2)}`);
  const [a, b] = [await openSafetensors(out), await openSafetensors(want)];
  for (const k of ["ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_v2"]) {
    assert.equal(a.metadata[k], b.metadata[k], k);
  }
  assert.equal(a.metadata.ss_base_model_version, b.metadata.ss_base_model_version);
  assert.equal(a.metadata.ss_network_args, b.metadata.ss_network_args);
  a.close();
  b.close();
  Deno.removeSync(dir, { recursive: true });
});

/** sd1-tiny with every tensor of merged_model_changed.safetensors replaced (kohya's tuned.safetensors). */
function overlay(base: TensorSource, changed: TensorSource): TensorSource {
  return {
    path: "tuned(sd1-tiny + merged_model_changed)",
    metadata: base.metadata,
    list: () => base.list(),
    has: (n) => base.has(n),
    info: (n) => base.info(n),
    readF32: (n) => (changed.has(n) ? changed.readF32(n) : base.readF32(n)),
    readRaw: (n) => (changed.has(n) ? changed.readRaw(n) : base.readRaw(n)),
    close: () => (base.close(), changed.close()),
  };
}

Deno.test("extract_lora_from_models matches kohya's canonical-sign output (delta rel 1e-3)", async () => {
  const want = K("extracted.canonical.safetensors");
  const model = fixture("sd1-tiny/model.safetensors");
  if (want === null || model === null) return;
  const dir = tempDir();
  const out = `${dir}/extracted.safetensors`;
  const org = await loadCheckpoint(model);
  const tuned = loadLdmSource(
    overlay(
      await openSafetensors(model),
      await openSafetensors(K("merged_model_changed.safetensors")!),
    ),
    "ldm-safetensors",
    { yaml: parseLdmYaml(await Deno.readTextFile(fixture("sd1-tiny/model.yaml")!), "model.yaml") },
  );
  try {
    const res = await extractLoraFromModels(org, tuned, {
      saveTo: out,
      dim: 4,
      convDim: 2,
      clampQuantile: 0.99,
      minDiff: 0.01,
      savePrecision: "float",
    });
    assert.ok(res.textEncoderIncluded);
  } finally {
    org.close();
    tuned.close();
  }
  const e = await compareDeltas(out, want, 1e-3);
  console.log(`extract: worst per-module delta rel err ${e.toExponential(2)}`);
  const [a, b] = [await openSafetensors(out), await openSafetensors(want)];
  for (
    const k of [
      "ss_network_module",
      "ss_network_dim",
      "ss_network_alpha",
      "ss_v2",
      "ss_base_model_version",
      "ss_network_args",
      "modelspec.architecture",
    ]
  ) assert.equal(a.metadata[k], b.metadata[k], k);
  a.close();
  b.close();
  assert.deepEqual(listNames(dir), ["extracted.safetensors"]);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("extract_lora_from_models: unchanged text encoder is left out (--min_diff)", async () => {
  const model = fixture("sd1-tiny/model.safetensors");
  if (model === null) return;
  const dir = tempDir();
  const org = await loadCheckpoint(model);
  const tuned = await loadCheckpoint(model);
  try {
    const res = await extractLoraFromModels(org, tuned, { saveTo: `${dir}/x.safetensors`, dim: 2 });
    assert.equal(res.textEncoderIncluded, false);
    const mods = await readModules(`${dir}/x.safetensors`);
    assert.ok(mods.size > 0);
    assert.ok([...mods.keys()].every((p) => p.startsWith("lora_unet_")));
    // LierLa only without --conv_dim: no ResNet modules.
    assert.ok([...mods.keys()].every((p) => !p.includes("resnets")));
  } finally {
    org.close();
    tuned.close();
  }
  Deno.removeSync(dir, { recursive: true });
});
