/**
 * Small PyTorch checkpoints for the checkpoint targets (several dtypes, a transposed view, an
 * offset view, a Parameter, a state_dict), the layout of their ZIP containers, and the full read
 * every checkpoint target performs.
 *
 * @module
 */
import type { TensorSource } from "../../../core/io/tensor_source.ts";
import type { StorageSpec, TensorSpec } from "../../ckpt_build.ts";
import type { Field, Layout } from "../mutate_bytes.ts";

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Storages of the seed checkpoints. */
export function seedStorages(): Record<string, StorageSpec> {
  return {
    "0": {
      type: "FloatStorage",
      data: bytesOf(Float32Array.from({ length: 12 }, (_, i) => i - 3)),
      elementSize: 4,
    },
    "1": {
      type: "HalfStorage",
      data: bytesOf(new Uint16Array([0x3c00, 0xc000, 0, 0x7bff])),
      elementSize: 2,
    },
    "2": { type: "LongStorage", data: bytesOf(new BigInt64Array([0n, 1n, 2n])), elementSize: 8 },
    "3": { type: "ByteStorage", data: new Uint8Array([1, 2, 3, 250]), elementSize: 1 },
  };
}

/** Tensors of the seed checkpoints: views into {@link seedStorages}. */
export const SEED_TENSORS: TensorSpec[] = [
  { name: "model.w", storage: "0", size: [3, 4] },
  { name: "model.t", storage: "0", size: [4, 3], stride: [1, 4] },
  { name: "model.off", storage: "0", offset: 2, size: [5] },
  { name: "h", storage: "1", size: [2, 2], param: true },
  { name: "ids", storage: "2", size: [1, 3] },
  { name: "b", storage: "3", size: [4] },
];

/** Read every tensor of `src` (raw and as f32), checking the lengths, then close it. */
export async function readEverything(src: TensorSource): Promise<void> {
  try {
    for (const t of src.list()) {
      const numel = t.shape.reduce((a, b) => a * b, 1);
      const f = await src.readF32(t.name);
      if (f.data.length !== numel) {
        throw new Error(`${t.name}: ${f.data.length} values for shape [${t.shape}]`);
      }
      await src.readRaw(t.name);
    }
  } finally {
    src.close();
  }
}

/**
 * The length, size, count and offset fields of a ZIP archive without a comment (as the seeds
 * are written), and its local and central records as chunks.
 */
export function zipLayout(b: Uint8Array): Layout {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: Field[] = [];
  const chunks: [number, number][] = [];
  const f = (at: number, size: 2 | 4 | 8, name: string) =>
    fields.push({ at, size, little: true, name });
  const eocd = b.length - 22;
  f(eocd + 8, 2, "EOCD entries on disk");
  f(eocd + 10, 2, "EOCD entries");
  f(eocd + 12, 4, "EOCD central directory size");
  f(eocd + 16, 4, "EOCD central directory offset");
  f(eocd + 20, 2, "EOCD comment length");
  let cdOffset = v.getUint32(eocd + 16, true);
  let count = v.getUint16(eocd + 10, true);
  if (v.getUint32(eocd - 20, true) === 0x07064b50) {
    const z = Number(v.getBigUint64(eocd - 12, true));
    f(eocd - 12, 8, "ZIP64 locator offset");
    f(z + 24, 8, "ZIP64 entries on disk");
    f(z + 32, 8, "ZIP64 entries");
    f(z + 40, 8, "ZIP64 central directory size");
    f(z + 48, 8, "ZIP64 central directory offset");
    cdOffset = Number(v.getBigUint64(z + 48, true));
    count = Number(v.getBigUint64(z + 32, true));
  }
  let p = cdOffset;
  for (let n = 0; n < count; n++) {
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    const comp = v.getUint32(p + 20, true);
    const lho = v.getUint32(p + 42, true);
    f(p + 20, 4, "central compressed size");
    f(p + 24, 4, "central size");
    f(p + 28, 2, "central name length");
    f(p + 30, 2, "central extra length");
    f(p + 32, 2, "central comment length");
    f(p + 42, 4, "central local header offset");
    const end = p + 46 + nameLen + extraLen + commentLen;
    let e = p + 46 + nameLen;
    let local = lho;
    let compressed = comp;
    while (e + 4 <= p + 46 + nameLen + extraLen) {
      const id = v.getUint16(e, true);
      const len = v.getUint16(e + 2, true);
      f(e + 2, 2, "extra field length");
      if (id === 1) {
        for (let q = e + 4; q + 8 <= e + 4 + len; q += 8) f(q, 8, "ZIP64 extra size/offset");
        if (len >= 24) {
          compressed = Number(v.getBigUint64(e + 12, true));
          local = Number(v.getBigUint64(e + 20, true));
        }
      }
      e += 4 + len;
    }
    chunks.push([p, end]);
    f(local + 18, 4, "local compressed size");
    f(local + 22, 4, "local size");
    f(local + 26, 2, "local name length");
    f(local + 28, 2, "local extra length");
    const lname = v.getUint16(local + 26, true);
    const lextra = v.getUint16(local + 28, true);
    chunks.push([local, local + 30 + lname + lextra + compressed]);
    p = end;
  }
  return { fields, chunks };
}
