import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { DTYPE_SIZE } from "../core/io/dtype.ts";
import { parseSafetensorsBytes, serializeSafetensors } from "../core/io/safetensors.ts";

const enc = new TextEncoder();

/** Small deterministic PRNG (xorshift32) so a failing fuzz case can be replayed from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** A small valid file: several dtypes, a 0-d scalar, an empty tensor, metadata. */
function baseFile(): Promise<Uint8Array> {
  const f = (n: number) => new Float32Array(n).map((_, i) => i - 2);
  return serializeSafetensors([
    { name: "w", dtype: "F32", shape: [2, 3], data: f(6) },
    { name: "h", dtype: "F16", shape: [3], data: f(3) },
    { name: "b", dtype: "BF16", shape: [2, 2], data: f(4) },
    { name: "d", dtype: "F64", shape: [1], data: f(1) },
    { name: "ids", dtype: "I64", shape: [1, 3], data: new Float32Array([0, 1, 2]) },
    { name: "i", dtype: "I32", shape: [2], data: f(2) },
    { name: "m", dtype: "BOOL", shape: [2], data: new Float32Array([0, 1]) },
    { name: "alpha", dtype: "F32", shape: [], data: new Float32Array([4]) },
    { name: "empty", dtype: "F16", shape: [0, 3], data: f(0) },
  ], { format: "pt", note: "x" });
}

const NASTY: unknown[] = [
  -1,
  1.5,
  2 ** 53,
  2 ** 64,
  1e308,
  "F32",
  "F8_E4M3",
  "U16",
  "f32",
  "",
  null,
  true,
  [],
  {},
  [0],
  [0, 1, 2],
  [-1, 2],
  ["1"],
  [2 ** 31, 2 ** 31],
  [1e6, 1e6, 1e6],
  [2 ** 40, 2 ** 40, 0],
  [0, 2 ** 62],
  { dtype: "F32", shape: [], data_offsets: [0, 4] },
];

/** One random mutation of a valid file: byte-level or structural (edited header JSON). */
function mutate(base: Uint8Array, r: () => number): Uint8Array {
  const n = new DataView(base.buffer, base.byteOffset).getUint32(0, true);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const kind = Math.floor(r() * 6);
  if (kind === 0) {
    const out = base.slice();
    for (let k = 1 + Math.floor(r() * 4); k > 0; k--) {
      out[Math.floor(r() * (8 + n))] ^= 1 << Math.floor(r() * 8);
    }
    return out;
  }
  if (kind === 1) return base.slice(0, Math.floor(r() * base.length));
  if (kind === 2) {
    const out = base.slice();
    const v = pick([0, 1, 7, n - 1, n + 1, n + 8, base.length, 2 ** 32 - 1, r() * 2 ** 32]);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, Math.floor(v) >>> 0, true);
    dv.setUint32(4, r() < 0.8 ? 0 : Math.floor(r() * 2 ** 32), true);
    return out;
  }
  if (kind === 3) {
    // Insert or delete a few header bytes without fixing the length field.
    const at = 8 + Math.floor(r() * n);
    const out = new Uint8Array(base.length + 3);
    out.set(base.subarray(0, at));
    out.set(enc.encode(pick(['"', "}", "\\", "\xff"])).subarray(0, 1), at);
    out.set(base.subarray(at + (r() < 0.5 ? 2 : 0)), at + 1);
    return out.subarray(0, out.length - 2);
  }
  // Structural edit: change a field of an entry, add an overlapping entry, or break metadata.
  const header = JSON.parse(new TextDecoder().decode(base.subarray(8, 8 + n)));
  const names = Object.keys(header).filter((k) => k !== "__metadata__");
  const name = pick(names);
  const choice = Math.floor(r() * 6);
  if (choice === 0) header[name].dtype = pick(NASTY);
  else if (choice === 1) header[name].shape = pick(NASTY);
  else if (choice === 2) header[name].data_offsets = pick(NASTY);
  else if (choice === 3) header[name] = pick(NASTY);
  else if (choice === 4) header[`copy_of_${name}`] = { ...header[name] };
  else header.__metadata__ = pick([null, 1, "x", [], { a: 1 }, { a: null }, { a: "b" }]);
  if (kind === 5 && r() < 0.5) {
    // Shift one tensor's range by a little, keeping its size (misplaced or overlapping bytes).
    const e = header[pick(names)];
    if (e && Array.isArray(e.data_offsets) && e.data_offsets.length === 2) {
      const d = Math.floor(r() * 9) - 4;
      e.data_offsets = [e.data_offsets[0] + d, e.data_offsets[1] + d];
    }
  }
  const json = enc.encode(JSON.stringify(header) + " ".repeat(Math.floor(r() * 8)));
  const out = new Uint8Array(8 + json.length + base.length - 8 - n);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(base.subarray(8 + n), 8 + json.length);
  return out;
}

Deno.test("fuzz: mutated headers parse correctly or raise LorakitError, nothing else", async () => {
  const base = await baseFile();
  const seed = Date.now() >>> 0;
  const r = rng(seed);
  let parsed = 0;
  let rejected = 0;
  for (let i = 0; i < 4000; i++) {
    const bytes = mutate(base, r);
    try {
      const st = parseSafetensorsBytes(bytes);
      // Whatever parsed must be self-consistent and readable within the file's bytes.
      let total = 0;
      for (const t of st.list()) {
        const e = st.entry(t.name);
        const numel = t.shape.reduce((a, b) => a * b, 1);
        assert.equal(e.byteLength, numel * DTYPE_SIZE[t.dtype]);
        assert.ok(e.offset >= st.header.dataStart && e.offset + e.byteLength <= bytes.length);
        total += e.byteLength;
        const got = await st.readF32(t.name);
        assert.equal(got.data.length, numel);
      }
      assert.ok(total <= bytes.length);
      parsed++;
    } catch (e) {
      if (!(e instanceof LorakitError)) {
        throw new Error(`seed ${seed}, case ${i}: ${(e as Error).stack}`);
      }
      rejected++;
    }
  }
  // Both outcomes must be common, or the mutations are not exercising the parser.
  assert.ok(parsed > 20 && rejected > 1000, `parsed ${parsed}, rejected ${rejected}`);
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
