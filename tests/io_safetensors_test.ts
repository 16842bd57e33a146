import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import {
  bf16BitsToF32,
  DTYPE_SIZE,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "../core/io/dtype.ts";
import {
  compareUtf8,
  MAX_HEADER_BYTES,
  openSafetensors,
  parseSafetensorsBytes,
  serializeSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../core/io/safetensors.ts";
import type { FileDType } from "../core/io/tensor_source.ts";
import { checkAgainstFixture, TINY } from "../scripts/make_big_checkpoint.ts";
import { fixture } from "./fixtures.ts";

const enc = new TextEncoder();
const ALL_DTYPES = Object.keys(DTYPE_SIZE) as FileDType[];

function u16(bytes: Uint8Array): number[] {
  return [...new Uint16Array(bytes.slice().buffer)];
}

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "lorakit_st_" });
}

/** One small tensor of every dtype, a 0-d scalar and an empty tensor. */
function sampleTensors(): TensorToWrite[] {
  const out: TensorToWrite[] = ALL_DTYPES.map((dtype, i) => ({
    name: `t.${dtype.toLowerCase()}`,
    dtype,
    shape: [2, 3],
    data: new Float32Array(
      dtype === "BOOL"
        ? [0, 1, 1, 0, 1, 1]
        : dtype === "U8"
        ? [0, 1, 255, 2, i, 3]
        : dtype.startsWith("I")
        ? [0, 1, -1, 2, i, -3]
        : [0, 1, -1, 2.5, i, -3.3],
    ),
  }));
  out.push({ name: "alpha", dtype: "F32", shape: [], data: new Float32Array([4]) });
  out.push({ name: "half_scalar", dtype: "F16", shape: [], data: new Float32Array([0.1]) });
  out.push({ name: "empty", dtype: "BF16", shape: [0, 3], data: new Float32Array(0) });
  out.push({
    name: "rounding",
    dtype: "BF16",
    shape: [2],
    data: new Float32Array(new Uint32Array([0x3f808000, 0x3f818000]).buffer),
  });
  return out;
}

Deno.test("round trip of every dtype, 0-d and empty tensors, through bytes and through a file", async () => {
  const tensors = sampleTensors();
  const meta = { format: "pt", ss_note: 'héllo "quoted"\n' };
  const bytes = await serializeSafetensors(tensors, meta);
  const dir = await tempDir();
  const path = `${dir}/rt.safetensors`;
  await writeSafetensors(path, tensors, meta);
  assert.deepEqual(await Deno.readFile(path), bytes);
  for (const src of [parseSafetensorsBytes(bytes), await openSafetensors(path)]) {
    assert.deepEqual(src.metadata, meta);
    assert.equal(src.list().length, tensors.length);
    for (const t of tensors) {
      const info = src.info(t.name);
      assert.equal(info.dtype, t.dtype);
      assert.deepEqual(info.shape, t.shape);
      const got = await src.readF32(t.name);
      assert.deepEqual(got.shape, t.shape);
      const want = t.data as Float32Array;
      const rounded = t.dtype === "F16"
        ? [...want].map((v) => f16BitsToF32(f32ToF16Bits(v)))
        : t.dtype === "BF16"
        ? [...want].map((v) => bf16BitsToF32(f32ToBf16Bits(v)))
        : [...want];
      assert.deepEqual([...got.data], rounded.map(Math.fround), t.name);
    }
    assert.deepEqual(u16(await src.readRaw("rounding")), [0x3f80, 0x3f82]);
    assert.deepEqual(u16(await src.readRaw("half_scalar")), [0x2e66]);
    src.close();
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("layout: header bytes, padding and order follow the reference library", async () => {
  const data = new Float32Array([0, 1, 2, 3, 4, 5]);
  const dataBytes = new Uint8Array(data.buffer);
  const file = (json: string, pad: number, tail: Uint8Array = new Uint8Array(0)) => {
    const h = enc.encode(json + " ".repeat(pad));
    const out = new Uint8Array(8 + h.length + tail.length);
    new DataView(out.buffer).setUint32(0, h.length, true);
    out.set(h, 8);
    out.set(tail, 8 + h.length);
    return out;
  };
  // 64-byte JSON: no padding.
  assert.deepEqual(
    await serializeSafetensors([{ name: "attn.0", dtype: "F32", shape: [1, 2, 3], data }]),
    file('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}', 0, dataBytes),
  );
  // 65-byte JSON: 7 spaces so the data starts 8-aligned.
  assert.deepEqual(
    await serializeSafetensors([{ name: "attn0", dtype: "F32", shape: [1, 1, 2, 3], data }]),
    file('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}', 7, dataBytes),
  );
  assert.deepEqual(await serializeSafetensors([]), file("{}", 6));
  assert.deepEqual(
    await serializeSafetensors([], { framework: "pt" }),
    file('{"__metadata__":{"framework":"pt"}}', 5),
  );
  assert.deepEqual(await serializeSafetensors([], {}), file('{"__metadata__":{}}', 5));

  // Order: dtype alignment descending in the library's enum order, then name by UTF-8 bytes;
  // metadata keys sorted, first.
  const mk = (name: string, dtype: FileDType): TensorToWrite => ({
    name,
    dtype,
    shape: [1],
    data: new Uint8Array(DTYPE_SIZE[dtype]),
  });
  const shuffled = [
    mk("b", "BOOL"),
    mk("u", "U8"),
    mk("i8", "I8"),
    mk("x", "F32"),
    mk("a", "F32"),
    mk("\u{1F600}", "F16"),
    mk("\uFF5E", "F16"),
    mk("B", "F16"),
    mk("h", "I16"),
    mk("bf", "BF16"),
    mk("i32", "I32"),
    mk("d", "F64"),
    mk("l", "I64"),
  ];
  const bytes = await serializeSafetensors(shuffled, { z: "1", a: "2" });
  const n = new DataView(bytes.buffer).getUint32(0, true);
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  assert.equal(n % 8, 0);
  assert.ok(text.startsWith('{"__metadata__":{"a":"2","z":"1"},'));
  const src = parseSafetensorsBytes(bytes);
  assert.deepEqual(src.list().map((t) => t.name), [
    "l",
    "d",
    "a",
    "x",
    "i32",
    "bf",
    "B",
    "\uFF5E",
    "\u{1F600}",
    "h",
    "i8",
    "u",
    "b",
  ]);
  // Contiguous offsets, each tensor aligned to its element size in the file.
  let at = 8 + n;
  for (const t of src.list()) {
    const e = src.entry(t.name);
    assert.equal(e.offset, at);
    assert.equal(e.offset % DTYPE_SIZE[t.dtype], 0);
    at += e.byteLength;
  }
  assert.equal(at, bytes.length);
  assert.ok(compareUtf8("\uFF5E", "\u{1F600}") < 0 && "\uFF5E" > "\u{1F600}");
});

Deno.test("byte-compatible with Python safetensors when it is installed", async () => {
  const probe = new Deno.Command("python3", {
    args: ["-c", "import safetensors.numpy, numpy"],
    stdout: "null",
    stderr: "null",
  });
  const ok = await probe.output().then((o) => o.success, () => false);
  if (!ok) {
    console.log("python3 with safetensors and numpy not available: layout checked by hand above");
    return;
  }
  const script = `
import sys, numpy as np
from safetensors.numpy import save
d = {
  "w.f64": np.array([1.5, -2.0], dtype=np.float64), "w.f32": np.arange(6, dtype=np.float32).reshape(2, 3),
  "alpha": np.array(4.0, dtype=np.float32), "w.f16": np.array([0.1, 65504], dtype=np.float16),
  "ids": np.arange(5, dtype=np.int64), "i32": np.array([-7], dtype=np.int32),
  "i16": np.array([3], dtype=np.int16), "i8": np.array([-1], dtype=np.int8),
  "u8": np.array([200], dtype=np.uint8), "mask": np.array([True, False]), "z": np.zeros((0, 3), np.float32),
}
sys.stdout.buffer.write(save(d, metadata={"format": "pt"}))
`;
  const out = await new Deno.Command("python3", { args: ["-c", script], stdout: "piped" }).output();
  assert.ok(out.success);
  const mine = await serializeSafetensors([
    { name: "w.f64", dtype: "F64", shape: [2], data: new Float32Array([1.5, -2]) },
    { name: "w.f32", dtype: "F32", shape: [2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) },
    { name: "alpha", dtype: "F32", shape: [], data: new Float32Array([4]) },
    { name: "w.f16", dtype: "F16", shape: [2], data: new Float32Array([0.1, 65504]) },
    { name: "ids", dtype: "I64", shape: [5], data: new Float32Array([0, 1, 2, 3, 4]) },
    { name: "i32", dtype: "I32", shape: [1], data: new Float32Array([-7]) },
    { name: "i16", dtype: "I16", shape: [1], data: new Float32Array([3]) },
    { name: "i8", dtype: "I8", shape: [1], data: new Float32Array([-1]) },
    { name: "u8", dtype: "U8", shape: [1], data: new Float32Array([200]) },
    { name: "mask", dtype: "BOOL", shape: [2], data: new Float32Array([1, 0]) },
    { name: "z", dtype: "F32", shape: [0, 3], data: new Float32Array(0) },
  ], { format: "pt" });
  assert.deepEqual(mine, out.stdout);
});

Deno.test("sd1-tiny fixture: keys, dtypes, shapes, int64 position_ids, metadata", async () => {
  const path = fixture("sd1-tiny/model.safetensors");
  if (path === null) return;
  const st = await openSafetensors(path);
  try {
    const list = st.list();
    assert.equal(list.length, 984);
    assert.equal(list.filter((t) => t.dtype === "F32").length, 983);
    assert.deepEqual(st.metadata, { format: "pt" });
    assert.deepEqual(st.info("model.diffusion_model.input_blocks.0.0.weight").shape, [32, 4, 3, 3]);
    const tok = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight";
    assert.deepEqual(st.info(tok).shape, [49408, 32]);
    const pos = await st.readF32("cond_stage_model.transformer.text_model.embeddings.position_ids");
    assert.deepEqual(pos.shape, [1, 77]);
    assert.deepEqual([...pos.data], Array.from({ length: 77 }, (_, i) => i));
    const betas = await st.readF32("betas");
    assert.equal(betas.data.length, 1000);
    assert.equal(betas.data[0], Math.fround(0.00085));
    assert.equal(betas.data[999], Math.fround(0.012));
    assert.ok(!st.has("nope"));
    assert.throws(() => st.info("nope"), LorakitError);
    // Concurrent reads on one handle return each tensor's own bytes.
    const names = list.slice(0, 40).map((t) => t.name);
    const together = await Promise.all(names.map((n) => st.readRaw(n)));
    for (let i = 0; i < names.length; i++) {
      assert.deepEqual(together[i], await st.readRaw(names[i]));
    }

    // Rewriting every tensor through our writer reproduces the fixture's data area exactly
    // (same order: int64 first, then names sorted), while streaming one tensor at a time.
    const dir = await tempDir();
    const out = `${dir}/copy.safetensors`;
    let inFlight = 0;
    let maxInFlight = 0;
    await writeSafetensors(
      out,
      list.map((t) => ({
        ...t,
        data: async () => {
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          const raw = await st.readRaw(t.name);
          inFlight--;
          return raw;
        },
      })),
      st.metadata,
    );
    assert.equal(maxInFlight, 1);
    const copy = await openSafetensors(out);
    const a = await Deno.readFile(path);
    const b = await Deno.readFile(out);
    assert.deepEqual(b.subarray(copy.header.dataStart), a.subarray(st.header.dataStart));
    copy.close();
    await Deno.remove(dir, { recursive: true });
  } finally {
    st.close();
  }
});

Deno.test("bad files: truncated, tiny, huge header length, missing", async () => {
  const good = await serializeSafetensors(sampleTensors(), { format: "pt" });
  const dir = await tempDir();
  const p = `${dir}/bad.safetensors`;
  const expectBad = async (bytes: Uint8Array, pattern: RegExp) => {
    await Deno.writeFile(p, bytes);
    await assert.rejects(() => openSafetensors(p), (e: unknown) => {
      assert.ok(e instanceof LorakitError, String(e));
      assert.match(e.message, pattern);
      assert.ok(e.message.includes(p), e.message);
      return true;
    });
  };
  await expectBad(good.subarray(0, good.length - 1), /outside the data area|truncated/);
  await expectBad(good.subarray(0, 100), /header length|truncated/);
  await expectBad(good.subarray(0, 5), /at least 8 bytes/);
  for (const n of [2n ** 63n, 2n ** 40n, BigInt(MAX_HEADER_BYTES + 1), BigInt(good.length)]) {
    const bytes = good.slice();
    new DataView(bytes.buffer).setBigUint64(0, n, true);
    await expectBad(bytes, /header length field/);
  }
  await assert.rejects(() => openSafetensors(`${dir}/missing.safetensors`), LorakitError);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("writer: validation, atomic replace, producer failure leaves the old file", async () => {
  const dir = await tempDir();
  const p = `${dir}/w.safetensors`;
  const one = (over: Partial<TensorToWrite>): TensorToWrite[] => [{
    name: "a",
    dtype: "F32",
    shape: [2],
    data: new Float32Array(2),
    ...over,
  }];
  await writeSafetensors(p, one({}));
  const before = await Deno.readFile(p);
  const bad: TensorToWrite[][] = [
    [...one({}), ...one({})], // duplicate
    one({ name: "__metadata__" }),
    one({ dtype: "U16" as FileDType }),
    one({ shape: [-1] }),
    one({ shape: [1.5] }),
    one({ data: new Float32Array(3) }),
    one({ data: new Uint8Array(7) }),
    one({ dtype: "I32", data: new Float32Array([0.5, 1]) }),
    one({
      data: () => {
        throw new LorakitError("producer failed");
      },
    }),
  ];
  for (const tensors of bad) {
    await assert.rejects(() => writeSafetensors(p, tensors), LorakitError);
  }
  await assert.rejects(
    () => writeSafetensors(p, one({}), { k: 1 as unknown as string }),
    LorakitError,
  );
  assert.deepEqual(await Deno.readFile(p), before);
  const left = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert.deepEqual(left, ["w.safetensors"]);
  // An async iterable of descriptors works too.
  async function* gen(): AsyncGenerator<TensorToWrite> {
    yield { name: "b", dtype: "F16", shape: [1], data: () => new Float32Array([1]) };
  }
  await writeSafetensors(p, gen());
  const back = await openSafetensors(p);
  assert.deepEqual(back.list().map((t) => t.name), ["b"]);
  back.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readF32Into / readRawInto: chunked conversion of big tensors, concurrent reads", async () => {
  // 5M halves = 10 MB: more than the 8 MiB conversion scratch, so it converts in two chunks.
  const n = 5_000_000;
  const halves = new Uint16Array(n).map((_, i) => (i * 7919) & 0x7bff);
  const bf = new Uint16Array(n).map((_, i) => 0x3f80 + (i % 97));
  const f32 = new Float32Array(1000).map((_, i) => i / 3);
  const tensors: TensorToWrite[] = [
    { name: "h", dtype: "F16", shape: [n], data: new Uint8Array(halves.buffer) },
    { name: "b", dtype: "BF16", shape: [n / 1000, 1000], data: new Uint8Array(bf.buffer) },
    { name: "f", dtype: "F32", shape: [10, 100], data: f32 },
  ];
  const dir = await tempDir();
  const path = `${dir}/big.safetensors`;
  await writeSafetensors(path, tensors);
  const st = await openSafetensors(path);
  try {
    // Concurrent conversions share one scratch buffer and must not mix their chunks.
    const [h, b, f] = await Promise.all([st.readF32("h"), st.readF32("b"), st.readF32("f")]);
    for (let i = 0; i < n; i += 9973) {
      assert.equal(h.data[i], f16BitsToF32(halves[i]));
      assert.equal(b.data[i], bf16BitsToF32(bf[i]));
    }
    assert.equal(h.data[n - 1], f16BitsToF32(halves[n - 1]));
    assert.deepEqual(f.data, f32);
    // Into caller-owned buffers, at an offset inside a larger allocation.
    const big = new Float32Array(n + 8);
    await st.readF32Into("h", big.subarray(8));
    assert.deepEqual(big.subarray(8), h.data);
    const raw = new Uint8Array(4000);
    await st.readRawInto("f", raw);
    assert.deepEqual(raw, new Uint8Array(f32.buffer));
    await assert.rejects(() => st.readF32Into("f", new Float32Array(999)), LorakitError);
    await assert.rejects(() => st.readRawInto("f", new Uint8Array(1)), LorakitError);
  } finally {
    st.close();
  }
  await assert.rejects(() => st.readF32("f"), /after close/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("make_big_checkpoint's LDM key list reproduces the tiny fixtures exactly", async () => {
  for (const v of ["sd1", "sd2"] as const) {
    const path = fixture(`${v}-tiny/model.safetensors`);
    if (path === null) return;
    assert.deepEqual(await checkAgainstFixture(path, TINY[v]), [], v);
  }
});

Deno.test("header validation: each problem is a LorakitError naming the key", async () => {
  const base = await serializeSafetensors([
    { name: "a", dtype: "F32", shape: [2], data: new Float32Array(2) },
    { name: "b", dtype: "F32", shape: [2], data: new Float32Array(2) },
  ]);
  const data = base.subarray(base.length - 16);
  const withHeader = (header: unknown, raw?: string) => {
    const json = enc.encode(raw ?? JSON.stringify(header));
    const out = new Uint8Array(8 + json.length + data.length);
    new DataView(out.buffer).setUint32(0, json.length, true);
    out.set(json, 8);
    out.set(data, 8 + json.length);
    return out;
  };
  const e = (dtype: unknown, shape: unknown, offsets: unknown) => ({
    dtype,
    shape,
    data_offsets: offsets,
  });
  const cases: [unknown, RegExp][] = [
    [{ a: e("F8_E4M3", [2], [0, 2]) }, /key "a": expected dtype one of .* found "F8_E4M3"/],
    [{ a: e("F32", [-2], [0, 8]) }, /key "a": expected shape .* non-negative/],
    [{ a: e("F32", [2 ** 40, 2 ** 40], [0, 8]) }, /key "a": shape .* needs more than the file/],
    [{ a: e("F32", [5], [0, 20]) }, /key "a": data_offsets \[0, 20\] lie outside/],
    [{ a: e("F32", [2], [8, 0]) }, /key "a": data_offsets/],
    [{ a: e("F32", [1], [0, 8]) }, /key "a": shape \[1\] of F32 needs 4 bytes/],
    [{ a: e("F32", [2], [0, 8]), b: e("F32", [1], [4, 8]) }, /"a" and "b" overlap/],
    [{ a: e("F32", [2], [0, 8]), __metadata__: { k: 1 } }, /"__metadata__", entry "k"/],
    [{ a: e("F32", [2], [0, 8]), __metadata__: "x" }, /"__metadata__": expected a map/],
    [{ a: [1, 2] }, /key "a": expected \{dtype, shape, data_offsets\}/],
    [[1, 2], /expected a JSON object, found an array/],
  ];
  for (const [header, pattern] of cases) {
    assert.throws(() => parseSafetensorsBytes(withHeader(header), "x.safetensors"), (err) => {
      assert.ok(err instanceof LorakitError, String(err));
      assert.match(err.message, pattern);
      assert.ok(err.message.startsWith("x.safetensors: "));
      return true;
    });
  }
  assert.throws(() => parseSafetensorsBytes(withHeader(null, '{"a":')), /invalid JSON/);
  const latin1 = withHeader(null, '{"\xff":1}');
  latin1[10] = 0xff;
  assert.throws(() => parseSafetensorsBytes(latin1), /UTF-8/);
  // Gaps and empty tensors are fine; a 0-d tensor needs exactly one element.
  const ok = parseSafetensorsBytes(
    withHeader({ a: e("F32", [], [4, 8]), z: e("I64", [0, 5], [8, 8]), __metadata__: {} }),
  );
  assert.deepEqual(ok.list().map((t) => t.name), ["a", "z"]);
});
