import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { openCkpt } from "../core/io/ckpt.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import type { TensorSource } from "../core/io/tensor_source.ts";
import {
  legacyCkpt,
  OP,
  type Pk,
  rng,
  type StorageSpec,
  type TensorSpec,
  zipCkpt,
} from "./ckpt_build.ts";
import { fixture } from "./fixtures.ts";

Deno.test("ckpt: sd1-tiny model.ckpt holds the same tensors, bit for bit, as model.safetensors", async () => {
  const ckptPath = fixture("sd1-tiny/model.ckpt");
  const stPath = fixture("sd1-tiny/model.safetensors");
  if (ckptPath === null || stPath === null) return;
  const ck = await openCkpt(ckptPath);
  const st = await openSafetensors(stPath);
  try {
    // The README: same state dict, plus the model_ema scalars real checkpoints carry.
    const stNames = st.list().map((t) => t.name);
    const extras = ck.list().map((t) => t.name).filter((n) => !st.has(n));
    assert.deepEqual(extras.sort(), ["model_ema.decay", "model_ema.num_updates"]);
    assert.equal(ck.list().length, stNames.length + 2);
    for (const name of stNames) {
      assert.deepEqual(ck.info(name), st.info(name), name);
      assert.deepEqual(await ck.readRaw(name), await st.readRaw(name), name);
    }
    const ids = await ck.readF32("cond_stage_model.transformer.text_model.embeddings.position_ids");
    assert.deepEqual([...ids.data], Array.from({ length: 77 }, (_, i) => i));
    assert.deepEqual(ck.info("model_ema.decay"), {
      name: "model_ema.decay",
      dtype: "F32",
      shape: [],
    });
    assert.ok(Math.abs((await ck.readF32("model_ema.decay")).data[0] - 0.9999) < 1e-6);
    assert.equal(ck.info("model_ema.num_updates").dtype, "I32");
    assert.ok(!ck.has("epoch") && !ck.has("global_step"), "non-tensor values are skipped");
    assert.deepEqual(ck.metadata, {});
  } finally {
    ck.close();
    st.close();
  }
});

const f32 = (xs: number[]): StorageSpec => ({
  type: "FloatStorage",
  data: new Uint8Array(new Float32Array(xs).buffer),
  elementSize: 4,
});
const iota = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Row-major reference of a strided view (what torch's `.contiguous()` gives). */
function gathered(src: number[], offset: number, size: number[], stride: number[]): number[] {
  const out: number[] = [];
  const rec = (d: number, at: number) => {
    if (d === size.length) return void out.push(src[at]);
    for (let i = 0; i < size[d]; i++) rec(d + 1, at + i * stride[d]);
  };
  rec(0, offset);
  return out;
}

const STORAGES: Record<string, StorageSpec> = {
  "0": f32(iota(6)),
  "1": {
    type: "HalfStorage",
    data: new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x00, 0x7c]),
    elementSize: 2,
  },
  "2": {
    type: "BFloat16Storage",
    data: new Uint8Array([0x80, 0x3f, 0x40, 0xc0, 0, 0]),
    elementSize: 2,
  },
  "3": {
    type: "LongStorage",
    data: new Uint8Array(new BigInt64Array([0n, 1n, -7n, 2n ** 40n]).buffer),
    elementSize: 8,
  },
  "4": f32(iota(120).map((i) => i * 0.5)),
};
const TENSORS: TensorSpec[] = [
  { name: "w", storage: "0", size: [2, 3] },
  { name: "wt", storage: "0", size: [3, 2], stride: [1, 3] }, // transposed view, shared storage
  { name: "row", storage: "0", offset: 3, size: [3] },
  { name: "col", storage: "0", offset: 1, size: [2], stride: [3] },
  { name: "h", storage: "1", size: [2, 2], param: true },
  { name: "b", storage: "2", size: [3] },
  { name: "ids", storage: "3", size: [1, 4] },
  { name: "s", storage: "0", offset: 5, size: [] },
  { name: "empty", storage: "0", size: [0, 3] },
  { name: "perm", storage: "4", size: [2, 4, 5, 3], stride: [60, 1, 4, 20] }, // NCHW -> permuted
  { name: "bcast", storage: "0", offset: 2, size: [2, 3], stride: [0, 1] },
];

async function checkSynthetic(src: TensorSource): Promise<void> {
  assert.deepEqual(src.list().map((t) => t.name), TENSORS.map((t) => t.name));
  const v = async (n: string) => [...(await src.readF32(n)).data];
  assert.deepEqual(await v("w"), iota(6));
  assert.deepEqual(await v("wt"), [0, 3, 1, 4, 2, 5]);
  assert.deepEqual(await v("row"), [3, 4, 5]);
  assert.deepEqual(await v("col"), [1, 4]);
  assert.deepEqual(src.info("h"), { name: "h", dtype: "F16", shape: [2, 2] });
  assert.deepEqual(await v("h"), [1, -2, 0.5, Infinity]);
  assert.deepEqual(await src.readRaw("h"), STORAGES["1"].data);
  assert.deepEqual(await v("b"), [1, -3, 0]);
  assert.equal(src.info("ids").dtype, "I64");
  assert.deepEqual(await v("ids"), [0, 1, -7, 2 ** 40]);
  assert.deepEqual(await src.readF32("s"), { shape: [], data: new Float32Array([5]) });
  assert.deepEqual(await src.readF32("empty"), { shape: [0, 3], data: new Float32Array(0) });
  const perm = TENSORS.find((t) => t.name === "perm")!;
  const want = gathered(iota(120).map((i) => i * 0.5), 0, perm.size, perm.stride!);
  assert.deepEqual(await v("perm"), want);
  assert.deepEqual(await v("bcast"), [2, 3, 4, 2, 3, 4]);
  assert.ok(!src.has("epoch"));
  await assert.rejects(() => src.readF32("nope"), /no tensor named 'nope'/);
}

async function withFile(bytes: Uint8Array, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "lorakit_ckpt_" });
  try {
    const path = `${dir}/model.ckpt`;
    await Deno.writeFile(path, bytes);
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function openBytes(bytes: Uint8Array): Promise<TensorSource> {
  let src: TensorSource | undefined;
  await withFile(bytes, async (p) => {
    src = await openCkpt(p);
    // Read everything while the file exists.
    for (const t of src.list()) await src.readRaw(t.name);
  });
  return src!;
}

const variants: [string, () => Promise<Uint8Array>][] = [
  [
    "zip, state_dict, folder 'archive'",
    () => zipCkpt("archive", TENSORS, STORAGES, { stateDict: true }),
  ],
  [
    "zip64 + deflate, bare dict, folder 'my_model'",
    () => zipCkpt("my_model", TENSORS, STORAGES, { zip64: true, deflate: true }),
  ],
  [
    "legacy (non-zip) format",
    () => Promise.resolve(legacyCkpt(TENSORS, STORAGES, { stateDict: true })),
  ],
];
for (const [what, make] of variants) {
  Deno.test(`ckpt: views, dtypes and strides read right: ${what}`, async () => {
    await withFile(await make(), async (path) => {
      const src = await openCkpt(path);
      try {
        await checkSynthetic(src);
      } finally {
        src.close();
      }
    });
  });
}

Deno.test("ckpt: big-endian checkpoints are byte-swapped to little-endian", async () => {
  const swap = (s: StorageSpec): StorageSpec => {
    const d = s.data.slice();
    for (let i = 0; i < d.length; i += s.elementSize) d.subarray(i, i + s.elementSize).reverse();
    return { ...s, data: d };
  };
  const be = Object.fromEntries(Object.entries(STORAGES).map(([k, s]) => [k, swap(s)]));
  await withFile(await zipCkpt("archive", TENSORS, be, { byteorder: "big" }), async (path) => {
    const src = await openCkpt(path);
    await checkSynthetic(src);
    src.close();
  });
});

Deno.test("ckpt: nested dicts are flattened with '.', other values skipped", async () => {
  const bytes = await zipCkpt("archive", [{ name: "a", storage: "0", size: [6] }], STORAGES, {
    extra: (pk) => {
      pk.str("model").op(OP.EMPTY_DICT).str("inner").global("torch._utils", "_rebuild_tensor_v2")
        .op(OP.MARK, OP.MARK).str("storage").global("torch", "FloatStorage").str("0").str("cpu")
        .int(6).op(OP.TUPLE, OP.BINPERSID).int(1).tuple([2]).tuple([1]).op(OP.NEWFALSE)
        .orderedDict().op(OP.TUPLE, OP.REDUCE, OP.SETITEM);
      pk.str("lr").int(3).str("name").str("text").str("callbacks").op(OP.EMPTY_DICT)
        .global("pytorch_lightning.callbacks.model_checkpoint", "ModelCheckpoint")
        .op(OP.EMPTY_DICT, OP.SETITEM);
    },
  });
  const src = await openBytes(bytes);
  assert.deepEqual(src.list().map((t) => t.name), ["a", "model.inner"]);
  src.close();
});

async function rejectsWith(bytes: Uint8Array, re: RegExp): Promise<void> {
  await withFile(bytes, async (path) => {
    await assert.rejects(async () => {
      const src = await openCkpt(path);
      try {
        for (const t of src.list()) await src.readRaw(t.name);
      } finally {
        src.close();
      }
    }, (e: unknown) => e instanceof LorakitError && re.test(e.message) && e.message.includes(path));
  });
}

Deno.test("ckpt: hostile and malformed checkpoints are LorakitErrors naming the file", async () => {
  const one: TensorSpec[] = [{ name: "w", storage: "0", size: [2, 3] }];
  const evil = (pk: Pk) =>
    pk.str("x").stackGlobal("os", "system").str("rm -rf /").op(OP.TUPLE1, OP.REDUCE);
  await rejectsWith(
    await zipCkpt("archive", one, STORAGES, { stateDict: true, extra: evil }),
    /refusing to load global 'os\.system'/,
  );
  await rejectsWith(
    legacyCkpt(one, STORAGES, { extra: evil }),
    /refusing to load global 'os\.system'/,
  );
  // A view past the end of its storage.
  await rejectsWith(
    await zipCkpt("archive", [{ name: "w", storage: "0", offset: 4, size: [2, 3] }], STORAGES),
    /tensor 'w'.*reaches element 9 of storage '0', which holds 6/,
  );
  // A storage entry that is missing from the archive.
  const missing = await zipCkpt("archive", one, { "0": STORAGES["0"] });
  const renamed = missing.slice();
  const at = findBytes(renamed, "archive/data/0");
  for (let i = at; i >= 0; i = findBytes(renamed, "archive/data/0", i + 1)) renamed[i + 13] = 0x39;
  await rejectsWith(renamed, /storage '0' is referenced but entry 'archive\/data\/0' is missing/);
  // A dict that contains itself.
  const cyc = await zipCkpt("archive", one, STORAGES, {
    extra: (pk) =>
      pk.str("loop").op(OP.EMPTY_DICT, OP.BINPUT, 200).str("me").op(OP.BINGET, 200, OP.SETITEM),
  });
  await rejectsWith(cyc, /nested deeper than/);
  await rejectsWith(
    new TextEncoder().encode("model: not a checkpoint\n"),
    /not a PyTorch checkpoint/,
  );
  await rejectsWith(await zipCkpt("archive", [], STORAGES), /no tensors found/);
  const tar = new Uint8Array(1024);
  tar.set(new TextEncoder().encode("ustar"), 257);
  await rejectsWith(tar, /tar-based checkpoint format/);
});

Deno.test("ckpt: truncated and corrupted files never escape as anything but LorakitError", async () => {
  const good = await zipCkpt("archive", TENSORS, STORAGES, { stateDict: true });
  const legacy = legacyCkpt(TENSORS, STORAGES, { stateDict: true });
  const rand = rng(7);
  const dir = await Deno.makeTempDir({ prefix: "lorakit_ckpt_fuzz_" });
  try {
    for (let iter = 0; iter < 300; iter++) {
      const base = iter % 2 === 0 ? good : legacy;
      let bytes: Uint8Array;
      if (iter % 3 === 0) bytes = base.slice(0, Math.floor(rand() * base.length));
      else {
        bytes = base.slice();
        for (let k = 0; k < 4; k++) {
          bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256);
        }
      }
      const path = `${dir}/${iter}.ckpt`;
      await Deno.writeFile(path, bytes);
      try {
        const src = await openCkpt(path);
        for (const t of src.list()) await src.readF32(t.name);
        src.close();
      } catch (e) {
        if (!(e instanceof LorakitError)) throw new Error(`iteration ${iter}: ${e}`);
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

function findBytes(hay: Uint8Array, needle: string, from = 0): number {
  const n = new TextEncoder().encode(needle);
  outer: for (let i = from; i + n.length <= hay.length; i++) {
    for (let j = 0; j < n.length; j++) if (hay[i + j] !== n[j]) continue outer;
    return i;
  }
  return -1;
}
