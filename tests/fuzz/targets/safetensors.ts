/**
 * safetensors: the u64 header length, the JSON header (dtype, shape, data_offsets, metadata) and
 * the data offsets, through `parseSafetensorsBytes` and a read of every tensor (raw and as f32).
 * Whatever parses must be self-consistent: each tensor inside the data area, its byte length
 * that of its shape and dtype. (This target took over tests/io_safetensors_fuzz_test.ts: its
 * header edits, nasty field values and checks are here.)
 *
 * @module
 */
import { DTYPE_SIZE } from "../../../core/io/dtype.ts";
import { parseSafetensorsBytes, serializeSafetensors } from "../../../core/io/safetensors.ts";
import { mutateBytes } from "../mutate_bytes.ts";
import type { Rng } from "../rng.ts";
import type { FuzzTarget, Seed } from "../target.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Field values a header must refuse or handle: wrong types, negative, huge, overlapping. */
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
  [2 ** 32 - 1, 2 ** 32 + 3],
  [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
  { dtype: "F32", shape: [], data_offsets: [0, 4] },
];

/** Split a file into its header length, parsed header and data; null when it is not one. */
function split(b: Uint8Array): { header: Record<string, unknown>; data: Uint8Array } | null {
  if (b.length < 8) return null;
  const n = new DataView(b.buffer, b.byteOffset).getUint32(0, true);
  if (8 + n > b.length) return null;
  try {
    const header = JSON.parse(dec.decode(b.subarray(8, 8 + n)));
    if (header === null || typeof header !== "object" || Array.isArray(header)) return null;
    return { header, data: b.subarray(8 + n) };
  } catch {
    return null;
  }
}

function join(headerText: string, data: Uint8Array): Uint8Array {
  const json = enc.encode(headerText);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** An edit of the header in its own terms, the length field kept right. */
function editHeader(seed: Seed, r: Rng): Uint8Array {
  const parts = split(seed.bytes);
  if (parts === null) return mutateBytes(seed.bytes, r);
  const { header, data } = parts;
  const h = header as Record<string, Record<string, unknown>>;
  const names = Object.keys(h).filter((k) => k !== "__metadata__");
  if (names.length === 0) return mutateBytes(seed.bytes, r);
  const name = r.pick(names);
  const entry = h[name] !== null && typeof h[name] === "object" ? h[name] : null;
  switch (r.int(11)) {
    case 9: // a valid edit: metadata entries changed or added
    case 10: {
      const old = h.__metadata__;
      const meta =
        (old !== null && typeof old === "object" && !Array.isArray(old) ? old : {}) as Record<
          string,
          unknown
        >;
      meta[r.pick(["note", "format", "ss_x", "k".repeat(1 + r.int(40))])] = r.pick([
        "",
        "pt",
        "\u{1f600}",
        "x".repeat(r.int(300)),
      ]);
      (h as Record<string, unknown>).__metadata__ = meta;
      break;
    }
    case 0:
      if (entry) entry.dtype = r.pick(NASTY);
      break;
    case 1:
      if (entry) entry.shape = r.pick(NASTY);
      break;
    case 2:
      if (entry) entry.data_offsets = r.pick(NASTY);
      break;
    case 3:
      (h as Record<string, unknown>)[name] = r.pick(NASTY);
      break;
    case 4: // a second entry over the same bytes
      (h as Record<string, unknown>)[`copy_of_${name}`] = { ...entry };
      break;
    case 5:
      (h as Record<string, unknown>).__metadata__ = r.pick([
        null,
        1,
        "x",
        [],
        { a: 1 },
        { a: null },
        { a: "b" },
        { ["k".repeat(5000)]: "v".repeat(20000) },
      ]);
      break;
    case 6: { // one tensor's range shifted by a little, its size kept
      const offs = entry?.data_offsets;
      if (Array.isArray(offs) && offs.length === 2) {
        const d = r.int(9) - 4;
        entry!.data_offsets = [offs[0] + d, offs[1] + d];
      }
      break;
    }
    case 7: { // a shape dimension huge or zero, offsets kept
      const shape = entry?.shape;
      if (Array.isArray(shape) && shape.length > 0) {
        shape[r.int(shape.length)] = r.pick([0, 2 ** 31, 2 ** 32, 2 ** 53 - 1, 2 ** 26]);
      }
      break;
    }
    default: { // the data area truncated or grown (offsets kept)
      const cut = r.chance(0.5) ? data.subarray(0, r.int(data.length + 1)) : data;
      const grown = new Uint8Array(cut.length + (r.chance(0.5) ? 0 : r.int(64)));
      grown.set(cut);
      return join(JSON.stringify(h) + " ".repeat(r.int(8)), grown);
    }
  }
  let text = JSON.stringify(h) + " ".repeat(r.int(8));
  if (r.chance(0.1)) {
    // The same key twice in the text (JSON.parse keeps the last).
    const dup = `"${name}":${JSON.stringify(h[name])},`;
    text = `{${dup}${text.slice(1)}`;
  }
  return join(text, data);
}

/** Header bytes inserted or deleted without fixing the length field. */
function shiftHeader(seed: Seed, r: Rng): Uint8Array {
  const b = seed.bytes;
  if (b.length < 9) return mutateBytes(b, r);
  const n = Math.min(new DataView(b.buffer, b.byteOffset).getUint32(0, true), b.length - 8);
  const at = 8 + r.int(Math.max(1, n));
  const ins = enc.encode(r.pick(['"', "}", "\\", "\xff", "[", "0", " "]));
  const del = r.chance(0.5) ? 1 + r.int(2) : 0;
  const out = new Uint8Array(b.length + ins.length - Math.min(del, b.length - at));
  out.set(b.subarray(0, at));
  out.set(ins, at);
  out.set(b.subarray(at + del), at + ins.length);
  return out;
}

export const target: FuzzTarget = {
  name: "safetensors",
  what: "parseSafetensorsBytes, then readRaw and readF32 of every tensor",
  boundText: "4 x input + 64 KiB per buffer (an 8-bit tensor read as f32 is 4x its bytes)",
  allocBound: (n) => 4 * n + 65536,
  async seeds() {
    const f = (n: number) => new Float32Array(n).map((_, i) => i - 2);
    const full = await serializeSafetensors([
      { name: "w", dtype: "F32", shape: [2, 3], data: f(6) },
      { name: "h", dtype: "F16", shape: [3], data: f(3) },
      { name: "b", dtype: "BF16", shape: [2, 2], data: f(4) },
      { name: "d", dtype: "F64", shape: [1], data: f(1) },
      { name: "ids", dtype: "I64", shape: [1, 3], data: new Float32Array([0, 1, 2]) },
      { name: "i", dtype: "I32", shape: [2], data: f(2) },
      { name: "m", dtype: "BOOL", shape: [2], data: new Float32Array([0, 1]) },
      { name: "u", dtype: "U8", shape: [4], data: new Float32Array([0, 1, 2, 255]) },
      { name: "alpha", dtype: "F32", shape: [], data: new Float32Array([4]) },
      { name: "empty", dtype: "F16", shape: [0, 3], data: f(0) },
    ], { format: "pt", note: "x" });
    const small = await serializeSafetensors([
      { name: "lora_unet_a.lora_down.weight", dtype: "F16", shape: [2, 4], data: f(8) },
      { name: "lora_unet_a.lora_up.weight", dtype: "F16", shape: [4, 2], data: f(8) },
    ]);
    const lengthField = { at: 0, size: 8 as const, little: true, name: "header length" };
    return [full, small].map((bytes) => ({
      bytes,
      layout: { fields: [lengthField], chunks: [] },
    }));
  },
  structural: [editHeader, editHeader, shiftHeader],
  async run(input) {
    const st = parseSafetensorsBytes(input, "fuzz.safetensors");
    let total = 0;
    for (const t of st.list()) {
      const e = st.entry(t.name);
      const numel = t.shape.reduce((a, b) => a * b, 1);
      if (e.byteLength !== numel * DTYPE_SIZE[t.dtype]) {
        throw new Error(`${t.name}: ${e.byteLength} bytes for shape [${t.shape}] of ${t.dtype}`);
      }
      if (e.offset < st.header.dataStart || e.offset + e.byteLength > input.length) {
        throw new Error(`${t.name}: bytes ${e.offset}+${e.byteLength} outside the file`);
      }
      total += e.byteLength;
      const raw = await st.readRaw(t.name);
      const f32 = await st.readF32(t.name);
      if (raw.length !== e.byteLength || f32.data.length !== numel) {
        throw new Error(`${t.name}: read ${raw.length} bytes / ${f32.data.length} values`);
      }
    }
    if (total > input.length) throw new Error(`tensors hold ${total} bytes of ${input.length}`);
    st.close();
  },
};
