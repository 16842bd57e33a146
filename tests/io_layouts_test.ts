/**
 * Checkpoint layouts: LDM <-> diffusers key maps, config inference, loading the three file forms
 * of sd1-tiny and sd2-tiny, LDM round trips, and full-size SD1.5/SD2 key sets from names only.
 */
import assert from "node:assert/strict";
import { fixture } from "./fixtures.ts";
import {
  loadCheckpoint,
  type LoadedCheckpoint,
  loadLdmSource,
  saveLdmCheckpoint,
} from "../core/io/checkpoint.ts";
import { ldmKeysFor, mapLdmKeys } from "../core/io/keymap_ldm.ts";
import { unetKeyToDiffusers, unetKeyToLdm } from "../core/io/keymap_unet.ts";
import { vaeKeyToDiffusers, vaeKeyToLdm } from "../core/io/keymap_vae.ts";
import { clipKeyToHf, hfToOpenClip, openClipKeyToHf } from "../core/io/keymap_text.ts";
import { openSafetensors, writeSafetensors } from "../core/io/safetensors.ts";
import type { HostTensor, TensorInfo, TensorSource } from "../core/io/tensor_source.ts";
import type { SDConfig } from "../core/model_config/config.ts";
import { expectedTensors } from "../core/model_config/keys.ts";
import { LorakitError } from "../core/errors.ts";

const SD_LAYOUT = { layersPerBlock: 2, upHasAttention: [false, true, true, true] };

Deno.test("unet key map: kohya's table, both directions", () => {
  const pairs: [string, string][] = [
    ["time_embed.0.weight", "time_embedding.linear_1.weight"],
    ["input_blocks.0.0.bias", "conv_in.bias"],
    ["out.2.weight", "conv_out.weight"],
    ["input_blocks.1.0.in_layers.0.weight", "down_blocks.0.resnets.0.norm1.weight"],
    ["input_blocks.2.1.proj_in.weight", "down_blocks.0.attentions.1.proj_in.weight"],
    ["input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"],
    ["input_blocks.4.0.skip_connection.bias", "down_blocks.1.resnets.0.conv_shortcut.bias"],
    ["input_blocks.11.0.emb_layers.1.weight", "down_blocks.3.resnets.1.time_emb_proj.weight"],
    [
      "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
      "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
    ],
    ["middle_block.2.out_layers.3.weight", "mid_block.resnets.1.conv2.weight"],
    ["output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"],
    ["output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"],
    ["output_blocks.5.1.norm.weight", "up_blocks.1.attentions.2.norm.weight"],
    ["output_blocks.11.0.skip_connection.weight", "up_blocks.3.resnets.2.conv_shortcut.weight"],
  ];
  for (const [ldm, hf] of pairs) {
    assert.equal(unetKeyToDiffusers(ldm, 2), hf, ldm);
    assert.equal(unetKeyToLdm(hf, SD_LAYOUT), ldm, hf);
  }
  for (
    const bad of ["input_blocks.1.0.bogus.weight", "output_blocks.1.1.conv.weight", "x.weight"]
  ) {
    assert.equal(unetKeyToDiffusers(bad, 2), null, bad);
  }
});

Deno.test("vae and OpenCLIP key maps", () => {
  const vae: [string, string, boolean][] = [
    [
      "decoder.up.0.block.0.nin_shortcut.weight",
      "decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
      false,
    ],
    ["decoder.up.3.upsample.conv.bias", "decoder.up_blocks.0.upsamplers.0.conv.bias", false],
    [
      "encoder.down.2.downsample.conv.weight",
      "encoder.down_blocks.2.downsamplers.0.conv.weight",
      false,
    ],
    ["encoder.mid.attn_1.proj_out.weight", "encoder.mid_block.attentions.0.to_out.0.weight", true],
    ["decoder.mid.attn_1.norm.bias", "decoder.mid_block.attentions.0.group_norm.bias", false],
    ["decoder.mid.attn_1.q.bias", "decoder.mid_block.attentions.0.to_q.bias", false],
    ["encoder.norm_out.weight", "encoder.conv_norm_out.weight", false],
  ];
  for (const [ldm, hf, convLinear] of vae) {
    assert.deepEqual(vaeKeyToDiffusers(ldm, 4), { name: hf, convLinear }, ldm);
    assert.deepEqual(vaeKeyToLdm(hf, 4), { name: ldm, convLinear }, hf);
  }
  const fused = openClipKeyToHf("transformer.resblocks.5.attn.in_proj_weight", 23);
  assert.deepEqual(fused, {
    kind: "model",
    names: ["q", "k", "v"].map((x) => `text_model.encoder.layers.5.self_attn.${x}_proj.weight`),
  });
  assert.deepEqual(openClipKeyToHf("transformer.resblocks.23.ln_1.weight", 23), { kind: "extra" });
  assert.deepEqual(openClipKeyToHf("text_projection", 23), { kind: "extra" });
  assert.deepEqual(openClipKeyToHf("transformer.resblocks.0.mlp.bogus.weight", 23), {
    kind: "unknown",
  });
  assert.deepEqual(hfToOpenClip("text_model.encoder.layers.5.self_attn.v_proj.bias"), {
    key: "transformer.resblocks.5.attn.in_proj_bias",
    part: 2,
  });
  assert.deepEqual(hfToOpenClip("text_model.final_layer_norm.weight"), { key: "ln_final.weight" });
  // SD1 files written without `text_model.` (kohya's loader accepts them too).
  assert.deepEqual(clipKeyToHf("encoder.layers.0.mlp.fc1.weight"), {
    kind: "model",
    names: ["text_model.encoder.layers.0.mlp.fc1.weight"],
  });
  assert.deepEqual(clipKeyToHf("text_model.embeddings.position_ids"), { kind: "extra" });
});

/** Config of sd1-tiny as its README and diffusers config.json state it. */
const SD1_TINY: SDConfig = {
  v2: false,
  vPrediction: false,
  unet: {
    inChannels: 4,
    outChannels: 4,
    blockOutChannels: [32, 64, 64, 64],
    layersPerBlock: 2,
    downBlockTypes: [
      "CrossAttnDownBlock2D",
      "CrossAttnDownBlock2D",
      "CrossAttnDownBlock2D",
      "DownBlock2D",
    ],
    upBlockTypes: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    numHeads: [2, 2, 2, 2],
    headDim: [16, 32, 32, 32],
    transformerDepth: [1, 1, 1, 0],
    midTransformerDepth: 1,
    crossAttentionDim: 32,
    useLinearProjection: false,
    timeEmbedDim: 128,
    normGroups: 32,
    normEps: 1e-5,
    transformerNormEps: 1e-6,
    layerNormEps: 1e-5,
  },
  vae: {
    inChannels: 3,
    outChannels: 3,
    latentChannels: 4,
    blockOutChannels: [32, 64, 64, 64],
    layersPerBlock: 2,
    normGroups: 32,
    normEps: 1e-6,
    scalingFactor: 0.18215,
  },
  textEncoder: {
    vocabSize: 49408,
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 2,
    intermediateSize: 128,
    maxPositions: 77,
    hiddenAct: "quick_gelu",
    layerNormEps: 1e-5,
  },
};

/** sd2-tiny per its README: linear projections, head width 16, OpenCLIP (GELU), v-prediction. */
const SD2_TINY: SDConfig = {
  ...SD1_TINY,
  v2: true,
  vPrediction: true,
  unet: {
    ...SD1_TINY.unet,
    numHeads: [2, 4, 4, 4],
    headDim: [16, 16, 16, 16],
    useLinearProjection: true,
  },
  textEncoder: { ...SD1_TINY.textEncoder, hiddenAct: "gelu" },
};

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

async function sameTensors(a: LoadedCheckpoint, b: LoadedCheckpoint): Promise<void> {
  assert.deepEqual([...a.names()].sort(), [...b.names()].sort());
  for (const name of a.names()) {
    assert.deepEqual(a.info(name), b.info(name), name);
    assert.ok(bytesEqual(await a.readRaw(name), await b.readRaw(name)), `bytes of ${name}`);
  }
}

Deno.test("sd1-tiny: LDM safetensors, ckpt and diffusers folder load identically", async () => {
  const st = fixture("sd1-tiny/model.safetensors");
  if (st === null) return;
  const a = await loadCheckpoint(st);
  const b = await loadCheckpoint(fixture("sd1-tiny/model.ckpt")!);
  const c = await loadCheckpoint(fixture("sd1-tiny/diffusers")!);
  try {
    assert.equal(a.format, "ldm-safetensors");
    assert.equal(b.format, "ldm-ckpt");
    assert.equal(c.format, "diffusers");
    for (const x of [a, b, c]) assert.deepEqual(x.config, SD1_TINY);
    const expected = expectedTensors(SD1_TINY).map((t) => t.name).sort();
    assert.deepEqual([...a.names()].sort(), expected);
    await sameTensors(a, b);
    await sameTensors(a, c);
    // The VAE attention is linear internally though the LDM file stores a 1x1 conv.
    assert.deepEqual(a.info("vae.decoder.mid_block.attentions.0.to_q.weight").shape, [64, 64]);
    const t = await a.readF32("vae.decoder.mid_block.attentions.0.to_q.weight");
    assert.deepEqual(t.shape, [64, 64]);
    assert.deepEqual(a.extras().map((e) => e.name).sort(), [
      "alphas_cumprod",
      "alphas_cumprod_prev",
      "betas",
      "cond_stage_model.transformer.text_model.embeddings.position_ids",
    ]);
    assert.deepEqual(
      b.extras().map((e) => e.name).filter((n) => n.startsWith("model_ema.")).sort(),
      ["model_ema.decay", "model_ema.num_updates"],
    );
  } finally {
    a.close();
    b.close();
    c.close();
  }
});

/**
 * Same header (as JSON: the reference wrote `__metadata__` last, our writer first) and the same
 * data bytes, so the same layout and offsets.
 */
async function sameFile(a: string, b: string): Promise<void> {
  const [x, y] = [await Deno.readFile(a), await Deno.readFile(b)];
  const hx = Number(new DataView(x.buffer).getBigUint64(0, true));
  const hy = Number(new DataView(y.buffer).getBigUint64(0, true));
  assert.equal(hx, hy, "header length");
  const text = (z: Uint8Array, n: number) =>
    JSON.parse(new TextDecoder().decode(z.subarray(8, 8 + n)));
  assert.deepEqual(text(x, hx), text(y, hy));
  assert.ok(bytesEqual(x.subarray(8 + hx), y.subarray(8 + hy)), "data bytes");
}

async function roundTrip(
  src: LoadedCheckpoint,
  withTemplate: boolean,
  original: string,
  dir: string,
): Promise<{ out: string; origKeys: string[]; outKeys: string[] }> {
  const out = `${dir}/${withTemplate ? "t" : "d"}-${src.format}.safetensors`;
  const orig = await openSafetensors(original);
  await saveLdmCheckpoint(out, src, src.config, {
    savePrecision: "float",
    template: withTemplate ? src.ldmTemplate() ?? undefined : undefined,
    metadata: orig.metadata,
  });
  const back = await openSafetensors(out);
  try {
    const outKeys = back.list().map((t) => t.name).sort();
    for (const t of back.list()) {
      if (!orig.has(t.name)) continue;
      const o = orig.info(t.name);
      assert.deepEqual([t.dtype, t.shape], [o.dtype, o.shape], t.name);
      if (/resblocks\.3\.|text_projection|logit_scale/.test(t.name) && !withTemplate) continue;
      assert.ok(bytesEqual(await back.readRaw(t.name), await orig.readRaw(t.name)), t.name);
    }
    return { out, origKeys: orig.list().map((t) => t.name).sort(), outKeys };
  } finally {
    orig.close();
    back.close();
  }
}

const NON_MODEL = /^(betas|alphas_cumprod|alphas_cumprod_prev|model_ema\..*|.*position_ids)$/;

Deno.test("sd1-tiny: LDM -> internal -> LDM round trips", async () => {
  const st = fixture("sd1-tiny/model.safetensors");
  if (st === null) return;
  const dir = await Deno.makeTempDir();
  try {
    const a = await loadCheckpoint(st);
    // With the original as template: the same key set and bytes, the same file layout.
    const r1 = await roundTrip(a, true, st, dir);
    assert.deepEqual(r1.outKeys, r1.origKeys);
    await sameFile(r1.out, st);
    // Without a template (kohya's default key set): the model keys, bytes as the original.
    const r2 = await roundTrip(a, false, st, dir);
    assert.deepEqual(r2.outKeys, r2.origKeys.filter((k) => !NON_MODEL.test(k)));
    a.close();
    // diffusers folder -> LDM: what kohya's converter wrote, byte for byte.
    const c = await loadCheckpoint(fixture("sd1-tiny/diffusers")!);
    const r3 = await roundTrip(c, false, st, dir);
    assert.deepEqual(r3.outKeys, r2.outKeys);
    c.close();
    // .ckpt with its own template keeps model_ema.* and the schedule buffers.
    const b = await loadCheckpoint(fixture("sd1-tiny/model.ckpt")!);
    const r4 = await roundTrip(b, true, st, dir);
    assert.deepEqual(
      r4.outKeys,
      [...r1.outKeys, "model_ema.decay", "model_ema.num_updates"].sort(),
    );
    b.close();
    // fp16: model tensors in F16, extras keep their dtype.
    const a2 = await loadCheckpoint(st);
    const half = `${dir}/half.safetensors`;
    await saveLdmCheckpoint(half, a2, a2.config, {
      savePrecision: "fp16",
      template: a2.ldmTemplate()!,
    });
    const h = await openSafetensors(half);
    assert.equal(h.info("model.diffusion_model.input_blocks.0.0.weight").dtype, "F16");
    assert.equal(h.info("betas").dtype, "F32");
    assert.equal(
      h.info("cond_stage_model.transformer.text_model.embeddings.position_ids").dtype,
      "I64",
    );
    const w = await h.readF32("first_stage_model.encoder.mid.attn_1.q.weight");
    const ref = await a2.readF32("vae.encoder.mid_block.attentions.0.to_q.weight");
    assert.deepEqual(w.shape, [64, 64, 1, 1]);
    for (let i = 0; i < ref.data.length; i++) {
      assert.ok(Math.abs(w.data[i] - ref.data[i]) <= 1e-3 * Math.abs(ref.data[i]) + 1e-7);
    }
    h.close();
    a2.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sd2-tiny: OpenCLIP, linear projections, v-prediction; LDM round trip", async () => {
  const st = fixture("sd2-tiny/model.safetensors");
  if (st === null) return;
  const dir = await Deno.makeTempDir();
  const a = await loadCheckpoint(st);
  try {
    assert.deepEqual(a.config, SD2_TINY);
    assert.deepEqual([...a.names()].sort(), expectedTensors(SD2_TINY).map((t) => t.name).sort());
    assert.deepEqual(a.info("unet.mid_block.attentions.0.proj_in.weight").shape, [64, 64]);
    // q, k, v are the three row blocks of in_proj_weight, in that order.
    const raw = await openSafetensors(st);
    const fusedW = await raw.readF32(
      "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight",
    );
    raw.close();
    for (const [i, x] of ["q", "k", "v"].entries()) {
      const t = await a.readF32(
        `text_encoder.text_model.encoder.layers.1.self_attn.${x}_proj.weight`,
      );
      assert.deepEqual(t.shape, [32, 32]);
      assert.deepEqual(t.data, fusedW.data.slice(i * 1024, (i + 1) * 1024));
    }
    assert.ok(!a.has("text_encoder.text_model.encoder.layers.3.layer_norm1.weight"));
    const r1 = await roundTrip(a, true, st, dir);
    assert.deepEqual(r1.outKeys, r1.origKeys);
    await sameFile(r1.out, st);
    // kohya's defaults: dummy last block (copy of the last used one), text_projection, logit_scale.
    const r2 = await roundTrip(a, false, st, dir);
    assert.deepEqual(r2.outKeys, r2.origKeys.filter((k) => !NON_MODEL.test(k)));
    const d = await openSafetensors(r2.out);
    const last = await d.readRaw(
      "cond_stage_model.model.transformer.resblocks.3.attn.in_proj_weight",
    );
    const prev = await d.readRaw(
      "cond_stage_model.model.transformer.resblocks.2.attn.in_proj_weight",
    );
    assert.ok(bytesEqual(last, prev));
    d.close();
    // A yaml that does not belong to the weights (SD1's CLIP target) is reported, naming it.
    const wrongYaml = await loadCheckpoint(st, { yamlPath: fixture("sd1-tiny/model.yaml")! })
      .catch((e) => e);
    assert.ok(wrongYaml instanceof LorakitError, String(wrongYaml));
    assert.match(wrongYaml.message, /sd1-tiny\/model.yaml: 'cond_stage_config target is OpenCLIP/);
    await assert.rejects(() => loadCheckpoint(st, { v2: false }), /v2 was set to false/);
    const eps = await loadCheckpoint(st, { vPrediction: false });
    assert.equal(eps.config.vPrediction, false);
    eps.close();
  } finally {
    a.close();
    await Deno.remove(dir, { recursive: true });
  }
});

/** A TensorSource over names and shapes only (data: zeros), for key-set tests. */
class FakeSource implements TensorSource {
  readonly metadata = {};
  readonly byName: Map<string, TensorInfo>;
  constructor(readonly path: string, readonly infos: TensorInfo[]) {
    this.byName = new Map(infos.map((t) => [t.name, t]));
  }
  list(): TensorInfo[] {
    return this.infos;
  }
  has(name: string): boolean {
    return this.byName.has(name);
  }
  info(name: string): TensorInfo {
    return this.byName.get(name)!;
  }
  readF32(name: string): Promise<HostTensor> {
    const shape = this.info(name).shape;
    return Promise.resolve({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  }
  readRaw(name: string): Promise<Uint8Array> {
    return this.readF32(name).then((t) => new Uint8Array(t.data.buffer));
  }
  close(): void {}
}

/** LDM key list (names, shapes) that `config` implies, via the inverse maps. */
function ldmInfos(config: SDConfig): TensorInfo[] {
  const internal = expectedTensors(config).map((t) => ({ ...t, dtype: "F32" as const }));
  return ldmKeysFor(internal, config).map(({ name, dtype, shape }) => ({ name, dtype, shape }));
}

Deno.test("generated LDM key set of the tiny config equals the fixture's (names and shapes)", async () => {
  for (const [rel, config] of [["sd1-tiny", SD1_TINY], ["sd2-tiny", SD2_TINY]] as const) {
    const st = fixture(`${rel}/model.safetensors`);
    if (st === null) return;
    const f = await openSafetensors(st);
    const want = f.list().filter((t) => !NON_MODEL.test(t.name)).map((t) => `${t.name} ${t.shape}`);
    f.close();
    const got = ldmInfos(config).map((t) => `${t.name} ${t.shape}`);
    assert.deepEqual(got.sort(), want.sort(), rel);
  }
});

const SD15: SDConfig = {
  v2: false,
  vPrediction: false,
  unet: {
    ...SD1_TINY.unet,
    blockOutChannels: [320, 640, 1280, 1280],
    numHeads: [8, 8, 8, 8],
    headDim: [40, 80, 160, 160],
    crossAttentionDim: 768,
    timeEmbedDim: 1280,
  },
  vae: { ...SD1_TINY.vae, blockOutChannels: [128, 256, 512, 512] },
  textEncoder: {
    ...SD1_TINY.textEncoder,
    hiddenSize: 768,
    numLayers: 12,
    numHeads: 12,
    intermediateSize: 3072,
  },
};

const SD21: SDConfig = {
  ...SD15,
  v2: true,
  unet: {
    ...SD15.unet,
    numHeads: [5, 10, 20, 20],
    headDim: [64, 64, 64, 64],
    crossAttentionDim: 1024,
    useLinearProjection: true,
  },
  textEncoder: {
    ...SD15.textEncoder,
    hiddenSize: 1024,
    numLayers: 23,
    numHeads: 16,
    intermediateSize: 4096,
    hiddenAct: "gelu",
  },
};

Deno.test("full-size SD1.5 and SD2.x key sets: config inferred from names and shapes", () => {
  for (const [label, config] of [["SD1.5", SD15], ["SD2.x", SD21]] as const) {
    const infos = ldmInfos(config);
    const ckpt = loadLdmSource(new FakeSource(label, infos), "ldm-safetensors", {});
    assert.deepEqual(ckpt.config, config, label);
    const shape = (k: string) => infos.find((t) => t.name === k)?.shape;
    const u = "model.diffusion_model.";
    assert.deepEqual(shape(`${u}time_embed.0.weight`), [1280, 320]);
    assert.deepEqual(shape(`${u}output_blocks.3.0.in_layers.2.weight`), [1280, 2560, 3, 3]);
    assert.deepEqual(shape(`${u}output_blocks.2.1.conv.weight`), [1280, 1280, 3, 3]);
    assert.deepEqual(shape(`${u}input_blocks.7.1.transformer_blocks.0.ff.net.0.proj.weight`), [
      10240,
      1280,
    ]);
    assert.deepEqual(shape("first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"), [
      128,
      256,
      1,
      1,
    ]);
    const ctx = config.unet.crossAttentionDim;
    assert.deepEqual(shape(`${u}input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight`), [
      320,
      ctx,
    ]);
    assert.deepEqual(
      shape(`${u}input_blocks.1.1.proj_in.weight`),
      config.v2 ? [320, 320] : [320, 320, 1, 1],
    );
    if (config.v2) {
      assert.deepEqual(
        shape("cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight"),
        [3072, 1024],
      );
      assert.deepEqual(shape("cond_stage_model.model.text_projection"), [1024, 1024]);
    } else {
      assert.deepEqual(
        shape("cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc1.weight"),
        [3072, 768],
      );
    }
    // Real SD 1.5/2.x files have 686 U-Net and 248 VAE keys (the tiny models fewer: with their
    // narrower widths fewer ResNets change channels, so fewer have a shortcut conv).
    const count = (p: string) => infos.filter((t) => t.name.startsWith(p)).length;
    assert.equal(count(u), 686);
    assert.equal(count("first_stage_model."), 248);
    assert.equal(count("cond_stage_model."), config.v2 ? 24 * 12 + 6 : 12 * 16 + 4);
  }
});

Deno.test("bad key sets are reported by key", () => {
  const infos = ldmInfos(SD1_TINY);
  const tiny = { yaml: { path: "x.yaml", textEncoderHeads: 2 } };
  const load = (list: TensorInfo[], hints: object = tiny) =>
    loadLdmSource(new FakeSource("fake.safetensors", list), "ldm-safetensors", hints);
  const extra = (name: string, shape = [32]) => [...infos, { name, dtype: "F32" as const, shape }];
  assert.throws(
    () => load(extra("model.diffusion_model.bogus.weight")),
    /fake.safetensors: key 'model.diffusion_model.bogus.weight' is in the U-Net namespace/,
  );
  assert.throws(
    () => load(extra("model.diffusion_model.input_blocks.1.1.foo.weight")),
    /unknown key 'model.diffusion_model.input_blocks.1.1.foo.weight'.*down_blocks.0.attentions.0.foo/,
  );
  assert.throws(
    () => load(extra("first_stage_model.encoder.mid.attn_2.q.weight")),
    /'first_stage_model.encoder.mid.attn_2.q.weight' is in the VAE namespace/,
  );
  const missing = infos.filter((t) => !t.name.endsWith("output_blocks.4.1.proj_out.bias"));
  assert.throws(
    () => load(missing),
    /missing tensor 'unet.up_blocks.1.attentions.1.proj_out.bias'/,
  );
  const wrong = infos.map((t) =>
    t.name.endsWith("input_blocks.1.0.in_layers.2.bias") ? { ...t, shape: [31] } : t
  );
  assert.throws(() => load(wrong), /expected shape \[32\].*found \[31\]/);
  assert.throws(
    () => load(infos, { yaml: { ...tiny.yaml, contextDim: 768 } }),
    /x.yaml: 'unet_config context_dim' says 768, but the weights show 32/,
  );
  const sdxl = extra("conditioner.embedders.0.transformer.text_model.final_layer_norm.weight");
  assert.throws(() => mapLdmKeys(sdxl, "xl.safetensors"), /SDXL is not supported/);
  // Heads default to width / 64 for the text encoder: 32 wide has no such split.
  assert.throws(() => load(infos, {}), /32 channels do not split into heads of 64/);
});

Deno.test("diffusers folder: pre-0.17 VAE attention names; a missing part is named", async () => {
  const src = fixture("sd1-tiny/diffusers");
  if (src === null) return;
  const dir = await Deno.makeTempDir();
  try {
    // unet/ and text_encoder/ linked; vae/ rewritten with diffusers < 0.17 names, no config.json.
    for (const part of ["unet", "text_encoder", "scheduler"]) {
      await Deno.symlink(`${src}/${part}`, `${dir}/${part}`);
    }
    await Deno.mkdir(`${dir}/vae`);
    const legacy: Record<string, string> = { to_q: "query", to_k: "key", to_v: "value" };
    const vae = await openSafetensors(`${src}/vae/diffusion_pytorch_model.safetensors`);
    const tensors = await Promise.all(
      vae.list().map(async (t) => ({
        name: t.name.replace(
          /attentions\.0\.(to_q|to_k|to_v|to_out\.0)\./,
          (_, m: string) => `attentions.0.${legacy[m] ?? "proj_attn"}.`,
        ),
        dtype: t.dtype,
        shape: t.shape,
        data: await vae.readRaw(t.name),
      })),
    );
    vae.close();
    assert.ok(tensors.some((t) => t.name === "encoder.mid_block.attentions.0.proj_attn.weight"));
    await writeSafetensors(`${dir}/vae/diffusion_pytorch_model.safetensors`, tensors);
    const a = await loadCheckpoint(dir);
    const b = await loadCheckpoint(src);
    await sameTensors(a, b);
    assert.deepEqual(a.config, b.config);
    a.close();
    b.close();
    await Deno.remove(`${dir}/text_encoder`);
    await assert.rejects(
      () => loadCheckpoint(dir),
      /expected 'text_encoder\/model.safetensors' or 'text_encoder\/pytorch_model.bin', found neither/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
