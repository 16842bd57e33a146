/**
 * Saving SDXL as an SGM single file: the sdxl-tiny file loaded and saved in float32 gives the
 * same keys, dtypes, shapes and bytes (text_projection back in OpenCLIP's layout, int64
 * position_ids and logit_scale as stored), re-loads to identical tensors and identical forward
 * outputs; fp16/bf16 convert the model tensors only; the diffusers folder saves to the SGM keys.
 */
import assert from "node:assert/strict";
import { initGpu, scope, Tensor } from "../gpu/mod.ts";
import { loadSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { saveSdxlCheckpoint } from "../core/io/checkpoint_sdxl_save.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import type { HostTensor } from "../core/io/tensor_source.ts";
import { loadStableDiffusionXL, sdxlVector } from "../core/models/mod.ts";
import { roundToPrecision } from "../core/lora/svd_ops.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";
import { withSdxlCkpt } from "./sdxl_ckpt.ts";

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lorakit_sdxl_save_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Save `src` (file or folder) to `<dir>/out.safetensors` with the fixture's yaml beside it. */
async function saveCopy(
  src: string,
  dir: string,
  precision: "float" | "fp16" | "bf16",
  stem = "out",
) {
  const ckpt = await loadSdxlCheckpoint(src);
  const out = `${dir}/${stem}.safetensors`;
  try {
    await saveSdxlCheckpoint(out, ckpt, ckpt.config, {
      savePrecision: precision,
      template: ckpt.ldmTemplate() ?? undefined,
      metadata: { note: "x" },
    });
  } finally {
    ckpt.close();
  }
  await Deno.copyFile(fixture("sdxl-tiny/model.yaml")!, `${dir}/${stem}.yaml`);
  return out;
}

Deno.test("SDXL save: the single file round-trips key for key and byte for byte", async () => {
  const src = fixture("sdxl-tiny/model.safetensors");
  if (src === null) return;
  await withDir(async (dir) => {
    const out = await saveCopy(src, dir, "float");
    const a = await openSafetensors(src), b = await openSafetensors(out);
    try {
      assert.equal(b.metadata.note, "x");
      const ka = a.list().map((t) => t.name).sort(), kb = b.list().map((t) => t.name).sort();
      assert.deepEqual(kb, ka);
      assert.equal(ka.length, 965);
      for (const t of a.list()) {
        const u = b.info(t.name);
        assert.equal(u.dtype, t.dtype, t.name);
        assert.deepEqual(u.shape, t.shape, t.name);
        assert.deepEqual(await b.readRaw(t.name), await a.readRaw(t.name), t.name);
      }
      assert.equal(
        b.info("conditioner.embedders.0.transformer.text_model.embeddings.position_ids")
          .dtype,
        "I64",
      );
    } finally {
      a.close();
      b.close();
    }
    const x = await loadSdxlCheckpoint(src), y = await loadSdxlCheckpoint(out);
    try {
      assert.deepEqual(y.config, x.config);
      assert.deepEqual(y.names(), x.names());
      for (const n of x.names()) {
        assert.deepEqual((await y.readF32(n)).data, (await x.readF32(n)).data, n);
      }
    } finally {
      x.close();
      y.close();
    }
  });
});

async function forward(path: string): Promise<{ unet: Float32Array; pooled: Float32Array }> {
  const f = await openSafetensors(fixture("sdxl-tiny/forward.safetensors")!);
  const get = async (k: string): Promise<HostTensor> => await f.readF32(k);
  try {
    const prompts: string[] = JSON.parse(f.metadata.prompts);
    const ids = await get("unet_time_ids");
    const rows = [0, 1].map((i) => Array.from(ids.data.subarray(i * 6, i * 6 + 6)));
    const x = await get("unet_sample"), t = await get("unet_timesteps");
    const sd = await loadStableDiffusionXL(path, {
      parts: ["text_encoder", "text_encoder_2", "unet"],
    });
    try {
      const out = scope(() => {
        const text = sd.encodePrompts(prompts);
        const y = sdxlVector(text.pooled, rows, sd.config.unet.addEmbedding!);
        const e = sd.unet.forward(
          Tensor.fromArray(x.data, x.shape),
          Array.from(t.data),
          text.context,
          y,
        );
        return { e, pooled: text.pooled };
      });
      const r = { unet: await out.e.toArray(), pooled: await out.pooled.toArray() };
      out.e.dispose();
      out.pooled.dispose();
      return r;
    } finally {
      sd.dispose();
    }
  } finally {
    f.close();
  }
}

Deno.test("SDXL save: the saved file re-loads to the same forward outputs", async () => {
  const src = fixture("sdxl-tiny/model.safetensors");
  if (src === null) return;
  await initGpu();
  await withDir(async (dir) => {
    const out = await saveCopy(src, dir, "float");
    const a = await forward(src), b = await forward(out);
    const ref = await openSafetensors(fixture("sdxl-tiny/forward.safetensors")!);
    const want = (await ref.readF32("unet_out")).data;
    ref.close();
    assert.ok(relErr(a.unet, want) <= 1e-4, "the base model matches diffusers");
    assert.equal(relErr(b.unet, a.unet), 0);
    assert.equal(relErr(b.pooled, a.pooled), 0);
  });
});

Deno.test("SDXL save: fp16/bf16 convert model tensors; extras keep their dtype and bytes", async () => {
  const src = fixture("sdxl-tiny/model.safetensors");
  if (src === null) return;
  for (const [precision, dtype] of [["fp16", "F16"], ["bf16", "BF16"]] as const) {
    await withDir(async (dir) => {
      const out = await saveCopy(src, dir, precision);
      const a = await openSafetensors(src), b = await openSafetensors(out);
      try {
        for (const t of a.list()) {
          const extra = t.name.endsWith("position_ids") || t.name.endsWith("logit_scale");
          assert.equal(b.info(t.name).dtype, extra ? t.dtype : dtype, t.name);
          if (extra) assert.deepEqual(await b.readRaw(t.name), await a.readRaw(t.name));
        }
        const key = "conditioner.embedders.1.model.text_projection";
        const want = roundToPrecision((await a.readF32(key)).data, precision);
        assert.deepEqual((await b.readF32(key)).data, want);
      } finally {
        a.close();
        b.close();
      }
      const y = await loadSdxlCheckpoint(out);
      y.close();
    });
  }
});

Deno.test("SDXL save: a diffusers folder is written with the SGM key set", async () => {
  const folder = fixture("sdxl-tiny/diffusers");
  const src = fixture("sdxl-tiny/model.safetensors");
  if (folder === null || src === null) return;
  await withDir(async (dir) => {
    const out = await saveCopy(folder, dir, "float");
    const a = await openSafetensors(src), b = await openSafetensors(out);
    try {
      const ka = a.list().map((t) => t.name).filter((n) => !n.endsWith("position_ids")).sort();
      assert.deepEqual(b.list().map((t) => t.name).sort(), ka);
      for (const t of a.list()) {
        if (t.name.endsWith("position_ids")) continue;
        assert.deepEqual(b.info(t.name).shape, t.shape, t.name);
        assert.deepEqual((await b.readF32(t.name)).data, (await a.readF32(t.name)).data, t.name);
      }
    } finally {
      a.close();
      b.close();
    }
  });
});

Deno.test("SDXL save: the .ckpt form saves to the same file as the .safetensors", async () => {
  const src = fixture("sdxl-tiny/model.safetensors");
  if (src === null) return;
  await withDir(async (dir) => {
    const a = await openSafetensors(await saveCopy(src, dir, "float"));
    try {
      await withSdxlCkpt(async (ckpt) => {
        const b = await openSafetensors(await saveCopy(ckpt, dir, "float", "from_ckpt"));
        try {
          assert.deepEqual(b.list().map((t) => t.name).sort(), a.list().map((t) => t.name).sort());
          for (const t of a.list()) {
            assert.equal(b.info(t.name).dtype, t.dtype, t.name);
            assert.deepEqual(await b.readRaw(t.name), await a.readRaw(t.name), t.name);
          }
        } finally {
          b.close();
        }
      });
    } finally {
      a.close();
    }
  });
});
