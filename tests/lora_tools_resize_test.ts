/**
 * resize_lora (plain and the three dynamic methods), extract_lora_from_dylora and
 * check_lora_weights against kohya's fixtures, plus the rank-larger-than-matrix error.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { formatStat, torchScalarRepr } from "../core/lora/check.ts";
import { dyloraOutputName, extractFromDylora } from "../core/lora/dylora_extract.ts";
import { chooseRank, resizeLora } from "../core/lora/resize.ts";
import { main as resizeCli } from "../cli/resize_lora.ts";
import { main as dyloraCli } from "../cli/extract_lora_from_dylora.ts";
import { main as checkCli } from "../cli/check_lora_weights.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";
import { delta, listNames, readModules, tempDir } from "./lora_tools_common.ts";

const K = (f: string) => fixture(`kohya/${f}`);

const CASES: [string, string, string[]][] = [
  ["resized_plain", "c3lier", ["--new_rank", "4", "--new_conv_rank", "3"]],
  ["resized_sv_ratio", "spectral", [
    "--new_rank",
    "8",
    "--new_conv_rank",
    "7",
    "--dynamic_method",
    "sv_ratio",
    "--dynamic_param",
    "4",
  ]],
  ["resized_sv_fro", "spectral", [
    "--new_rank",
    "8",
    "--new_conv_rank",
    "7",
    "--dynamic_method",
    "sv_fro",
    "--dynamic_param",
    "0.9",
  ]],
  ["resized_sv_cumulative", "spectral", [
    "--new_rank",
    "8",
    "--new_conv_rank",
    "7",
    "--dynamic_method",
    "sv_cumulative",
    "--dynamic_param",
    "0.9",
  ]],
];

for (const [name, input, flags] of CASES) {
  Deno.test(`resize_lora ${name}: ranks exact, delta rel 1e-3, kohya's metadata`, async () => {
    const want = K(`${name}.safetensors`);
    if (want === null) return;
    const dir = tempDir();
    const out = `${dir}/${name}.safetensors`;
    const code = await resizeCli([
      "--model",
      K(`${input}.safetensors`)!,
      "--save_to",
      out,
      "--save_precision",
      "float",
      ...flags,
    ]);
    assert.equal(code, 0);
    const [g, w] = await Promise.all([readModules(out), readModules(want)]);
    assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort());
    let worst = 0;
    for (const [p, wm] of w) {
      const gm = g.get(p)!;
      assert.equal(gm.rank, wm.rank, `${p} rank`);
      assert.ok(
        Math.abs(gm.alpha - wm.alpha) <= 1e-6 * wm.alpha,
        `${p} alpha ${gm.alpha} vs ${wm.alpha}`,
      );
      worst = Math.max(worst, relErr(delta(gm), delta(wm)));
    }
    assert.ok(worst < 1e-3, `worst delta rel err ${worst}`);
    console.log(`${name}: worst per-module delta rel err ${worst.toExponential(2)}`);
    const [a, b] = [await openSafetensors(out), await openSafetensors(want)];
    for (const k of ["ss_network_dim", "ss_network_alpha", "ss_training_comment"]) {
      assert.equal(a.metadata[k], b.metadata[k], k);
    }
    a.close();
    b.close();
    Deno.removeSync(dir, { recursive: true });
  });
}

Deno.test("resize_lora: a rank larger than a module's matrix is an error, no output", async () => {
  if (K("c3lier.safetensors") === null) return;
  const dir = tempDir();
  await assert.rejects(
    resizeLora({
      model: K("c3lier.safetensors")!,
      saveTo: `${dir}/x.safetensors`,
      newRank: 100000,
    }),
    (e: Error) =>
      e instanceof LorakitError && /--new_rank/.test(e.message) && /at most/.test(e.message),
  );
  await assert.rejects(
    resizeLora({
      model: K("c3lier.safetensors")!,
      saveTo: `${dir}/x.safetensors`,
      newRank: 4,
      dynamicMethod: "sv_fro",
    }),
    (e: Error) => e instanceof LorakitError && /--dynamic_param/.test(e.message),
  );
  assert.deepEqual(listNames(dir), []);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("chooseRank follows kohya's rank_resize rules", () => {
  const S = Float64Array.from([8, 4, 2, 1, 0, 0]);
  // kohya's rank is one more than the count of values the rule keeps.
  assert.equal(chooseRank(S, 6, "sv_ratio", 4, 1).newRank, 3); // S > 2: 8, 4
  assert.equal(chooseRank(S, 6, "sv_cumulative", 0.9, 1).newRank, 4); // 12/15 < .9 <= 14/15
  assert.equal(chooseRank(S, 6, "sv_fro", 0.99, 1).newRank, 4); // 84/85 > .9801
  assert.equal(chooseRank(S, 2, "sv_cumulative", 0.9, 1).newRank, 2); // capped
  assert.equal(chooseRank(new Float64Array(4), 3, null, null, 0.5).newRank, 1); // zero matrix
  assert.equal(chooseRank(S, 4, null, null, 0.5).newAlpha, 2);
});

Deno.test("extract_lora_from_dylora --unit 4 matches kohya (factors rel 1e-6), kohya's name", async () => {
  const want = K("dylora_extracted-0004.safetensors");
  if (want === null) return;
  const dir = tempDir();
  const code = await dyloraCli([
    "--model",
    K("dylora.safetensors")!,
    "--save_to",
    `${dir}/dylora_extracted.safetensors`,
    "--unit",
    "4",
  ]);
  assert.equal(code, 0);
  assert.deepEqual(listNames(dir), ["dylora_extracted-0004.safetensors"]);
  const [g, w] = await Promise.all([
    readModules(`${dir}/dylora_extracted-0004.safetensors`),
    readModules(want),
  ]);
  assert.deepEqual([...g.keys()].sort(), [...w.keys()].sort());
  let worst = 0;
  for (const [p, wm] of w) {
    const gm = g.get(p)!;
    assert.equal(gm.alpha, wm.alpha);
    worst = Math.max(worst, relErr(gm.down, wm.down), relErr(gm.up, wm.up));
  }
  assert.ok(worst < 1e-6, `${worst}`);
  const st = await openSafetensors(`${dir}/dylora_extracted-0004.safetensors`);
  assert.equal(st.metadata.ss_network_dim, "4");
  assert.equal(st.metadata.ss_training_comment, "split from DyLoRA, rank 8 to 4; ");
  st.close();
  // unit 2: ranks 2, 4, 6.
  const files = await extractFromDylora({
    model: K("dylora.safetensors")!,
    saveTo: `${dir}/d.safetensors`,
    unit: 2,
  });
  assert.deepEqual(files.map((f) => f.rank), [2, 4, 6]);
  assert.equal(dyloraOutputName("a/b.c/x", 12), "a/b.c/x-0012");
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("check_lora_weights prints kohya's lines", async () => {
  assert.equal(torchScalarRepr(0.012345), "tensor(0.0123)");
  assert.equal(torchScalarRepr(1.23456e-5), "tensor(1.2346e-05)");
  assert.equal(torchScalarRepr(0), "tensor(0.)");
  assert.equal(
    formatStat({ key: "k", shape: [4, 32, 3, 3], meanAbs: 0.5, minAbs: 0.25 }),
    "k,(4-32-3-3),tensor(0.5000),tensor(0.2500)",
  );
  const file = K("lierla_a.safetensors");
  if (file === null) return;
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: string) => lines.push(s);
  try {
    assert.equal(await checkCli([file]), 0);
  } finally {
    console.log = log;
  }
  assert.equal(lines[0], "number of LoRA modules: 420");
  assert.equal(lines.length, 421);
  assert.match(
    lines[1],
    /^lora_te_text_model_encoder_layers_0_mlp_fc1\.lora_down\.weight,\(4-32\),tensor\([0-9.e-]+\),tensor\([0-9.e-]+\)$/,
  );
});
