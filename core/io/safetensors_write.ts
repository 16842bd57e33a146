/**
 * Writing safetensors files byte-for-byte as the reference library (huggingface/safetensors,
 * `tensor.rs` `prepare`) lays them out, so a file we write equals the one Python would write for
 * the same dict:
 * - tensors sorted by dtype alignment, descending in the library's `Dtype` enum order
 *   (I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL), then by name in UTF-8 byte order;
 * - data offsets contiguous from 0 in that order;
 * - compact JSON (`{"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]}}`),
 *   `__metadata__` first and only when metadata was given (an empty map is written as `{}`);
 * - the header padded with spaces to a multiple of 8 bytes.
 *
 * Metadata keys are written in UTF-8 byte order. Current Python releases keep them in a Rust
 * `HashMap`, whose order changes from run to run, so any order is "what Python writes"; sorted
 * is the deterministic choice, and what releases that used a `BTreeMap` wrote.
 *
 * Writes stream: tensor data is produced, encoded and written one tensor at a time, to a
 * temporary file renamed over the target at the end.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { DTYPE_SIZE, encodeFromF32, isFileDType } from "./dtype.ts";
import { writeAtomic } from "./fs.ts";
import type { FileDType } from "./tensor_source.ts";

/**
 * Largest header accepted (the same cap as the reference Rust implementation). Writers refuse to
 * produce a bigger one; `safetensors.ts` re-exports it and applies it when reading.
 */
export const MAX_HEADER_BYTES = 100_000_000;

/** Tensor bytes: f32 values (encoded to the target dtype) or raw little-endian bytes of it. */
export type TensorPayload = Float32Array | Uint8Array;

/** One tensor to write. */
export interface TensorToWrite {
  /** Key in the file. */
  name: string;
  /** Element type stored in the file. */
  dtype: FileDType;
  /** Dimensions; `[]` for a 0-d scalar. */
  shape: readonly number[];
  /**
   * The data, or a producer called once, when this tensor's turn comes, so callers never hold
   * every weight at once. A `Uint8Array` is always raw bytes already in `dtype` (also for U8/BOOL).
   */
  data: TensorPayload | (() => TensorPayload | Promise<TensorPayload>);
}

/** Descriptors of the tensors to write; their data may still be producers. */
export type TensorsToWrite = Iterable<TensorToWrite> | AsyncIterable<TensorToWrite>;

/** Rank of each dtype in the reference library's `Dtype` enum (it sorts by this, descending). */
const DTYPE_RANK: Readonly<Record<FileDType, number>> = {
  BOOL: 0,
  U8: 1,
  I8: 2,
  I16: 5,
  F16: 7,
  BF16: 8,
  I32: 9,
  F32: 11,
  F64: 12,
  I64: 13,
};

/** Compare strings by their UTF-8 bytes (= code points), as Rust's `String` ordering does. */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // UTF-16 order differs from code point order only where a surrogate meets U+E000..U+FFFF.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}

/** The laid-out file: header bytes (length prefix included) and tensors in write order. */
export interface SafetensorsPlan {
  /** 8-byte length prefix followed by the padded JSON header. */
  header: Uint8Array;
  /** Tensors in the order their bytes follow the header. */
  order: TensorToWrite[];
  /** Byte length of each tensor in `order`. */
  byteLengths: number[];
  /** Total file size in bytes. */
  fileSize: number;
}

/**
 * Validate descriptors and lay out the file (sort, offsets, header). Errors name `path`, the
 * tensor and what was wrong. Does not touch any tensor data.
 */
export function planSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Record<string, string>,
): SafetensorsPlan {
  const seen = new Set<string>();
  for (const t of tensors) {
    const where = `${path}: tensor "${t.name}"`;
    if (typeof t.name !== "string" || t.name === "__metadata__") {
      throw new LorakitError(`${where}: expected a string name other than __metadata__`);
    }
    if (seen.has(t.name)) throw new LorakitError(`${where}: expected unique names, found twice`);
    seen.add(t.name);
    if (!isFileDType(t.dtype)) {
      throw new LorakitError(
        `${where}: expected dtype one of ${Object.keys(DTYPE_SIZE).join(", ")}, found ${t.dtype}`,
      );
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new LorakitError(`${where}: expected shape of non-negative integers, found ${t.shape}`);
    }
    if (!Number.isSafeInteger(numelOf(t.shape) * DTYPE_SIZE[t.dtype])) {
      throw new LorakitError(`${where}: shape [${t.shape}] is too large to store`);
    }
  }
  if (metadata !== undefined) {
    if (metadata === null || typeof metadata !== "object") {
      throw new LorakitError(`${path}: metadata: expected a map of strings`);
    }
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new LorakitError(
          `${path}: metadata key "${k}": expected a string, found ${typeof v}`,
        );
      }
    }
  }
  const order = [...tensors].sort((a, b) =>
    DTYPE_RANK[b.dtype] - DTYPE_RANK[a.dtype] || compareUtf8(a.name, b.name)
  );
  const parts: string[] = [];
  if (metadata !== undefined) {
    const keys = Object.keys(metadata).sort(compareUtf8);
    const fields = keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`);
    parts.push(`"__metadata__":{${fields.join(",")}}`);
  }
  const byteLengths: number[] = [];
  let offset = 0;
  for (const t of order) {
    const n = numelOf(t.shape) * DTYPE_SIZE[t.dtype];
    byteLengths.push(n);
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],` +
        `"data_offsets":[${offset},${offset + n}]}`,
    );
    offset += n;
  }
  // serde_json and JSON.stringify escape strings identically (", \, control characters as
  // \b \f \n \r \t or lowercase \u00xx; nothing else), so this matches byte for byte.
  const json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded > MAX_HEADER_BYTES) {
    throw new LorakitError(
      `${path}: safetensors header would be ${padded} bytes; readers accept at most ${MAX_HEADER_BYTES}`,
    );
  }
  const header = new Uint8Array(8 + padded).fill(0x20, 8 + json.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.set(json, 8);
  return { header, order, byteLengths, fileSize: header.length + offset };
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Produce, check and encode one tensor's bytes. */
async function tensorBytes(
  path: string,
  t: TensorToWrite,
  byteLength: number,
): Promise<Uint8Array> {
  const data = typeof t.data === "function" ? await t.data() : t.data;
  let bytes: Uint8Array;
  if (data instanceof Float32Array) {
    const numel = byteLength / DTYPE_SIZE[t.dtype];
    if (data.length !== numel) {
      throw new LorakitError(
        `${path}: tensor "${t.name}": shape [${t.shape}] needs ${numel} values, found ${data.length}`,
      );
    }
    try {
      bytes = encodeFromF32(t.dtype, data);
    } catch (e) {
      if (e instanceof LorakitError) {
        throw new LorakitError(`${path}: tensor "${t.name}": ${e.message}`);
      }
      throw e;
    }
  } else if (data instanceof Uint8Array) {
    bytes = data;
  } else {
    throw new LorakitError(
      `${path}: tensor "${t.name}": expected a Float32Array or Uint8Array, found ${typeof data}`,
    );
  }
  if (bytes.length !== byteLength) {
    throw new LorakitError(
      `${path}: tensor "${t.name}": shape [${t.shape}] of ${t.dtype} needs ${byteLength} bytes, ` +
        `found ${bytes.length}`,
    );
  }
  return bytes;
}

async function collect(tensors: TensorsToWrite): Promise<TensorToWrite[]> {
  const list: TensorToWrite[] = [];
  for await (const t of tensors) list.push(t);
  return list;
}

/** The file as a stream of chunks: header first, then each tensor, produced when it is needed. */
async function* chunks(path: string, plan: SafetensorsPlan): AsyncGenerator<Uint8Array> {
  yield plan.header;
  for (let i = 0; i < plan.order.length; i++) {
    yield await tensorBytes(path, plan.order[i], plan.byteLengths[i]);
  }
}

/**
 * Write a safetensors file atomically (temporary file, then rename), laid out exactly as the
 * Python `safetensors` library would write the same tensors and metadata. Tensor data is produced
 * and written one tensor at a time; pass producers to keep memory to one tensor.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Record<string, string>,
): Promise<void> {
  const plan = planSafetensors(path, await collect(tensors), metadata);
  await writeAtomic(path, chunks(path, plan));
}

/** The bytes of a safetensors file for `tensors` (in memory; for small files and tests). */
export async function serializeSafetensors(
  tensors: TensorsToWrite,
  metadata?: Record<string, string>,
  label = "<memory>",
): Promise<Uint8Array> {
  const plan = planSafetensors(label, await collect(tensors), metadata);
  const out = new Uint8Array(plan.fileSize);
  let at = 0;
  for await (const chunk of chunks(label, plan)) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}
