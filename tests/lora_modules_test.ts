import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import {
  buildLoraModules,
  type LoraModuleSpec,
  loraTargets,
  type WeightInfo,
} from "../core/lora/modules.ts";
import { networkOptions } from "../core/lora/network_args.ts";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import { fixture } from "./fixtures.ts";

/** Names and shapes of the sd1-tiny diffusers folder, prefixed as the internal naming does. */
async function tinyWeights(dir: string): Promise<WeightInfo[]> {
  const out: WeightInfo[] = [];
  const parts: [string, string][] = [
    ["unet", "unet/diffusion_pytorch_model.safetensors"],
    ["text_encoder", "text_encoder/model.safetensors"],
  ];
  for (const [part, file] of parts) {
    const st = await openSafetensors(`${dir}/${file}`);
    for (const t of st.list()) out.push({ name: `${part}.${t.name}`, shape: t.shape });
    st.close();
  }
  return out;
}

/** Key -> shape map of a LoRA file, and its alphas. */
async function loraKeys(
  path: string,
): Promise<{ shapes: Map<string, string>; alphas: Map<string, number> }> {
  const st = await openSafetensors(path);
  const shapes = new Map<string, string>();
  const alphas = new Map<string, number>();
  for (const t of st.list()) {
    shapes.set(t.name, JSON.stringify(t.shape));
    if (t.name.endsWith(".alpha")) {
      alphas.set(t.name.slice(0, -6), (await st.readF32(t.name)).data[0]);
    }
  }
  st.close();
  return { shapes, alphas };
}

/** The key set a module list implies. */
function keysOf(modules: readonly LoraModuleSpec[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of modules) {
    const conv = m.kind !== "linear";
    const down = conv ? [m.rank, m.inFeatures, ...m.kernel] : [m.rank, m.inFeatures];
    const up = conv ? [m.outFeatures, m.rank, 1, 1] : [m.outFeatures, m.rank];
    out.set(`${m.prefix}.lora_down.weight`, JSON.stringify(down));
    out.set(`${m.prefix}.lora_up.weight`, JSON.stringify(up));
    out.set(`${m.prefix}.alpha`, "[]");
  }
  return out;
}

/**
 * The expected key set derived independently from the weight names by a plain rule: every 2-D or
 * 4-D `.weight` under `*.attentions.N.` (U-Net), or under text-encoder `self_attn`/`mlp`; with
 * `conv`, also everything under `*.resnets.N.` / `*samplers.N.`; 3x3 convs get `convRank`.
 */
function expectedKeys(
  weights: readonly WeightInfo[],
  rank: number,
  conv: { rank: number } | null,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const w of weights) {
    if (!w.name.endsWith(".weight") || (w.shape.length !== 2 && w.shape.length !== 4)) continue;
    const [part, ...rest] = w.name.split(".");
    const path = rest.slice(0, -1).join(".");
    const isConvOwner = /\.(resnets|downsamplers|upsamplers)\.\d+\./.test(path + ".");
    const ok = part === "text_encoder"
      ? /^text_model\.encoder\.layers\.\d+\.(self_attn|mlp)\./.test(path)
      : part === "unet" && (/\.attentions\.\d+\./.test(path) || (conv !== null && isConvOwner));
    if (!ok) continue;
    const is3x3 = w.shape.length === 4 && w.shape[2] === 3;
    const r = is3x3 ? conv!.rank : rank;
    const name = `${part === "unet" ? "lora_unet" : "lora_te"}_${path.replaceAll(".", "_")}`;
    const [o, i] = w.shape;
    const k = w.shape.slice(2);
    out.set(`${name}.lora_down.weight`, JSON.stringify([r, i, ...k]));
    out.set(`${name}.lora_up.weight`, JSON.stringify(k.length ? [o, r, 1, 1] : [o, r]));
    out.set(`${name}.alpha`, "[]");
  }
  return out;
}

function assertSameKeys(actual: Map<string, string>, expected: Map<string, string>, what: string) {
  const missing = [...expected.keys()].filter((k) => !actual.has(k));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, what);
  for (const [k, s] of expected) assert.equal(actual.get(k), s, `${what}: shape of ${k}`);
}

function alphasOf(modules: readonly LoraModuleSpec[]): Map<string, number> {
  return new Map(modules.map((m) => [m.prefix, m.alpha]));
}

Deno.test("LierLa module list equals kohya's lierla_a key set, shapes and alphas", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  const file = fixture("kohya/lierla_a.safetensors");
  if (dir === null || file === null) return;
  const weights = await tinyWeights(dir);
  const modules = buildLoraModules(weights, { networkDim: 4, networkAlpha: 2 });
  const kohya = await loraKeys(file);
  assertSameKeys(kohya.shapes, expectedKeys(weights, 4, null), "independent rule vs lierla_a");
  assertSameKeys(keysOf(modules), kohya.shapes, "buildLoraModules vs lierla_a");
  assert.deepEqual(alphasOf(modules), kohya.alphas);
  assert.equal(modules.length, 16 * 12 + 3 * 6);
});

Deno.test("C3Lier module list equals kohya's c3lier file (conv_dim 4, conv_alpha 1)", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  const file = fixture("kohya/c3lier.safetensors");
  if (dir === null || file === null) return;
  const weights = await tinyWeights(dir);
  const args = parseNetworkArgs(["conv_dim=4", "conv_alpha=1"]);
  const { modules: opts } = networkOptions(args, { networkDim: 8, networkAlpha: 4 });
  const modules = buildLoraModules(weights, opts);
  const kohya = await loraKeys(file);
  assertSameKeys(kohya.shapes, expectedKeys(weights, 8, { rank: 4 }), "independent rule vs c3lier");
  assertSameKeys(keysOf(modules), kohya.shapes, "buildLoraModules vs c3lier");
  assert.deepEqual(alphasOf(modules), kohya.alphas);
  const sampler = modules.find((m) => m.prefix === "lora_unet_down_blocks_0_downsamplers_0_conv")!;
  assert.deepEqual([sampler.kind, sampler.stride, sampler.padding], ["conv3x3", [2, 2], [1, 1]]);
  const shortcut = modules.find((m) => m.prefix.endsWith("resnets_0_conv_shortcut"))!;
  assert.deepEqual([shortcut.kind, shortcut.rank, shortcut.alpha], ["conv1x1", 8, 4]);
});

Deno.test("block_dims module list equals kohya's block_dims file", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  const file = fixture("kohya/block_dims.safetensors");
  const manifest = fixture("kohya/manifest.json");
  if (dir === null || file === null || manifest === null) return;
  const cases = JSON.parse(await Deno.readTextFile(manifest)).cases as {
    name: string;
    command: string;
  }[];
  const command = cases.find((c) => c.name === "network_block_dims")!.command;
  const args = [...command.matchAll(/(\w+)=\\?"([^"\\]+)\\?"/g)].map((m) => `${m[1]}=${m[2]}`);
  assert.equal(args.length, 4, `parsed ${args.join(" ")}`);
  const { modules: opts } = networkOptions(parseNetworkArgs(args), {
    networkDim: 4,
    networkAlpha: 1,
  });
  const modules = buildLoraModules(await tinyWeights(dir), opts);
  const kohya = await loraKeys(file);
  assertSameKeys(keysOf(modules), kohya.shapes, "buildLoraModules vs block_dims");
  assert.deepEqual(alphasOf(modules), kohya.alphas);
  // conv_block_dims 0 on IN00-03 / OUT09-11 dropped those 3x3 convs but not their Linear layers.
  assert.ok(!modules.some((m) => m.prefix === "lora_unet_down_blocks_0_resnets_0_conv1"));
  assert.ok(modules.some((m) => m.prefix === "lora_unet_down_blocks_0_resnets_0_time_emb_proj"));
});

Deno.test("DyLoRA module list equals kohya's dylora file (convs get network_dim/alpha)", async () => {
  const dir = fixture("sd1-tiny/diffusers");
  const file = fixture("kohya/dylora.safetensors");
  if (dir === null || file === null) return;
  const args = parseNetworkArgs(["unit=2", "conv_dim=8", "conv_alpha=2"], "networks.dylora");
  assert.deepEqual(args.ignored, ["conv_alpha"]);
  const { modules: opts } = networkOptions(args, {
    module: "networks.dylora",
    networkDim: 8,
    networkAlpha: 4,
  });
  const modules = buildLoraModules(await tinyWeights(dir), opts);
  const kohya = await loraKeys(file);
  assertSameKeys(keysOf(modules), kohya.shapes, "buildLoraModules vs dylora");
  assert.deepEqual(alphasOf(modules), kohya.alphas);
});

/** Full-size SD 1.5 / 2.x weight names and shapes (U-Net and text encoder). */
function fullSizeWeights(v2: boolean): WeightInfo[] {
  const ch = [320, 640, 1280, 1280];
  const ctx = v2 ? 1024 : 768;
  const out: WeightInfo[] = [];
  const add = (name: string, shape: number[]) => out.push({ name: `unet.${name}`, shape });
  const resnet = (p: string, cin: number, c: number) => {
    add(`${p}.norm1.weight`, [cin]);
    add(`${p}.conv1.weight`, [c, cin, 3, 3]);
    add(`${p}.time_emb_proj.weight`, [c, 1280]);
    add(`${p}.norm2.weight`, [c]);
    add(`${p}.conv2.weight`, [c, c, 3, 3]);
    if (cin !== c) add(`${p}.conv_shortcut.weight`, [c, cin, 1, 1]);
  };
  const attention = (p: string, c: number) => {
    add(`${p}.norm.weight`, [c]);
    add(`${p}.proj_in.weight`, v2 ? [c, c] : [c, c, 1, 1]);
    add(`${p}.proj_out.weight`, v2 ? [c, c] : [c, c, 1, 1]);
    const t = `${p}.transformer_blocks.0`;
    for (const a of ["attn1", "attn2"]) {
      add(`${t}.${a}.to_q.weight`, [c, c]);
      add(`${t}.${a}.to_k.weight`, [c, a === "attn1" ? c : ctx]);
      add(`${t}.${a}.to_v.weight`, [c, a === "attn1" ? c : ctx]);
      add(`${t}.${a}.to_out.0.weight`, [c, c]);
    }
    add(`${t}.ff.net.0.proj.weight`, [c * 8, c]);
    add(`${t}.ff.net.2.weight`, [c, c * 4]);
    for (const n of ["norm1", "norm2", "norm3"]) add(`${t}.${n}.weight`, [c]);
  };
  add("conv_in.weight", [320, 4, 3, 3]);
  add("time_embedding.linear_1.weight", [1280, 320]);
  add("time_embedding.linear_2.weight", [1280, 1280]);
  const skips = [320];
  let cin = 320;
  for (let b = 0; b < 4; b++) {
    for (let j = 0; j < 2; j++) {
      resnet(`down_blocks.${b}.resnets.${j}`, cin, ch[b]);
      if (b < 3) attention(`down_blocks.${b}.attentions.${j}`, ch[b]);
      cin = ch[b];
      skips.push(cin);
    }
    if (b < 3) {
      add(`down_blocks.${b}.downsamplers.0.conv.weight`, [cin, cin, 3, 3]);
      skips.push(cin);
    }
  }
  resnet("mid_block.resnets.0", 1280, 1280);
  attention("mid_block.attentions.0", 1280);
  resnet("mid_block.resnets.1", 1280, 1280);
  const rch = [...ch].reverse();
  for (let b = 0; b < 4; b++) {
    for (let j = 0; j < 3; j++) {
      resnet(`up_blocks.${b}.resnets.${j}`, cin + skips.pop()!, rch[b]);
      if (b > 0) attention(`up_blocks.${b}.attentions.${j}`, rch[b]);
      cin = rch[b];
    }
    if (b < 3) add(`up_blocks.${b}.upsamplers.0.conv.weight`, [cin, cin, 3, 3]);
  }
  add("conv_norm_out.weight", [320]);
  add("conv_out.weight", [4, 320, 3, 3]);
  const width = v2 ? 1024 : 768;
  // kohya's SD2 text encoder has 23 layers: the 24th (never used by SD2) is dropped on load.
  const layers = v2 ? 23 : 12;
  const te = (name: string, shape: number[]) =>
    out.push({ name: `text_encoder.text_model.${name}`, shape });
  te("embeddings.token_embedding.weight", [49408, width]);
  te("embeddings.position_embedding.weight", [77, width]);
  for (let i = 0; i < layers; i++) {
    const l = `encoder.layers.${i}`;
    for (const p of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      te(`${l}.self_attn.${p}.weight`, [width, width]);
    }
    te(`${l}.mlp.fc1.weight`, [width * 4, width]);
    te(`${l}.mlp.fc2.weight`, [width, width * 4]);
    te(`${l}.layer_norm1.weight`, [width]);
    te(`${l}.layer_norm2.weight`, [width]);
  }
  te("final_layer_norm.weight", [width]);
  return out;
}

function count(modules: readonly LoraModuleSpec[]) {
  return {
    unet: modules.filter((m) => m.part === "unet").length,
    te: modules.filter((m) => m.part === "text_encoder").length,
  };
}

Deno.test("full-size SD1.5: 192 U-Net + 72 text-encoder LierLa modules; C3Lier adds 86", () => {
  const weights = fullSizeWeights(false);
  const lierla = buildLoraModules(weights, {});
  assert.deepEqual(count(lierla), { unet: 192, te: 72 });
  assert.ok(lierla.every((m) => m.rank === 4 && m.alpha === 1)); // kohya's defaults
  const projIn = lierla.find((m) => m.prefix === "lora_unet_mid_block_attentions_0_proj_in")!;
  assert.deepEqual([projIn.kind, projIn.block], ["conv1x1", 12]);
  // 22 ResNets x (conv1, conv2, time_emb_proj) + 14 shortcuts + 6 samplers.
  const c3 = buildLoraModules(weights, { convDim: 4 });
  assert.deepEqual(count(c3), { unet: 192 + 66 + 14 + 6, te: 72 });
  assert.ok(!c3.some((m) => /conv_in|conv_out|time_embedding/.test(m.prefix)));
  assert.deepEqual(count(buildLoraModules(weights, { trainUnetOnly: true })), { unet: 192, te: 0 });
  assert.deepEqual(count(buildLoraModules(weights, { trainTextEncoderOnly: true })), {
    unet: 0,
    te: 72,
  });
});

Deno.test("full-size SD2: Linear proj_in/out, 23-layer text encoder", () => {
  const modules = buildLoraModules(fullSizeWeights(true), { networkDim: 8, networkAlpha: 0 });
  assert.deepEqual(count(modules), { unet: 192, te: 23 * 6 });
  const projIn = modules.find((m) => m.prefix === "lora_unet_up_blocks_3_attentions_2_proj_in")!;
  assert.deepEqual([projIn.kind, projIn.inFeatures, projIn.block], ["linear", 320, 24]);
  assert.ok(modules.every((m) => m.alpha === 8), "alpha 0 means alpha = rank");
  const q = modules.find((m) =>
    m.prefix === "lora_te_text_model_encoder_layers_22_self_attn_q_proj"
  );
  assert.equal(q?.weight, "text_encoder.text_model.encoder.layers.22.self_attn.q_proj.weight");
});

Deno.test("targets carry kohya's names, internal weight names and geometry", () => {
  const t = loraTargets(fullSizeWeights(false));
  const q = t.find((x) =>
    x.prefix === "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
  );
  assert.equal(q?.weight, "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight");
  assert.deepEqual([q?.inFeatures, q?.outFeatures, q?.block], [320, 320, 1]);
  assert.equal(t[0].part, "text_encoder", "text encoder modules come first, as in kohya");
  const up = t.find((x) => x.prefix === "lora_unet_up_blocks_1_upsamplers_0_conv")!;
  assert.deepEqual([up.stride, up.padding, up.block], [[1, 1], [1, 1], 18]);
});

Deno.test("bad module options are LorakitErrors naming the setting", () => {
  const w = fullSizeWeights(false);
  assert.throws(
    () => buildLoraModules(w, { blockDims: [4, 4, 4] }),
    (e) => e instanceof LorakitError && /block_dims: expected 25/.test(e.message),
  );
  assert.throws(
    () => buildLoraModules(w, { convBlockDims: new Array(25).fill(2) }),
    (e) =>
      e instanceof LorakitError && /conv_block_dims.*only together with block_dims/.test(e.message),
  );
  assert.throws(
    () => buildLoraModules(w, { module: "networks.dylora", networkDim: 8, convDim: 4 }),
    (e) =>
      e instanceof LorakitError && /conv_dim equal to --network_dim \(8\), found 4/.test(e.message),
  );
  assert.throws(
    () => buildLoraModules(w, { trainUnetOnly: true, trainTextEncoderOnly: true }),
    LorakitError,
  );
});
