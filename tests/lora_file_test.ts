import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { recomputeFileHashes, sha256Hex } from "../core/io/hashes.ts";
import { openSafetensors, writeSafetensors } from "../core/io/safetensors.ts";
import {
  bindLoraFile,
  type LoraWeightsToSave,
  openLoraFile,
  saveLoraFile,
} from "../core/lora/lora_file.ts";
import {
  baseModelVersion,
  modelSpecMetadata,
  networkMetadata,
  pyFloatRepr,
  pyJsonDumps,
  trainingMetadata,
} from "../core/lora/metadata.ts";
import { buildLoraModules, loraTargets, type WeightInfo } from "../core/lora/modules.ts";
import { fixture } from "./fixtures.ts";

async function tinyWeights(dir: string): Promise<WeightInfo[]> {
  const out: WeightInfo[] = [];
  for (
    const [part, file] of [
      ["unet", "unet/diffusion_pytorch_model.safetensors"],
      ["text_encoder", "text_encoder/model.safetensors"],
    ]
  ) {
    const st = await openSafetensors(`${dir}/${file}`);
    for (const t of st.list()) out.push({ name: `${part}.${t.name}`, shape: t.shape });
    st.close();
  }
  return out;
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "lorakit_lora_" });
}

/** Deterministic pseudo-random values. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 0.1;
  }
  return out;
}

/** A random C3Lier LoRA for sd1-tiny, kohya-shaped. */
async function randomLora(dir: string): Promise<LoraWeightsToSave[]> {
  const modules = buildLoraModules(await tinyWeights(dir), {
    networkDim: 4,
    networkAlpha: 2,
    convDim: 2,
  });
  return modules.map((m, i) => {
    const conv = m.kind !== "linear";
    const downShape = conv ? [m.rank, m.inFeatures, ...m.kernel] : [m.rank, m.inFeatures];
    const upShape = conv ? [m.outFeatures, m.rank, 1, 1] : [m.outFeatures, m.rank];
    const n = (s: number[]) => s.reduce((a, b) => a * b, 1);
    return {
      prefix: m.prefix,
      down: { shape: downShape, data: values(n(downShape), 2 * i + 1) },
      up: { shape: upShape, data: values(n(upShape), 2 * i + 2) },
      alpha: m.alpha,
    };
  });
}

const KOHYA_FILES = ["lierla_a", "c3lier", "block_dims", "dylora", "spectral"];

Deno.test("kohya LoRA files load, classify and bind to sd1-tiny", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  if (dir === null) return;
  const targets = loraTargets(await tinyWeights(dir));
  const expected: Record<string, [string, number | null]> = {
    lierla_a: ["LierLa", null],
    c3lier: ["C3Lier", null],
    block_dims: ["C3Lier", null],
    dylora: ["DyLoRA", 2],
    spectral: ["C3Lier", null],
  };
  for (const name of KOHYA_FILES) {
    const lora = await openLoraFile(fixture(`kohya/${name}.safetensors`)!);
    try {
      assert.deepEqual([lora.kind, lora.dyloraUnit], expected[name], name);
      assert.equal(lora.version.version, "sd1", name);
      const bound = bindLoraFile(lora, targets);
      assert.equal(bound.size, lora.modules.length);
      const m = lora.modules.find((x) => x.prefix.endsWith("transformer_blocks_0_attn2_to_k"))!;
      assert.equal(bound.get(m.prefix)?.weight.endsWith("attn2.to_k.weight"), true);
      const { down, up, alpha } = await lora.readModule(m.prefix);
      assert.deepEqual([down.shape, up.shape, alpha], [m.downShape, m.upShape, m.alpha]);
    } finally {
      lora.close();
    }
  }
  const a = await openLoraFile(fixture("kohya/lierla_a.safetensors")!);
  assert.ok(a.modules.every((m) => m.alpha === 2 && m.rank === 4 && m.hasAlpha));
  a.close();
});

Deno.test("our hashes equal the sshs_* hashes kohya wrote into its files", async () => {
  const names = ["block_dims", "spectral", "merged_lora_concat", "resized_sv_ratio", "extracted"];
  for (const name of names) {
    const path = fixture(`kohya/${name}.safetensors`);
    if (path === null) return;
    const st = await openSafetensors(path);
    const h = await recomputeFileHashes(st);
    assert.equal(h.modelHash, st.metadata.sshs_model_hash, `${name} model hash`);
    assert.equal(h.legacyHash, st.metadata.sshs_legacy_hash, `${name} legacy hash`);
    st.close();
  }
  assert.equal((await sha256Hex(new Uint8Array(0))).slice(0, 8), "e3b0c442");
});

Deno.test("save: kohya key set, 0-d alphas, dtype, metadata and hashes round-trip", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  if (dir === null) return;
  const weights = await randomLora(dir);
  const tmp = await tempDir();
  try {
    const meta = {
      ...networkMetadata({
        v2: false,
        networkDim: 4,
        networkAlpha: 2,
        networkArgs: { conv_dim: "2" },
      }),
      ...modelSpecMetadata({ v2: false, timestamp: 1700000000.5, title: "ours" }),
    };
    for (const precision of ["fp16", "bf16", "float"] as const) {
      const path = `${tmp}/ours_${precision}.safetensors`;
      const written = await saveLoraFile(path, weights, { precision, metadata: meta });
      const st = await openSafetensors(path);
      assert.deepEqual(st.metadata, written);
      const h = await recomputeFileHashes(st);
      assert.deepEqual([h.modelHash, h.legacyHash], [
        written.sshs_model_hash,
        written.sshs_legacy_hash,
      ]);
      const dtype = { fp16: "F16", bf16: "BF16", float: "F32" }[precision];
      assert.ok(st.list().every((t) => t.dtype === dtype));
      assert.equal(st.list().length, weights.length * 3);
      const alpha = st.info(`${weights[0].prefix}.alpha`);
      assert.deepEqual(alpha.shape, []);
      st.close();
      const lora = await openLoraFile(path);
      assert.deepEqual([lora.kind, lora.version.version], ["C3Lier", "sd1"]);
      const first = await lora.readModule(weights[0].prefix);
      const tol = precision === "float" ? 0 : 1e-2;
      first.down.data.forEach((v, i) => {
        const w = weights[0].down.data[i];
        assert.ok(Math.abs(v - w) <= tol * Math.abs(w) + 1e-7, `${precision}: ${v} vs ${w}`);
      });
      lora.close();
    }
    assert.equal(meta["modelspec.architecture"], "stable-diffusion-v1/lora");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("bad LoRA files are LorakitErrors naming the file and key", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  if (dir === null) return;
  const targets = loraTargets(await tinyWeights(dir));
  const tmp = await tempDir();
  const f32 = (shape: number[]) => ({
    name: "",
    dtype: "F32" as const,
    shape,
    data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
  });
  const write = async (name: string, keys: [string, number[]][], md?: Record<string, string>) => {
    const path = `${tmp}/${name}.safetensors`;
    await writeSafetensors(path, keys.map(([k, s]) => ({ ...f32(s), name: k })), md);
    return path;
  };
  try {
    // No alpha: alpha = rank.
    const q = "lora_te_text_model_encoder_layers_0_self_attn_q_proj";
    const noAlpha = await openLoraFile(
      await write("noalpha", [[`${q}.lora_down.weight`, [3, 32]], [`${q}.lora_up.weight`, [
        32,
        3,
      ]]]),
    );
    assert.deepEqual([noAlpha.modules[0].alpha, noAlpha.modules[0].hasAlpha], [3, false]);
    assert.equal(bindLoraFile(noAlpha, targets).size, 1);
    noAlpha.close();

    const unknown = await openLoraFile(
      await write("unknown", [
        ["lora_unet_conv_in.lora_down.weight", [2, 4, 3, 3]],
        ["lora_unet_conv_in.lora_up.weight", [32, 2, 1, 1]],
      ]),
    );
    assert.throws(
      () => bindLoraFile(unknown, targets),
      (e) =>
        e instanceof LorakitError && e.message.includes("unknown.safetensors") &&
        e.message.includes("'lora_unet_conv_in.lora_down.weight'"),
    );
    unknown.close();

    // An SD2 LoRA (1024-wide text encoder, ss_v2) on the SD1 model.
    const sd2 = await openLoraFile(
      await write(
        "sd2",
        [[`${q}.lora_down.weight`, [4, 1024]], [`${q}.lora_up.weight`, [1024, 4]]],
        {
          ss_v2: "True",
        },
      ),
    );
    assert.throws(
      () => bindLoraFile(sd2, targets),
      (e) =>
        e instanceof LorakitError &&
        /expected shape \[4, 32\].*found \[4, 1024\]/.test(e.message) &&
        /made for SD 2\.x \(ss_v2 = True\), the model is SD 1\.x/.test(e.message),
    );
    sd2.close();

    const bad = (name: string, keys: [string, number[]][], re: RegExp) =>
      write(name, keys).then((p) =>
        assert.rejects(openLoraFile(p), (e) => e instanceof LorakitError && re.test(e.message))
      );
    await bad("loha", [["lora_unet_x.hada_w1_a", [2, 2]]], /'lora_unet_x\.hada_w1_a'.*hada_w1_a/);
    await bad(
      "noup",
      [[`${q}.lora_down.weight`, [3, 32]]],
      /missing key '.*q_proj\.lora_up\.weight'/,
    );
    await bad(
      "rank",
      [[`${q}.lora_down.weight`, [3, 32]], [`${q}.lora_up.weight`, [32, 4]]],
      /expected lora_up\.weight \[out, 3\]/,
    );
    await bad("prefix", [["lora_te3_x.alpha", []]], /starting lora_unet_, lora_te_, lora_te1_/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("metadata strings are Python's str()/json.dumps()", () => {
  const cases: [number, string][] = [
    [1, "1.0"],
    [2.5, "2.5"],
    [1e-4, "0.0001"],
    [5e-5, "5e-05"],
    [1e16, "1e+16"],
    [1.5e-7, "1.5e-07"],
    [123456.789, "123456.789"],
    [-0.5, "-0.5"],
    [0, "0.0"],
    [1e15, "1000000000000000.0"],
  ];
  for (const [x, s] of cases) assert.equal(pyFloatRepr(x), s, String(x));
  assert.equal(
    pyJsonDumps({ conv_dim: "4", a: [1, 0.5, true, null], "é": "ü" }),
    '{"conv_dim": "4", "a": [1, 0.5, true, null], "\\u00e9": "\\u00fc"}',
  );
  assert.deepEqual([baseModelVersion(false, false), baseModelVersion(true, true)], [
    "sd_v1",
    "sd_v2_v",
  ]);
  assert.deepEqual(
    networkMetadata({ v2: false, networkDim: 4, networkAlpha: 2 }),
    {
      ss_network_module: "networks.lora",
      ss_network_dim: "4",
      ss_network_alpha: "2.0",
      ss_v2: "False",
      ss_base_model_version: "sd_v1",
    },
  );
  const spec = modelSpecMetadata({ v2: true, vParameterization: true, timestamp: 1, clipSkip: 2 });
  assert.equal(spec["modelspec.architecture"], "stable-diffusion-v2-768-v/lora");
  assert.equal(spec["modelspec.resolution"], "768x768");
  assert.equal(spec["modelspec.prediction_type"], "v");
  assert.equal(spec["modelspec.encoder_layer"], "2");
  assert.equal(spec["modelspec.title"], "LoRA@1.0");
  assert.match(spec["modelspec.date"], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
  assert.equal(
    modelSpecMetadata({ v2: true, timestamp: 1 })["modelspec.architecture"],
    "stable-diffusion-v2-512/lora",
  );

  const md = trainingMetadata({
    session_id: 1234,
    training_started_at: 1700000000.25,
    num_train_images: 10,
    num_batches_per_epoch: 10,
    num_epochs: 1,
    base_model_version: "sd_v1",
    optimizer: "AdamW",
    network_dim: 4,
    learning_rate: 1e-4,
    unet_lr: 1e-4,
    text_encoder_lr: 5e-5,
    resolution: [512, 512],
    tag_frequency: { "5_dog": { dog: 3 } },
    network_args: { conv_dim: "4" },
  });
  assert.equal(md.ss_learning_rate, "0.0001");
  assert.equal(md.ss_text_encoder_lr, "5e-05");
  assert.equal(md.ss_network_alpha, "1.0");
  assert.equal(md.ss_v2, "False");
  assert.equal(md.ss_seed, "None");
  assert.equal(md.ss_resolution, "(512, 512)");
  assert.equal(md.ss_tag_frequency, '{"5_dog": {"dog": 3}}');
  assert.equal(md.ss_network_args, '{"conv_dim": "4"}');
  assert.equal(md.ss_steps, undefined);
  assert.throws(() => trainingMetadata({ learning_rat: 1 }), /unknown key 'learning_rat'/);
  assert.throws(() => trainingMetadata({}), /expected a value for ss_session_id/);
});

// ---- consumers: A1111's LDM mapping and diffusers' mapping of every key ----

/** A1111 `convert_diffusers_name_to_compvis` for SD1 (see shared/spec/consumers.md 1.1). */
function a1111Name(name: string): string | null {
  const resnet = (s: string) =>
    s.replace(/^conv1$/, "in_layers_2").replace(/^conv2$/, "out_layers_3")
      .replace(/^time_emb_proj$/, "emb_layers_1").replace(/^conv_shortcut$/, "skip_connection");
  let m = /^lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)$/.exec(name);
  if (m) {
    const kind = m[2] === "attentions" ? 1 : 0;
    return `diffusion_model_input_blocks_${1 + 3 * +m[1] + +m[3]}_${kind}_${
      kind ? m[4] : resnet(m[4])
    }`;
  }
  m = /^lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)$/.exec(name);
  if (m) {
    const att = m[1] === "attentions";
    return `diffusion_model_middle_block_${att ? 1 : 2 * +m[2]}_${att ? m[3] : resnet(m[3])}`;
  }
  m = /^lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)$/.exec(name);
  if (m) {
    const kind = m[2] === "attentions" ? 1 : 0;
    return `diffusion_model_output_blocks_${3 * +m[1] + +m[3]}_${kind}_${
      kind ? m[4] : resnet(m[4])
    }`;
  }
  m = /^lora_unet_down_blocks_(\d+)_downsamplers_0_conv$/.exec(name);
  if (m) return `diffusion_model_input_blocks_${3 + 3 * +m[1]}_0_op`;
  m = /^lora_unet_up_blocks_(\d+)_upsamplers_0_conv$/.exec(name);
  if (m) return `diffusion_model_output_blocks_${2 + 3 * +m[1]}_${+m[1] > 0 ? 2 : 1}_conv`;
  m = /^lora_te_text_model_encoder_layers_(\d+)_(.+)$/.exec(name);
  if (m) return `transformer_text_model_encoder_layers_${m[1]}_${m[2]}`;
  return null;
}

/** diffusers' kohya conversion: `_` -> `.`, then the fix-ups for names containing `_`. */
function diffusersName(name: string): string {
  const fix = (s: string, pairs: [string, string][]) =>
    pairs.reduce((acc, [a, b]) => acc.replaceAll(a, b), s);
  if (name.startsWith("lora_te_")) {
    return "text_encoder." + fix(name.slice(8).replaceAll("_", "."), [
      ["text.model", "text_model"],
      ["self.attn", "self_attn"],
      ["q.proj", "q_proj"],
      ["k.proj", "k_proj"],
      ["v.proj", "v_proj"],
      ["out.proj", "out_proj"],
    ]);
  }
  return "unet." + fix(name.slice(10).replaceAll("_", "."), [
    ["down.blocks", "down_blocks"],
    ["mid.block", "mid_block"],
    ["up.blocks", "up_blocks"],
    ["transformer.blocks", "transformer_blocks"],
    ["to.q", "to_q"],
    ["to.k", "to_k"],
    ["to.v", "to_v"],
    ["to.out", "to_out"],
    ["proj.in", "proj_in"],
    ["proj.out", "proj_out"],
    ["time.emb.proj", "time_emb_proj"],
    ["conv.shortcut", "conv_shortcut"],
  ]);
}

Deno.test("every key of kohya's files and of ours maps to a module in A1111 and diffusers", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  const ldm = fixture("sd1-tiny/model.safetensors");
  if (dir === null || ldm === null) return;
  const st = await openSafetensors(ldm);
  const ldmModules = new Set<string>();
  for (const t of st.list()) {
    if (!t.name.endsWith(".weight")) continue;
    const base = t.name.slice(0, -7);
    if (base.startsWith("model.diffusion_model.")) {
      ldmModules.add(base.slice(6).replaceAll(".", "_"));
    } else if (base.startsWith("cond_stage_model.transformer.")) {
      ldmModules.add(base.slice(17).replaceAll(".", "_"));
    }
  }
  st.close();
  const diffusers = new Set((await tinyWeights(dir)).map((w) => w.name));
  const tmp = await tempDir();
  try {
    const ours = `${tmp}/ours.safetensors`;
    await saveLoraFile(ours, await randomLora(dir), { precision: "fp16" });
    const files = [...KOHYA_FILES.map((n) => fixture(`kohya/${n}.safetensors`)!), ours];
    for (const path of files) {
      const f = await openSafetensors(path);
      const keys = f.list().map((t) => t.name);
      f.close();
      assert.ok(keys.every((k) => /^lora_(unet|te)_/.test(k)), "diffusers' kohya detection");
      for (const key of keys) {
        const [name, part] = [key.slice(0, key.indexOf(".")), key.slice(key.indexOf(".") + 1)];
        assert.ok(["lora_down.weight", "lora_up.weight", "alpha"].includes(part), key);
        const a = a1111Name(name);
        assert.ok(a !== null && ldmModules.has(a), `A1111: ${path} ${key} -> ${a}`);
        const d = `${diffusersName(name)}.weight`;
        assert.ok(diffusers.has(d), `diffusers: ${path} ${key} -> ${d}`);
      }
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
