/**
 * Writing `torch.save` zip-format checkpoints: our own reader reads back every key, dtype, shape
 * and byte; the archive is torch's layout (data.pkl first, 64-byte aligned data, version); real
 * PyTorch loads it when `/usr/bin/python3` has torch; LoRA checkpoints hold kohya's keys.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { openCkpt } from "../core/io/ckpt.ts";
import { type CkptTensorToWrite, writeTorchCheckpoint } from "../core/io/ckpt_write.ts";
import { encodeFromF32 } from "../core/io/dtype.ts";
import { openRead } from "../core/io/fs.ts";
import { openZip } from "../core/io/zip.ts";
import { saveLoraCheckpoint } from "../core/lora/lora_file_ckpt.ts";
import { rng } from "./ckpt_build.ts";

const PYTHON = "/usr/bin/python3";

function f32(shape: number[], seed: number): CkptTensorToWrite {
  const r = rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const values = Float32Array.from({ length: n }, () => r() * 2 - 1);
  return { name: "", dtype: "F32", shape, data: new Uint8Array(values.buffer) };
}

function sample(): CkptTensorToWrite[] {
  const r = rng(7);
  const half = (n: number) => Float32Array.from({ length: n }, () => r() * 8 - 4);
  return [
    { ...f32([4, 3], 1), name: "lora_unet_x.lora_down.weight" },
    { ...f32([5, 4, 1, 1], 2), name: "lora_unet_x.lora_up.weight" },
    { name: "lora_unet_x.alpha", dtype: "F32", shape: [], data: encodeFromF32("F32", half(1)) },
    { name: "h.alpha", dtype: "F16", shape: [], data: encodeFromF32("F16", new Float32Array([2])) },
    { name: "h.w", dtype: "F16", shape: [2, 3, 3, 3], data: encodeFromF32("F16", half(54)) },
    { name: "b.w", dtype: "BF16", shape: [300], data: encodeFromF32("BF16", half(300)) },
    { name: "empty", dtype: "F32", shape: [0, 3], data: new Uint8Array(0) },
    { name: "größe", dtype: "F32", shape: [1], data: encodeFromF32("F32", half(1)) },
  ];
}

async function tempCkpt(suffix = ".ckpt"): Promise<string> {
  const dir = await Deno.makeTempDir();
  return `${dir}/lora${suffix}`;
}

async function hasTorch(): Promise<boolean> {
  const probe = new Deno.Command(PYTHON, {
    args: ["-c", "import torch"],
    stdout: "null",
    stderr: "null",
  });
  return await probe.output().then((o) => o.success, () => false);
}

Deno.test("ckpt write: openCkpt reads back keys, dtypes, shapes and bytes", async () => {
  const path = await tempCkpt();
  const tensors = sample();
  await writeTorchCheckpoint(path, tensors);
  const ck = await openCkpt(path);
  try {
    assert.deepEqual(ck.list().map((t) => t.name).sort(), tensors.map((t) => t.name).sort());
    for (const t of tensors) {
      assert.deepEqual(ck.info(t.name), { name: t.name, dtype: t.dtype, shape: t.shape });
      assert.deepEqual(await ck.readRaw(t.name), t.data, t.name);
    }
    assert.deepEqual([...(await ck.readF32("h.alpha")).data], [2]);
    assert.deepEqual(ck.metadata, {});
  } finally {
    ck.close();
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("ckpt write: torch's archive layout, data aligned to 64 bytes, CRCs valid", async () => {
  const path = await tempCkpt(".pt");
  const tensors = sample();
  await writeTorchCheckpoint(path, tensors);
  const file = await openRead(path);
  try {
    const zip = await openZip(file);
    const names = zip.entries.map((e) => e.name);
    assert.deepEqual(names, [
      "lora/data.pkl",
      "lora/byteorder",
      ...tensors.map((_, i) => `lora/data/${i}`),
      "lora/version",
    ]);
    const text = async (name: string) =>
      new TextDecoder().decode(await zip.readEntry(zip.get(name)!));
    assert.equal(await text("lora/version"), "3\n");
    assert.equal(await text("lora/byteorder"), "little");
    for (const e of zip.entries) {
      assert.equal(e.method, 0, e.name);
      assert.equal((await zip.dataOffset(e)) % 64, 0, e.name);
      await zip.readEntry(e); // checks the CRC-32
    }
  } finally {
    file.close();
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("ckpt write: bad input is an error and leaves no file", async () => {
  const path = await tempCkpt();
  const dir = path.slice(0, path.lastIndexOf("/"));
  try {
    const one = { ...f32([2], 1), name: "a" };
    await assert.rejects(writeTorchCheckpoint(path, [one, one]), LorakitError);
    await assert.rejects(
      writeTorchCheckpoint(path, [{ ...one, shape: [3] }]),
      (e: Error) => e instanceof LorakitError && /needs 12 bytes, found 8/.test(e.message),
    );
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ckpt write: PyTorch loads the file (skipped without torch)", async () => {
  if (!(await hasTorch())) {
    console.log(`${PYTHON} has no torch: checked with lorakit's reader only`);
    return;
  }
  const path = await tempCkpt();
  const tensors = sample();
  await writeTorchCheckpoint(path, tensors);
  const script = `
import json, sys, torch
d = torch.load(sys.argv[1], map_location="cpu")
assert type(d) is dict, type(d)
names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
out = {}
for k, v in d.items():
    assert v.is_contiguous() and not v.requires_grad, k
    out[k] = {"dtype": names[v.dtype], "shape": list(v.shape),
              "values": v.float().flatten().tolist()}
try:
    w = torch.load(sys.argv[1], weights_only=True)
    assert list(w) == list(d)
except TypeError:
    pass  # a torch without weights_only
print(json.dumps({"keys": list(d), "tensors": out}))
`;
  try {
    const res = await new Deno.Command(PYTHON, {
      args: ["-c", script, path],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(res.success, new TextDecoder().decode(res.stderr));
    const got = JSON.parse(new TextDecoder().decode(res.stdout));
    assert.deepEqual(got.keys, tensors.map((t) => t.name));
    const ck = await openCkpt(path);
    try {
      for (const t of tensors) {
        const g = got.tensors[t.name];
        assert.equal(g.dtype, t.dtype, t.name);
        assert.deepEqual(g.shape, t.shape, t.name);
        assert.deepEqual(g.values, [...(await ck.readF32(t.name)).data], t.name);
      }
    } finally {
      ck.close();
    }
  } finally {
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});

Deno.test("saveLoraCheckpoint: kohya's keys, save dtype for every tensor, 0-d alpha", async () => {
  const path = await tempCkpt();
  const down = Float32Array.from({ length: 2 * 6 }, (_, i) => i / 7);
  const up = Float32Array.from({ length: 5 * 2 }, (_, i) => -i / 3);
  const convDown = Float32Array.from({ length: 2 * 3 * 9 }, (_, i) => Math.sin(i));
  const convUp = Float32Array.from({ length: 4 * 2 }, (_, i) => Math.cos(i));
  try {
    for (const [precision, dtype] of [["float", "F32"], ["fp16", "F16"], ["bf16", "BF16"]]) {
      await saveLoraCheckpoint(path, [
        {
          prefix: "lora_te_text_model_encoder_layers_0_mlp_fc1",
          down: { shape: [2, 6], data: down },
          up: { shape: [5, 2], data: up },
          alpha: 1,
        },
        {
          prefix: "lora_unet_down_blocks_0_resnets_0_conv1",
          down: { shape: [2, 3, 3, 3], data: convDown },
          up: { shape: [4, 2, 1, 1], data: convUp },
          alpha: 0.5,
        },
      ], { precision: precision as "float" | "fp16" | "bf16" });
      const ck = await openCkpt(path);
      try {
        const te = "lora_te_text_model_encoder_layers_0_mlp_fc1";
        const unet = "lora_unet_down_blocks_0_resnets_0_conv1";
        assert.deepEqual(ck.list(), [
          { name: `${te}.lora_down.weight`, dtype, shape: [2, 6] },
          { name: `${te}.lora_up.weight`, dtype, shape: [5, 2] },
          { name: `${te}.alpha`, dtype, shape: [] },
          { name: `${unet}.lora_down.weight`, dtype, shape: [2, 3, 3, 3] },
          { name: `${unet}.lora_up.weight`, dtype, shape: [4, 2, 1, 1] },
          { name: `${unet}.alpha`, dtype, shape: [] },
        ]);
        assert.deepEqual(
          await ck.readRaw(`${unet}.lora_down.weight`),
          encodeFromF32(dtype as "F32", convDown),
        );
        assert.deepEqual([...(await ck.readF32(`${unet}.alpha`)).data], [0.5]);
      } finally {
        ck.close();
      }
    }
    await assert.rejects(
      saveLoraCheckpoint(path, [{
        prefix: "not_a_lora_key",
        down: { shape: [2, 6], data: down },
        up: { shape: [5, 2], data: up },
        alpha: 1,
      }]),
      LorakitError,
    );
  } finally {
    await Deno.remove(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
});
