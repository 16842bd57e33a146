/**
 * SDXL checkpoints: the sdxl-tiny SGM single file, the same file as a `.ckpt`, and the diffusers
 * folder open to the same internal tensors, bit for bit (OpenCLIP's `text_projection`
 * transposed to the Linear layout), with the same inferred config; detection, the SD 1.x/2.x
 * loader's refusal, and errors for a missing or contradicting yaml.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { loadCheckpoint } from "../core/io/checkpoint.ts";
import { isSdxlCheckpoint, loadSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { fixture } from "./fixtures.ts";
import { withSdxlCkpt } from "./sdxl_ckpt.ts";

const isLorakit = (re: RegExp) => (e: Error) => e instanceof LorakitError && re.test(e.message);

/** A temp folder with `model.safetensors` linked to the fixture's and an optional yaml. */
async function withLinkedFile(
  yaml: string | null,
  fn: (path: string) => Promise<void>,
): Promise<void> {
  const src = fixture("sdxl-tiny/model.safetensors")!;
  const dir = await Deno.makeTempDir({ prefix: "lorakit_sdxl_io_" });
  try {
    await Deno.symlink(src, `${dir}/model.safetensors`);
    if (yaml !== null) await Deno.writeTextFile(`${dir}/model.yaml`, yaml);
    await fn(`${dir}/model.safetensors`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("SDXL: single file, .ckpt and diffusers folder give the same tensors and config", async () => {
  const file = fixture("sdxl-tiny/model.safetensors");
  const folder = fixture("sdxl-tiny/diffusers");
  if (file === null || folder === null) return;
  const a = await loadSdxlCheckpoint(file);
  const b = await loadSdxlCheckpoint(folder);
  try {
    assert.equal(a.format, "ldm-safetensors");
    assert.equal(b.format, "diffusers");
    assert.deepEqual(a.config, b.config);
    const c = a.config;
    assert.deepEqual(c.unet.blockOutChannels, [32, 32, 64]);
    assert.deepEqual(c.unet.numHeads, [2, 2, 4]); // head width 16 (num_head_channels)
    assert.deepEqual(c.unet.transformerDepth, [0, 1, 2]);
    assert.equal(c.unet.midTransformerDepth, 2);
    assert.deepEqual(c.unet.downBlockTypes, [
      "DownBlock2D",
      "CrossAttnDownBlock2D",
      "CrossAttnDownBlock2D",
    ]);
    assert.equal(c.unet.useLinearProjection, true);
    assert.deepEqual(c.unet.addEmbedding, { inChannels: 56, timeIdEmbedDim: 8, numTimeIds: 6 });
    assert.equal(c.unet.crossAttentionDim, 16);
    assert.equal(c.vae.scalingFactor, 0.13025);
    assert.equal(c.vae.forceUpcast, true);
    assert.deepEqual(
      [c.textEncoder.numLayers, c.textEncoder.numHeads, c.textEncoder.hiddenAct],
      [3, 2, "quick_gelu"],
    );
    assert.deepEqual(
      [c.textEncoder2.numLayers, c.textEncoder2.numHeads, c.textEncoder2.hiddenAct],
      [4, 4, "gelu"],
    );
    assert.equal(c.textEncoder2.projectionDim, 8);
    assert.equal(c.vPrediction, false);
    assert.deepEqual([...a.names()].sort(), [...b.names()].sort());
    for (const name of a.names()) {
      assert.deepEqual(a.info(name).shape, b.info(name).shape, name);
      assert.deepEqual((await a.readF32(name)).data, (await b.readF32(name)).data, name);
    }
    assert.deepEqual(a.extras().map((t) => t.name).sort(), [
      "conditioner.embedders.0.transformer.text_model.embeddings.position_ids",
      "conditioner.embedders.1.model.logit_scale",
    ]);
  } finally {
    a.close();
    b.close();
  }
  const ok = await withSdxlCkpt(async (ckptPath) => {
    const k = await loadSdxlCheckpoint(ckptPath);
    const s = await loadSdxlCheckpoint(file);
    try {
      assert.equal(k.format, "ldm-ckpt");
      assert.deepEqual(k.config, s.config);
      assert.deepEqual(k.names(), s.names());
      for (const name of s.names()) {
        assert.deepEqual(await k.readRaw(name), await s.readRaw(name), name);
      }
    } finally {
      k.close();
      s.close();
    }
  });
  assert.ok(ok);
});

Deno.test("SDXL: text_projection is read as the Linear weight W = P^T of the stored P", async () => {
  const file = fixture("sdxl-tiny/model.safetensors");
  const te2 = fixture("sdxl-tiny/diffusers/text_encoder_2/model.safetensors");
  if (file === null || te2 === null) return;
  const raw = await openSafetensors(file);
  const hf = await openSafetensors(te2);
  const ck = await loadSdxlCheckpoint(file);
  try {
    const p = await raw.readF32("conditioner.embedders.1.model.text_projection");
    const w = await hf.readF32("text_projection.weight");
    const [rows, cols] = p.shape;
    const pt = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) pt[j * rows + i] = p.data[i * cols + j];
    }
    assert.deepEqual(pt, w.data);
    assert.notDeepEqual(p.data, w.data, "the fixture's projection is not symmetric");
    const name = "text_encoder_2.text_projection.weight";
    assert.deepEqual((await ck.readF32(name)).data, w.data);
    assert.deepEqual(await ck.readRaw(name), await hf.readRaw("text_projection.weight"));
  } finally {
    raw.close();
    hf.close();
    ck.close();
  }
});

Deno.test("SDXL detection; each loader refuses the other family by name", async () => {
  const file = fixture("sdxl-tiny/model.safetensors");
  const folder = fixture("sdxl-tiny/diffusers");
  const sd1 = fixture("sd1-tiny/model.safetensors");
  const sd1Folder = fixture("sd1-tiny/diffusers");
  if (file === null || folder === null || sd1 === null || sd1Folder === null) return;
  assert.equal(await isSdxlCheckpoint(file), true);
  assert.equal(await isSdxlCheckpoint(folder), true);
  assert.equal(await isSdxlCheckpoint(sd1), false);
  assert.equal(await isSdxlCheckpoint(sd1Folder), false);
  await assert.rejects(() => loadCheckpoint(file), isLorakit(/SDXL/));
  await assert.rejects(() => loadCheckpoint(folder), isLorakit(/text_encoder_2/));
  await assert.rejects(() => loadSdxlCheckpoint(sd1), isLorakit(/expected an SDXL checkpoint/));
  await assert.rejects(() => loadSdxlCheckpoint(sd1Folder), isLorakit(/text_encoder_2/));
});

Deno.test("SDXL: head widths without a yaml, and a yaml that contradicts the weights", async () => {
  const yamlPath = fixture("sdxl-tiny/model.yaml");
  if (yamlPath === null) return;
  const yaml = await Deno.readTextFile(yamlPath);
  // No yaml: SDXL's head width 64 does not divide the tiny widths; the error names the file.
  await withLinkedFile(null, async (path) => {
    await assert.rejects(
      () => loadSdxlCheckpoint(path),
      isLorakit(/model\.safetensors.*heads of 64/),
    );
    const c = await loadSdxlCheckpoint(path, { headsOptional: true });
    c.close();
  });
  await withLinkedFile(yaml, async (path) => {
    const c = await loadSdxlCheckpoint(path);
    assert.deepEqual(c.config.unet.numHeads, [2, 2, 4]);
    c.close();
  });
  const bad = yaml.replace("adm_in_channels: 56", "adm_in_channels: 2816");
  assert.notEqual(bad, yaml);
  await withLinkedFile(bad, async (path) => {
    await assert.rejects(
      () => loadSdxlCheckpoint(path),
      isLorakit(/model\.yaml: 'network_config adm_in_channels' says 2816, but the weights show 56/),
    );
  });
  const depth = yaml.replace("transformer_depth: [1, 1, 2]", "transformer_depth: [1, 2, 10]");
  assert.notEqual(depth, yaml);
  await withLinkedFile(depth, async (path) => {
    await assert.rejects(() => loadSdxlCheckpoint(path), isLorakit(/transformer_depth/));
  });
});
