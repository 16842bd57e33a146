import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { blockLrWeights, parameterLearningRates, presetWeights } from "../core/lora/block_lr.ts";
import { blockIndex, blockLabel, resolveBlockDims } from "../core/lora/blocks.ts";
import { buildLoraModules, type WeightInfo } from "../core/lora/modules.ts";
import { networkOptions } from "../core/lora/network_args.ts";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import { fixture } from "./fixtures.ts";

interface BlockLrFixture {
  presets: { network_args: Record<string, string>; block_lr_weight: number[] }[];
  optimizer_lrs: {
    network_args: Record<string, string>;
    text_encoder_lr: number;
    unet_lr: number;
    learning_rate: number;
    lr: Record<string, number | null>;
    block_index: Record<string, number>;
  };
}

async function loadFixture(): Promise<BlockLrFixture | null> {
  const path = fixture("kohya/block_lr.json");
  return path === null ? null : JSON.parse(await Deno.readTextFile(path));
}

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

const toArgs = (o: Record<string, string>) => Object.entries(o).map(([k, v]) => `${k}=${v}`);

function assertClose(actual: number | null, expected: number | null, what: string) {
  if (expected === null || actual === null) return assert.equal(actual, expected, what);
  assert.ok(
    Math.abs(actual - expected) <= 1e-12 * Math.max(1, Math.abs(expected)),
    `${what}: ${actual} vs ${expected}`,
  );
}

Deno.test("block lr weights equal kohya's for presets, +offset, lists, padding, threshold", async () => {
  const fx = await loadFixture();
  if (fx === null) return;
  for (const c of fx.presets) {
    const warnings: string[] = [];
    const got = blockLrWeights(parseNetworkArgs(toArgs(c.network_args)), (m) => warnings.push(m));
    assert.ok(got !== null);
    assert.equal(got.length, 25);
    got.forEach((w, i) =>
      assertClose(w, c.block_lr_weight[i], `${JSON.stringify(c.network_args)}[${i}]`)
    );
    if (c.network_args.down_lr_weight === "1,0.5") assert.match(warnings.join(), /set to 1\.0/);
  }
});

Deno.test("per-parameter learning rates and block indices equal kohya's prepare_optimizer_params", async () => {
  const fx = await loadFixture();
  const dir = fixture("sd1-tiny/diffusers");
  if (fx === null || dir === null) return;
  const o = fx.optimizer_lrs;
  const { modules: opts, blockLrWeight } = networkOptions(parseNetworkArgs(toArgs(o.network_args)));
  // The fixture's process had built a conv network before (kohya extends its class-level target
  // list in place), so ResNet time_emb_proj / conv_shortcut are targets there; see modules.ts.
  const modules = buildLoraModules(await tinyWeights(dir), {
    ...opts,
    resnetTargetsWithoutConv: true,
  });
  const lrs = parameterLearningRates(modules, {
    textEncoderLr: o.text_encoder_lr,
    unetLr: o.unet_lr,
    learningRate: o.learning_rate,
    blockLrWeight,
  });
  assert.deepEqual([...lrs.keys()].sort(), Object.keys(o.lr).sort());
  for (const [k, v] of Object.entries(o.lr)) assertClose(lrs.get(k)!, v, k);
  const blocks = Object.fromEntries(
    modules.filter((m) => m.part === "unet").map((m) => [m.prefix, m.block]),
  );
  assert.deepEqual(blocks, o.block_index);
  for (const [name, idx] of Object.entries(o.block_index)) assert.equal(blockIndex(name), idx);

  // A fresh train_network.py process (no earlier conv network) has no ResNet modules here.
  const fresh = buildLoraModules(await tinyWeights(dir), opts);
  const extra = modules.filter((m) => !fresh.some((f) => f.prefix === m.prefix));
  assert.ok(extra.length > 0 && extra.every((m) => /time_emb_proj|conv_shortcut/.test(m.prefix)));
});

Deno.test("learning-rate fallbacks, zero lr and LoRA+ follow prepare_optimizer_params", () => {
  const weights: WeightInfo[] = [
    { name: "text_encoder.text_model.encoder.layers.0.mlp.fc1.weight", shape: [8, 4] },
    { name: "unet.mid_block.attentions.0.proj_in.weight", shape: [4, 4, 1, 1] },
    { name: "unet.down_blocks.0.attentions.0.proj_in.weight", shape: [4, 4, 1, 1] },
  ];
  const modules = buildLoraModules(weights, {});
  const te = "lora_te_text_model_encoder_layers_0_mlp_fc1";
  const mid = "lora_unet_mid_block_attentions_0_proj_in";
  let lr = parameterLearningRates(modules, { learningRate: 1e-3, textEncoderLr: 0 });
  assert.equal(lr.get(`${te}.lora_down.weight`), null, "lr 0: not given to the optimizer");
  assert.equal(lr.get(`${mid}.lora_up.weight`), 1e-3, "unet_lr falls back to learning_rate");
  lr = parameterLearningRates(modules, {
    learningRate: 1e-3,
    loraplusLrRatio: 16,
    loraplusUnetLrRatio: 4,
  });
  assert.equal(lr.get(`${te}.lora_up.weight`), 16e-3);
  assert.equal(lr.get(`${te}.lora_down.weight`), 1e-3);
  assert.equal(lr.get(`${mid}.lora_up.weight`), 4e-3);
  // mid weight 0: the module is not created at all.
  const w = blockLrWeights(parseNetworkArgs(["mid_lr_weight=0"]));
  const pruned = buildLoraModules(weights, { blockLrWeight: w });
  assert.deepEqual(pruned.map((m) => m.prefix).sort(), [
    "lora_te_text_model_encoder_layers_0_mlp_fc1",
    "lora_unet_down_blocks_0_attentions_0_proj_in",
  ]);
});

Deno.test("25-block map: indices and labels", () => {
  const cases: [string, number][] = [
    ["lora_unet_down_blocks_0_attentions_0_proj_in", 1],
    ["lora_unet_down_blocks_0_resnets_1_conv1", 2],
    ["lora_unet_down_blocks_0_downsamplers_0_conv", 3],
    ["lora_unet_down_blocks_3_resnets_1_conv2", 11],
    ["lora_unet_mid_block_resnets_1_time_emb_proj", 12],
    ["lora_unet_up_blocks_0_resnets_0_conv1", 13],
    ["lora_unet_up_blocks_0_upsamplers_0_conv", 15],
    ["lora_unet_up_blocks_3_attentions_2_proj_out", 24],
    ["lora_unet_conv_in", -1],
  ];
  for (const [name, idx] of cases) assert.equal(blockIndex(name), idx, name);
  assert.deepEqual([0, 11, 12, 13, 24].map(blockLabel), ["IN00", "IN11", "MID", "OUT00", "OUT11"]);
  assert.throws(() => blockLabel(25), LorakitError);
});

Deno.test("block dims defaults follow get_block_dims_and_alphas", () => {
  const d = resolveBlockDims({ networkDim: 8, networkAlpha: 2, convDim: 4 });
  assert.deepEqual([d.dims[0], d.alphas[24], d.convDims?.[12], d.convAlphas?.[3]], [8, 2, 4, 1]);
  const none = resolveBlockDims({ networkDim: 8, networkAlpha: 2 });
  assert.equal(none.convDims, null);
  const convOnly = resolveBlockDims({
    networkDim: 8,
    networkAlpha: 2,
    convBlockDims: new Array(25).fill(3),
    convAlpha: 0.5,
  });
  assert.deepEqual([convOnly.convDims?.[0], convOnly.convAlphas?.[0]], [3, 0.5]);
});

Deno.test("network_args parsing: conversions, presets, errors naming the key", () => {
  const a = parseNetworkArgs([
    "conv_dim= 4 ",
    "conv_alpha=1e-1",
    "block_dims=" + new Array(25).fill("2").join(","),
    "down_lr_weight=cosine+.25",
    "mid_lr_weight=",
    "up_lr_weight=1,,0.5",
    "rank_dropout=0.1",
    "module_dropout=0.2",
    "dropout=0.3",
  ]);
  assert.deepEqual([a.convDim, a.convAlpha, a.rankDropout, a.moduleDropout], [4, 0.1, 0.1, 0.2]);
  assert.deepEqual(a.downLrWeight, { preset: "cosine", offset: 0.25 });
  assert.deepEqual([a.midLrWeight, a.upLrWeight], [[0], [1, 0, 0.5]]);
  assert.deepEqual(a.ignored, ["dropout"]);
  assert.equal(a.raw.conv_dim, " 4 ");
  assert.deepEqual(presetWeights("zeros", 0.5), new Array(12).fill(0.5));
  const err = (args: string[], re: RegExp, module?: "networks.lora" | "networks.dylora") =>
    assert.throws(
      () => parseNetworkArgs(args, module),
      (e) => e instanceof LorakitError && re.test(e.message),
      args.join(" "),
    );
  err(["convdim=4"], /unknown key 'convdim' for networks\.lora; known keys: conv_dim, conv_alpha/);
  err(["unit=4"], /unknown key 'unit'/);
  err(["block_dims=4"], /unknown key 'block_dims' for networks\.dylora/, "networks.dylora");
  err(["conv_dim=4.5"], /conv_dim: expected an integer, found '4\.5'/);
  err(["conv_alpha=abc"], /conv_alpha: expected a number, found 'abc'/);
  err(["block_dims=1,2,x"], /block_dims \(value 3\): expected an integer/);
  err(["down_lr_weight=0.5"], /down_lr_weight: expected one of cosine, sine.*found '0\.5'/);
  err(["up_lr_weight=sin"], /up_lr_weight: expected one of/);
  err(["conv_dim"], /expected key=value, found 'conv_dim'/);
  assert.equal(parseNetworkArgs(["unit=4"], "networks.dylora").unit, 4);
});
