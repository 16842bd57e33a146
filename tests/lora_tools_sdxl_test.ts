/**
 * svd_merge_lora, resize_lora and extract_lora_from_dylora on kohya's SDXL LoRA files
 * (sdxl-tiny/kohya/lierla.safetensors: rank 4, alpha 2; c3lier.safetensors: also 3x3 convs at
 * rank 2, alpha 1). SVD merge: each module's delta is the rank-k SVD (0.99-quantile clamp) of the
 * summed deltas, as the SD 1.x test checks against kohya. Resize: kohya's rank and alpha rules
 * (alpha' = alpha / rank · new rank), the truncated SVD (residual orthogonal to the kept part),
 * and at the file's own rank kohya's outputs within the fixture's 1e-4. Metadata stays SDXL's.
 */
import assert from "node:assert/strict";
import { main as svdMergeCli } from "../cli/svd_merge_lora.ts";
import { main as resizeCli } from "../cli/resize_lora.ts";
import { main as dyloraCli } from "../cli/extract_lora_from_dylora.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { lowRankFactors } from "../core/lora/svd_ops.ts";
import { sdxlBlockIndex } from "../core/lora/lbw.ts";
import { sdBlockIndex } from "../core/lora/lbw_index.ts";
import { initGpu, Tensor } from "../gpu/mod.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";
import { delta, listNames, type ModuleView, readModules, tempDir } from "./lora_tools_common.ts";
import { appliedErrors, formatErrors } from "./lora_tools_sdxl_common.ts";

const LIERLA = fixture("sdxl-tiny/kohya/lierla.safetensors");
const C3LIER = fixture("sdxl-tiny/kohya/c3lier.safetensors");
const ready = LIERLA !== null && C3LIER !== null &&
  fixture("sdxl-tiny/kohya/lora_forward.safetensors") !== null;

async function metadataOf(path: string): Promise<Record<string, string>> {
  const f = await openSafetensors(path);
  const m = { ...f.metadata };
  f.close();
  return m;
}

/** The SDXL keys every tool output keeps or writes. */
function assertSdxlMetadata(md: Record<string, string>): void {
  assert.equal(md.ss_base_model_version, "sdxl_base_v1-0");
  assert.equal(md.ss_v2, "False");
  assert.equal(md["modelspec.architecture"], "stable-diffusion-xl-v1-base/lora");
  assert.equal(md["modelspec.implementation"], "https://github.com/Stability-AI/generative-models");
  assert.equal(md["modelspec.resolution"], "1024x1024");
}

const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, x, i) => s + x * b[i], 0);

/**
 * Worst per-module delta error of the SVD-merged `out` (lierla, c3lier; new ranks 4 and 2)
 * against the 0.99-clamped rank-k SVD of `Σ coef(prefix, file) · delta`, and against that sum.
 */
async function compareWithSummedSvd(
  out: string,
  coef: (prefix: string, file: number) => number,
): Promise<[number, number]> {
  const inputs = [await readModules(LIERLA!), await readModules(C3LIER!)];
  const got = await readModules(out);
  const names = new Set([...inputs[0].keys(), ...inputs[1].keys()]);
  assert.deepEqual([...got.keys()].sort(), [...names].sort());
  await initGpu();
  let worst = 0, worstExact = 0;
  for (const p of names) {
    const present = inputs.map((m) => m.get(p)).map((m, i) => [m, coef(p, i)] as const)
      .filter((x): x is [ModuleView, number] => x[0] !== undefined);
    const [m0] = present[0];
    const rows = m0.upShape[0], cols = m0.down.length / m0.rank;
    const sum = new Float64Array(rows * cols);
    for (const [m, r] of present) delta(m).forEach((v, i) => (sum[i] += r * v));
    const conv3 = m0.downShape.length === 4 && m0.downShape[2] === 3;
    const k = Math.min(conv3 ? 2 : 4, m0.downShape[1], rows);
    const g = got.get(p)!;
    assert.deepEqual([g.rank, g.alpha], [k, k], p);
    const w = Tensor.fromArray(Float32Array.from(sum), [rows, cols]);
    const f = await lowRankFactors(w, k, 0.99);
    w.dispose();
    const want = delta({ ...g, up: f.up, down: f.down });
    worst = Math.max(worst, relErr(delta(g), want));
    worstExact = Math.max(worstExact, relErr(delta(g), sum));
  }
  return [worst, worstExact];
}

Deno.test("svd_merge_lora on two SDXL files: the SVD of the summed deltas, SDXL metadata", async () => {
  if (!ready) return;
  const dir = tempDir();
  try {
    const out = `${dir}/merged.safetensors`;
    const ratios = [0.8, -0.5];
    const code = await svdMergeCli([
      "--models",
      LIERLA!,
      C3LIER!,
      "--ratios",
      ...ratios.map(String),
      "--new_rank",
      "4",
      "--new_conv_rank",
      "2",
      "--save_to",
      out,
    ]);
    assert.equal(code, 0);
    const [worst, worstExact] = await compareWithSummedSvd(out, (_, i) => ratios[i]);
    console.log(
      `svd_merge SDXL: worst module delta rel err ${worst.toExponential(2)} vs the clamped ` +
        `SVD of the summed deltas (the rank-4 truncation and clamp leave ` +
        `${worstExact.toExponential(2)} from the full sum)`,
    );
    assert.ok(worst < 1e-3, `worst delta rel err ${worst}`);
    const md = await metadataOf(out);
    assertSdxlMetadata(md);
    assert.equal(md.ss_network_dim, "4");
    assert.equal(md.ss_network_alpha, "4");
    assert.equal(md.ss_network_args, '{"conv_dim": 2, "conv_alpha": 2}');
    assert.equal(md["modelspec.merged_from"], "lierla, c3lier");
    assert.equal(md["modelspec.title"], "merged");
    // SDXL and SD 1.x files together: an error naming both, no output.
    const sd1 = fixture("kohya/lierla_a.safetensors");
    if (sd1 !== null) {
      const bad = `${dir}/bad.safetensors`;
      const errors: string[] = [];
      const orig = console.error;
      console.error = (...a: unknown[]) => void errors.push(a.join(" "));
      try {
        const c = await svdMergeCli([
          "--models",
          LIERLA!,
          sd1,
          "--ratios",
          "1",
          "1",
          "--save_to",
          bad,
        ]);
        assert.equal(c, 1);
      } finally {
        console.error = orig;
      }
      assert.match(errors.join("\n"), /--models .*lierla_a\.safetensors: expected an SDXL LoRA/);
      assert.deepEqual(listNames(dir), ["merged.safetensors"]);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("svd_merge_lora --lbws on SDXL files: kohya's block weights by SGM block", async () => {
  if (!ready) return;
  const dir = tempDir();
  try {
    const out = `${dir}/lbw.safetensors`;
    const ratios = [0.8, -0.5];
    const lists = [
      [1, 0.5, 2, 1, 0.25, 1.5, 1, 1, 3, 1, 0.5, 2],
      [2, 1, 1, 0.5, 1, 1, 2, 1, 1, 0.75, 1, 1],
    ];
    const args = ["--models", LIERLA!, C3LIER!, "--ratios", ...ratios.map(String)];
    const lbws = ["--lbws", ...lists.map((l) => JSON.stringify(l))];
    const ranks = ["--new_rank", "4", "--new_conv_rank", "2"];
    assert.equal(await svdMergeCli([...args, ...lbws, ...ranks, "--save_to", out]), 0);
    // LAYER12's blocks: BASE, IN04, IN05, IN07, IN08, MID, OUT00-OUT05.
    const blocks = [0, 5, 6, 8, 9, 13, 14, 15, 16, 17, 18, 19];
    const weight = (p: string, i: number) => {
      const at = blocks.indexOf(sdxlBlockIndex(p));
      return at < 0 ? 1 : lists[i][at];
    };
    const [worst] = await compareWithSummedSvd(out, (p, i) => ratios[i] * weight(p, i));
    console.log(`svd_merge SDXL --lbws: worst module delta rel err ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-3, `worst delta rel err ${worst}`);
    // kohya's SD 1.x/2.x block numbers (diffusers names).
    const sd = [
      ["lora_te_text_model_encoder_layers_0_mlp_fc1", 0],
      ["lora_unet_down_blocks_0_attentions_0_proj_in", 2],
      ["lora_unet_down_blocks_0_downsamplers_0_conv", 4],
      ["lora_unet_down_blocks_2_resnets_1_conv1", 9],
      ["lora_unet_mid_block_attentions_0_proj_out", 13],
      ["lora_unet_up_blocks_0_upsamplers_0_conv", 16],
      ["lora_unet_up_blocks_1_attentions_2_proj_in", 19],
      ["lora_unet_up_blocks_3_resnets_2_conv2", 25],
      ["lora_unet_conv_in", -1],
    ] as const;
    for (const [name, block] of sd) assert.equal(sdBlockIndex(name), block, name);
    // A list length of the other family is an error naming --lbws; no output.
    const errors: string[] = [];
    const orig = console.error;
    console.error = (...a: unknown[]) => void errors.push(a.join(" "));
    try {
      const l26 = JSON.stringify(Array(26).fill(1));
      const bad = [...args, "--lbws", l26, l26, ...ranks, "--save_to", `${dir}/bad.safetensors`];
      assert.equal(await svdMergeCli(bad), 1);
    } finally {
      console.error = orig;
    }
    assert.match(errors.join("\n"), /--lbws: lists of 26 weights are for SD 1\.x\/2\.x/);
    assert.deepEqual(listNames(dir), ["lbw.safetensors"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("resize_lora on SDXL files: kohya's rank/alpha rules, truncated SVD, SDXL metadata kept", async () => {
  if (!ready) return;
  const dir = tempDir();
  try {
    const orig = await readModules(LIERLA!);
    // At the file's own rank: the same LoRA, so kohya's outputs of lierla at 0.7.
    const same = `${dir}/lierla_4.safetensors`;
    assert.equal(await resizeCli(["--model", LIERLA!, "--save_to", same, "--new_rank", "4"]), 0);
    const sameMods = await readModules(same);
    let worstSame = 0;
    for (const [p, m] of orig) {
      const g = sameMods.get(p)!;
      assert.deepEqual([g.rank, g.alpha], [4, 2], p);
      worstSame = Math.max(worstSame, relErr(delta(g), delta(m)));
    }
    const errs = await appliedErrors(same, "lierla");
    console.log(
      `resize SDXL to rank 4: worst module delta rel err ${worstSame.toExponential(2)}; ` +
        `outputs at 0.7 vs kohya's lierla: ${formatErrors(errs)}`,
    );
    assert.ok(worstSame < 1e-4, `rank-4 delta rel err ${worstSame}`);
    for (const [k, e] of Object.entries(errs)) assert.ok(e <= 1e-4, `${k}: ${e} > 1e-4`);

    // Rank 2: alpha 2 / 4 * 2 = 1; each delta the best rank-2 part of the original.
    const low = `${dir}/lierla_2.safetensors`;
    assert.equal(await resizeCli(["--model", LIERLA!, "--save_to", low, "--new_rank", "2"]), 0);
    const lowMods = await readModules(low);
    assert.deepEqual([...lowMods.keys()].sort(), [...orig.keys()].sort());
    let worstOrtho = 0, worstResidual = 0;
    for (const [p, m] of orig) {
      const g = lowMods.get(p)!;
      assert.deepEqual([g.rank, g.alpha], [2, 1], p);
      const full = delta(m), kept = delta(g);
      const residual = full.map((v, i) => v - kept[i]);
      const n2 = dot(full, full);
      // Truncated SVD: the residual is orthogonal to the kept part and holds at most the two
      // smallest of four singular values' energy (<= half).
      worstOrtho = Math.max(worstOrtho, Math.abs(dot(kept, residual)) / n2);
      worstResidual = Math.max(worstResidual, dot(residual, residual) / n2);
    }
    const lowErrs = await appliedErrors(low, "lierla");
    console.log(
      `resize SDXL to rank 2: worst |<kept, residual>| / |delta|^2 ${
        worstOrtho.toExponential(2)
      }, ` +
        `worst residual energy ${worstResidual.toFixed(3)}; outputs at 0.7 vs the rank-4 ` +
        `file's (kohya's): ${formatErrors(lowErrs)}`,
    );
    assert.ok(worstOrtho < 1e-4, `kept part not orthogonal to the residual: ${worstOrtho}`);
    assert.ok(worstResidual <= 0.5 + 1e-6, `residual energy ${worstResidual}`);
    for (const [k, e] of Object.entries(lowErrs)) assert.ok(e < 0.1, `rank 2 ${k}: ${e}`);
    const before = await metadataOf(LIERLA!);
    const md = await metadataOf(low);
    assertSdxlMetadata(md);
    assert.equal(md.ss_network_dim, "2");
    assert.equal(md.ss_network_alpha, "1.0");
    assert.equal(md.ss_training_comment, "dimension is resized from 4 to 2; ");
    for (const [k, v] of Object.entries(before)) {
      if (!k.startsWith("sshs_") && !["ss_network_dim", "ss_network_alpha"].includes(k)) {
        assert.equal(md[k], v, k);
      }
    }

    // C3Lier: every conv module (kohya: 4-D factors, 1x1 ones too) to --new_conv_rank 1, alpha
    // alpha / rank * 1 (3x3: 1 / 2, 1x1: 2 / 4); Linear ones to rank 2, alpha 1.
    const c3 = `${dir}/c3lier_2_1.safetensors`;
    const c3args = ["--model", C3LIER!, "--save_to", c3, "--new_rank", "2", "--new_conv_rank", "1"];
    assert.equal(await resizeCli(c3args), 0);
    const c3orig = await readModules(C3LIER!);
    for (const [p, m] of await readModules(c3)) {
      const o = c3orig.get(p)!;
      const r = o.downShape.length === 4 ? 1 : 2;
      assert.deepEqual([m.rank, m.alpha], [r, (o.alpha / o.rank) * r], p);
    }
    const c3md = await metadataOf(c3);
    assertSdxlMetadata(c3md);
    assert.equal(c3md.ss_training_comment, "dimension is resized from 4 to 2 (conv: 1); ");

    // Dynamic: ranks chosen per module, capped by --new_rank.
    const dyn = `${dir}/dyn.safetensors`;
    const dynArgs = ["--dynamic_method", "sv_fro", "--dynamic_param", "0.9", "--new_rank", "3"];
    assert.equal(await resizeCli(["--model", LIERLA!, "--save_to", dyn, ...dynArgs]), 0);
    for (const [p, m] of await readModules(dyn)) {
      assert.ok(m.rank >= 1 && m.rank <= 3, `${p} rank ${m.rank}`);
      assert.ok(Math.abs(m.alpha - m.rank / 2) < 1e-6, `${p} alpha ${m.alpha}`);
    }
    const dmd = await metadataOf(dyn);
    assertSdxlMetadata(dmd);
    assert.deepEqual([dmd.ss_network_dim, dmd.ss_network_alpha], ["Dynamic", "Dynamic"]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("extract_lora_from_dylora on an SDXL file: rank prefixes, alpha and SDXL metadata kept", async () => {
  if (!ready) return;
  const dir = tempDir();
  try {
    const base = `${dir}/split.safetensors`;
    assert.equal(await dyloraCli(["--model", LIERLA!, "--save_to", base, "--unit", "2"]), 0);
    assert.deepEqual(listNames(dir), ["split-0002.safetensors"]);
    const orig = await readModules(LIERLA!);
    const got = await readModules(`${dir}/split-0002.safetensors`);
    assert.deepEqual([...got.keys()].sort(), [...orig.keys()].sort());
    for (const [p, m] of orig) {
      const g = got.get(p)!;
      assert.deepEqual([g.rank, g.alpha], [2, 2], p);
      const cols = m.down.length / m.rank;
      assert.deepEqual(g.down, m.down.slice(0, 2 * cols), p);
      for (let o = 0; o < m.upShape[0]; o++) {
        assert.deepEqual(g.up.slice(o * 2, o * 2 + 2), m.up.slice(o * 4, o * 4 + 2), p);
      }
    }
    const md = await metadataOf(`${dir}/split-0002.safetensors`);
    assertSdxlMetadata(md);
    assert.equal(md.ss_network_dim, "2");
    assert.equal(md.ss_training_comment, "split from DyLoRA, rank 4 to 2; ");
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
