/**
 * kohya's SDXL network layout without a GPU: the module list of the full-size SDXL base topology
 * (kohya: 72 + 192 text-encoder and 722 U-Net LierLa modules), SGM names and the 23-block map,
 * block dims and block lr weights with SDXL's list lengths, DyLoRA, errors naming the key, and
 * the LoRA tools' refusal of SDXL files.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import type { UnetKeyLayout } from "../core/io/keymap_unet.ts";
import type { TextEncoderConfig, UNetConfig } from "../core/model_config/config.ts";
import { textTensors, unetTensors } from "../core/model_config/keys.ts";
import { blockLrWeights, parameterLearningRates, presetWeights } from "../core/lora/block_lr.ts";
import { sdxlBlockIndex } from "../core/lora/blocks.ts";
import { describeModelVersion } from "../core/lora/version.ts";
import {
  buildLoraModules,
  type LoraModuleSpec,
  loraTargets,
  type WeightInfo,
} from "../core/lora/modules.ts";
import { networkOptions } from "../core/lora/network_args.ts";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import { openAll } from "../core/lora/merge.ts";
import { openLoraFile } from "../core/lora/lora_file.ts";
import { refuseSdxlLora } from "../core/lora/version.ts";
import { fixture } from "./fixtures.ts";

const UNET: UNetConfig = {
  inChannels: 4,
  outChannels: 4,
  blockOutChannels: [320, 640, 1280],
  layersPerBlock: 2,
  downBlockTypes: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  upBlockTypes: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  numHeads: [5, 10, 20],
  headDim: [64, 64, 64],
  transformerDepth: [0, 2, 10],
  midTransformerDepth: 10,
  crossAttentionDim: 2048,
  useLinearProjection: true,
  timeEmbedDim: 1280,
  normGroups: 32,
  normEps: 1e-5,
  transformerNormEps: 1e-6,
  layerNormEps: 1e-5,
  addEmbedding: { inChannels: 2816, timeIdEmbedDim: 256, numTimeIds: 6 },
};
const clip = (w: number, layers: number, act: "quick_gelu" | "gelu"): TextEncoderConfig => ({
  vocabSize: 49408,
  hiddenSize: w,
  numLayers: layers,
  numHeads: w / 64,
  intermediateSize: 4 * w,
  maxPositions: 77,
  hiddenAct: act,
  layerNormEps: 1e-5,
});
const LAYOUT: UnetKeyLayout = { layersPerBlock: 2, upHasAttention: [true, true, false] };

function weights(): WeightInfo[] {
  const out: WeightInfo[] = [];
  const add = (name: string, shape: readonly number[]) => out.push({ name, shape });
  unetTensors(add, UNET);
  textTensors(add, clip(768, 12, "quick_gelu"));
  textTensors(add, { ...clip(1280, 32, "gelu"), projectionDim: 1280 }, "text_encoder_2");
  return out;
}

function count(modules: readonly LoraModuleSpec[]) {
  return {
    te1: modules.filter((m) => m.prefix.startsWith("lora_te1_")).length,
    te2: modules.filter((m) => m.prefix.startsWith("lora_te2_")).length,
    unet: modules.filter((m) => m.part === "unet").length,
  };
}

Deno.test("full-size SDXL: 72 + 192 text-encoder and 722 U-Net LierLa modules; C3Lier adds 66", () => {
  const w = weights();
  const lierla = buildLoraModules(w, { sdxl: LAYOUT });
  assert.deepEqual(count(lierla), { te1: 72, te2: 192, unet: 722 });
  assert.ok(!lierla.some((m) => /label_emb|time_embed|text_projection/.test(m.prefix)));
  // 17 ResNets x (in_layers_2, out_layers_3, emb_layers_1) + 11 skip connections + 4 samplers.
  const c3 = buildLoraModules(w, { sdxl: LAYOUT, convDim: 8 });
  assert.deepEqual(count(c3), { te1: 72, te2: 192, unet: 722 + 51 + 11 + 4 });
  const names = new Set(c3.map((m) => m.prefix));
  for (
    const n of [
      "lora_unet_input_blocks_3_0_op",
      "lora_unet_input_blocks_6_0_op",
      "lora_unet_output_blocks_2_2_conv",
      "lora_unet_output_blocks_5_2_conv",
      "lora_unet_input_blocks_4_0_skip_connection",
      "lora_unet_middle_block_2_emb_layers_1",
      "lora_te2_text_model_encoder_layers_31_self_attn_q_proj",
    ]
  ) assert.ok(names.has(n), n);
  assert.ok(!c3.some((m) => /input_blocks_0_0|out_2|conv_in|conv_out/.test(m.prefix)));
  const q = c3.find((m) => m.prefix === "lora_te2_text_model_encoder_layers_31_self_attn_q_proj")!;
  assert.equal(q.weight, "text_encoder_2.text_model.encoder.layers.31.self_attn.q_proj.weight");
  assert.deepEqual([q.inFeatures, q.outFeatures, q.block], [1280, 1280, -1]);
  const op = c3.find((m) => m.prefix === "lora_unet_input_blocks_6_0_op")!;
  assert.deepEqual([op.kind, op.stride, op.rank, op.alpha, op.block], [
    "conv3x3",
    [2, 2],
    8,
    1,
    7,
  ]);
  assert.equal(describeModelVersion(loraTargets(w, LAYOUT)).version, "sdxl");
  // Without the layout, the same weights give SD-style names and no text_encoder_2 modules.
  assert.equal(loraTargets(w).filter((t) => t.prefix.startsWith("lora_te2_")).length, 0);
});

Deno.test("SDXL's 23-block map: indices from SGM names", () => {
  const cases: [string, number][] = [
    ["lora_unet_input_blocks_1_0_in_layers_2", 2],
    ["lora_unet_input_blocks_4_1_proj_in", 5],
    ["lora_unet_input_blocks_8_1_transformer_blocks_9_ff_net_2", 9],
    ["lora_unet_middle_block_0_emb_layers_1", 10],
    ["lora_unet_middle_block_1_proj_out", 11],
    ["lora_unet_middle_block_2_out_layers_3", 12],
    ["lora_unet_output_blocks_0_1_proj_in", 13],
    ["lora_unet_output_blocks_2_2_conv", 15],
    ["lora_unet_output_blocks_8_0_skip_connection", 21],
    ["lora_unet_label_emb_0_0", 0],
    ["lora_unet_time_embed_0", 0],
    ["lora_unet_out_2", 22],
    ["lora_te1_text_model_encoder_layers_0_mlp_fc1", -1],
  ];
  for (const [name, idx] of cases) assert.equal(sdxlBlockIndex(name), idx, name);
  const targets = loraTargets(weights(), LAYOUT).filter((t) => t.part === "unet");
  assert.ok(targets.every((t) => t.block >= 1 && t.block <= 21));
});

Deno.test("SDXL block dims (23 values) and block lr weights (9 down, 3 mid, 9 up)", () => {
  const w = weights();
  const dims = Array.from({ length: 23 }, (_, i) => (i % 3) + 1);
  const convDims = Array.from({ length: 23 }, (_, i) => (i % 2) + 1);
  const args = parseNetworkArgs([
    `block_dims=${dims.join(",")}`,
    `conv_block_dims=${convDims.join(",")}`,
  ]);
  const { modules: opts } = networkOptions(args, { sdxl: LAYOUT, networkDim: 4 });
  const mods = buildLoraModules(w, opts);
  for (const m of mods.filter((m) => m.part === "unet")) {
    const want = m.kind === "conv3x3" ? convDims[m.block] : dims[m.block];
    assert.equal(m.rank, want, m.prefix);
  }
  assert.ok(mods.filter((m) => m.part === "text_encoder").every((m) => m.rank === 4));
  // SD 1.x/2.x's 25 values are an error naming the key and SDXL's count.
  const bad = parseNetworkArgs([`block_dims=${new Array(25).fill(4).join(",")}`]);
  assert.throws(
    () => buildLoraModules(w, networkOptions(bad, { sdxl: LAYOUT }).modules),
    (e: Error) => e instanceof LorakitError && /block_dims: expected 23 .*found 25/.test(e.message),
  );

  // kohya's get_block_lr_weight(is_sdxl): [1.0] + down(9) + mid(3) + up(9) + [1.0].
  const lrArgs = parseNetworkArgs([
    "down_lr_weight=sine",
    "mid_lr_weight=2,0.5,1",
    "up_lr_weight=0,1",
  ]);
  const lr = blockLrWeights(lrArgs, () => {}, true)!;
  const sine = Array.from({ length: 9 }, (_, i) => Math.sin(Math.PI * (i / 8) / 2));
  assert.deepEqual(lr, [
    1,
    ...sine.map((v) => (v > 0 ? v : 0)),
    ...[2, 0.5, 1],
    ...[0, ...new Array(8).fill(1)],
    1,
  ]);
  assert.deepEqual(presetWeights("sine", 0, 9), sine);
  // A block with weight 0 (output_blocks_0, block 13) gets no modules.
  const { modules: lrOpts, blockLrWeight } = networkOptions(lrArgs, { sdxl: LAYOUT });
  assert.deepEqual(blockLrWeight, lr);
  const kept = buildLoraModules(w, lrOpts);
  assert.ok(!kept.some((m) => m.prefix.startsWith("lora_unet_output_blocks_0_")));
  assert.ok(kept.some((m) => m.prefix.startsWith("lora_unet_output_blocks_1_")));
  const lrs = parameterLearningRates(kept, { learningRate: 1e-3, blockLrWeight: lr });
  assert.equal(lrs.get("lora_unet_middle_block_1_proj_in.lora_up.weight"), 0.5e-3);
  const q = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight";
  assert.equal(lrs.get(q), 1e-3 * Math.sin(Math.PI / 4)); // block 5: down[4]
  assert.equal(lrs.get("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"), 1e-3);
});

Deno.test("SDXL DyLoRA: every module at network_dim with kohya's SDXL names", () => {
  const mods = buildLoraModules(weights(), {
    sdxl: LAYOUT,
    module: "networks.dylora",
    networkDim: 8,
    networkAlpha: 4,
    convDim: 8,
  });
  assert.deepEqual(count(mods), { te1: 72, te2: 192, unet: 722 + 66 });
  assert.ok(mods.every((m) => m.rank === 8 && m.alpha === 4));
});

Deno.test("the LoRA tools refuse an SDXL file, naming it and the flag", async () => {
  const path = fixture("sdxl-tiny/kohya/lierla.safetensors");
  if (path === null) return;
  await assert.rejects(
    openAll([path]),
    (e: Error) =>
      e instanceof LorakitError &&
      /--models .*lierla\.safetensors: an SDXL LoRA \(ss_base_model_version = sdxl_base_v1-0\)/
        .test(e.message),
  );
  const f = await openLoraFile(path);
  try {
    assert.equal(f.version.version, "sdxl");
    assert.throws(() => refuseSdxlLora(f, "--model"), /SD 1\.x\/2\.x LoRA files only/);
  } finally {
    f.close();
  }
});

Deno.test("block lr weights counted for the other model kind are an error", () => {
  const w = weights();
  const mods = buildLoraModules(w, { sdxl: LAYOUT });
  const sd25 = blockLrWeights(parseNetworkArgs(["mid_lr_weight=0.5"]))!;
  assert.throws(
    () => parameterLearningRates(mods, { learningRate: 1e-3, blockLrWeight: sd25 }),
    (e: Error) =>
      e instanceof LorakitError &&
      /25 block weights for an SDXL network .*expected 23/.test(e.message),
  );
});
