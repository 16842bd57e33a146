/**
 * Reading safetensors files: an 8-byte little-endian header length, a UTF-8 JSON header mapping
 * each tensor name to `{dtype, shape, data_offsets}` (plus an optional `__metadata__` string map),
 * then the raw little-endian tensor bytes.
 *
 * The header is the untrusted part, so all of it is validated before any tensor byte is read:
 * every offset, size and shape is checked against the file's real size, which bounds every later
 * allocation. Tensors are then read lazily, one positional read each, never the whole file.
 *
 * Writing lives in `safetensors_write.ts` and is re-exported here, so one import serves both.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { decodeToF32, DTYPE_SIZE, HOST_LITTLE_ENDIAN, isFileDType, swapBytes } from "./dtype.ts";
import { openRead, type RandomAccessFile, readIntoFrom } from "./fs.ts";
import type { HostTensor, TensorInfo, TensorSource } from "./tensor_source.ts";

import { MAX_HEADER_BYTES } from "./safetensors_write.ts";

export {
  compareUtf8,
  MAX_HEADER_BYTES,
  planSafetensors,
  type SafetensorsPlan,
  serializeSafetensors,
  type TensorPayload,
  type TensorsToWrite,
  type TensorToWrite,
  writeSafetensors,
} from "./safetensors_write.ts";

/** One tensor of a parsed header: its index entry plus where its bytes lie. */
export interface SafetensorsEntry extends TensorInfo {
  /** Byte offset of the tensor's first byte, from the start of the file. */
  offset: number;
  /** Number of bytes (elements times dtype size). */
  byteLength: number;
}

/** A validated safetensors header. */
export interface SafetensorsHeader {
  /** `__metadata__`, or `{}` when absent. */
  metadata: Record<string, string>;
  /** Tensors in file order (ascending offset). */
  tensors: SafetensorsEntry[];
  /** Offset of the data area (8 + header length). Hashes such as kohya's cover bytes from here. */
  dataStart: number;
}

/** An open safetensors file: a {@link TensorSource} plus the parsed header. */
export interface SafetensorsFile extends TensorSource {
  /** The validated header: metadata, every tensor's entry, where the data starts. */
  readonly header: SafetensorsHeader;
  /** The parsed entry of one tensor (byte offset and length included). */
  entry(name: string): SafetensorsEntry;
  /**
   * Read one tensor's raw bytes into `target` (exactly its byte length). With `readF32Into`, this
   * lets a caller reuse one buffer or fill a mapped GPU staging buffer with no extra copy.
   */
  readRawInto(name: string, target: Uint8Array): Promise<void>;
  /** Read one tensor converted to f32 into `out` (exactly its element count). */
  readF32Into(name: string, out: Float32Array): Promise<void>;
}

/**
 * Conversions read through a scratch buffer of at most this size, chunk by chunk, so converting
 * a tensor allocates only its f32 output (fresh memory costs page faults: ~1-2 GB/s measured).
 */
const SCRATCH_BYTES = 8 << 20;

/**
 * Validate the 8-byte length prefix against the file size and return the header length.
 * `prefix` holds the first min(8, fileSize) bytes.
 */
export function headerLengthFromPrefix(path: string, prefix: Uint8Array, fileSize: number): number {
  if (fileSize < 8 || prefix.length < 8) {
    throw new LorakitError(
      `${path}: not a safetensors file: expected at least 8 bytes (header length), found ${fileSize}`,
    );
  }
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = view.getUint32(0, true);
  const hi = view.getUint32(4, true);
  // Above 2^21 in the high word the value is past any safe integer, and far past the cap anyway.
  const n = hi >= 0x200000 ? Infinity : hi * 4294967296 + lo;
  if (n > MAX_HEADER_BYTES || n > fileSize - 8) {
    const shown = n === Infinity ? `about 2^${Math.floor(Math.log2(hi)) + 32}` : String(n);
    throw new LorakitError(
      `${path}: not a safetensors file or truncated: the header length field says ${shown} bytes, ` +
        `expected at most ${
          Math.min(MAX_HEADER_BYTES, fileSize - 8)
        } (file is ${fileSize} bytes, ` +
        `header cap ${MAX_HEADER_BYTES})`,
    );
  }
  return n;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === "object") return "an object";
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function isNonNegInt(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parse and validate header bytes (the `headerLength` bytes after the length prefix) of a file of
 * `fileSize` bytes. Every problem is a LorakitError naming `path` and the key.
 */
export function parseSafetensorsHeader(
  path: string,
  headerBytes: Uint8Array,
  fileSize: number,
): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  const dataSize = fileSize - dataStart;
  if (dataSize < 0) {
    throw new LorakitError(`${path}: safetensors header runs past the end of the file`);
  }
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw new LorakitError(`${path}: safetensors header: expected UTF-8 JSON, found invalid bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LorakitError(
      `${path}: safetensors header: expected a JSON object, found invalid JSON (${
        (e as Error).message
      })`,
    );
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new LorakitError(
      `${path}: safetensors header: expected a JSON object, found ${describe(json)}`,
    );
  }
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsEntry[] = [];
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    const where = `${path}: safetensors header, key "${key}"`;
    if (key === "__metadata__") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new LorakitError(`${where}: expected a map of strings, found ${describe(value)}`);
      }
      for (const [mk, mv] of Object.entries(value as Record<string, unknown>)) {
        if (typeof mv !== "string") {
          throw new LorakitError(
            `${where}, entry "${mk}": expected a string, found ${describe(mv)}`,
          );
        }
        Object.defineProperty(metadata, mk, { value: mv, enumerable: true, writable: true });
      }
      continue;
    }
    tensors.push(parseEntry(where, key, value, dataStart, dataSize));
  }
  // File order; equal offsets (empty tensors) keep header order.
  tensors.sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < tensors.length; i++) {
    const prev = tensors[i - 1];
    const cur = tensors[i];
    if (cur.offset < prev.offset + prev.byteLength) {
      throw new LorakitError(
        `${path}: safetensors header: tensors "${prev.name}" and "${cur.name}" overlap ` +
          `(data bytes ${prev.offset - dataStart}..${prev.offset - dataStart + prev.byteLength} ` +
          `and ${cur.offset - dataStart}..${cur.offset - dataStart + cur.byteLength}); ` +
          `expected disjoint ranges`,
      );
    }
  }
  return { metadata, tensors, dataStart };
}

function parseEntry(
  where: string,
  name: string,
  value: unknown,
  dataStart: number,
  dataSize: number,
): SafetensorsEntry {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new LorakitError(
      `${where}: expected {dtype, shape, data_offsets}, found ${describe(value)}`,
    );
  }
  const v = value as Record<string, unknown>;
  const dtype = v.dtype;
  if (!isFileDType(dtype)) {
    throw new LorakitError(
      `${where}: expected dtype one of ${Object.keys(DTYPE_SIZE).join(", ")}, found ${
        describe(dtype)
      }`,
    );
  }
  const shape = v.shape;
  if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
    throw new LorakitError(
      `${where}: expected shape to be a list of non-negative integers, found ${describe(shape)}`,
    );
  }
  const offsets = v.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
    throw new LorakitError(
      `${where}: expected data_offsets [begin, end] of non-negative integers, found ${
        describe(offsets)
      }`,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (begin > end || end > dataSize) {
    throw new LorakitError(
      `${where}: data_offsets [${begin}, ${end}] lie outside the data area ` +
        `(expected begin <= end <= ${dataSize}); the file is truncated or corrupt`,
    );
  }
  // The element count stays a safe integer: any non-zero shape past the data size fails below.
  let numel = 1;
  if (!shape.includes(0)) {
    for (const d of shape as number[]) {
      numel *= d;
      if (numel > dataSize) break;
    }
  } else numel = 0;
  const expected = numel * DTYPE_SIZE[dtype];
  if (end - begin !== expected) {
    const shown = numel > dataSize ? "more than the file holds" : `${expected} bytes`;
    throw new LorakitError(
      `${where}: shape [${shape.join(", ")}] of ${dtype} needs ${shown}, ` +
        `but data_offsets [${begin}, ${end}] span ${end - begin} bytes`,
    );
  }
  return {
    name,
    dtype,
    shape: [...shape] as number[],
    offset: dataStart + begin,
    byteLength: end - begin,
  };
}

/**
 * Open a safetensors file and validate its header; tensor data is read later, on demand.
 * Bad files raise a LorakitError naming the file and, where there is one, the key.
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  const file = await openRead(path);
  try {
    const prefix = await file.read(0, Math.min(8, file.size));
    const n = headerLengthFromPrefix(path, prefix, file.size);
    const header = parseSafetensorsHeader(path, await file.read(8, n), file.size);
    return new SafetensorsReader(path, header, file);
  } catch (e) {
    file.close();
    throw e;
  }
}

/**
 * Parse a whole safetensors file held in memory (small files, tests). Reads return copies, so the
 * caller may keep or modify `bytes` afterwards. `label` names the data in error messages.
 */
export function parseSafetensorsBytes(bytes: Uint8Array, label = "<memory>"): SafetensorsFile {
  const n = headerLengthFromPrefix(label, bytes.subarray(0, 8), bytes.length);
  const header = parseSafetensorsHeader(label, bytes.subarray(8, 8 + n), bytes.length);
  const range = (offset: number, length: number) => {
    if (offset < 0 || length < 0 || offset + length > bytes.length) {
      throw new LorakitError(`${label}: read of ${length} bytes at ${offset} is outside the data`);
    }
    return bytes.subarray(offset, offset + length);
  };
  const source: RandomAccessFile = {
    path: label,
    size: bytes.length,
    read: (offset, length) => Promise.resolve(range(offset, length).slice()),
    readInto: (offset, target) => Promise.resolve(target.set(range(offset, target.length))),
    close: () => {},
  };
  return new SafetensorsReader(label, header, source);
}

class SafetensorsReader implements SafetensorsFile {
  readonly path: string;
  readonly header: SafetensorsHeader;
  readonly metadata: Record<string, string>;
  #byName = new Map<string, SafetensorsEntry>();
  #file: RandomAccessFile;
  #closed = false;
  #scratch: Uint8Array | null = null;
  #lock: Promise<unknown> = Promise.resolve();

  constructor(path: string, header: SafetensorsHeader, file: RandomAccessFile) {
    this.path = path;
    this.header = header;
    this.metadata = header.metadata;
    this.#file = file;
    for (const t of header.tensors) this.#byName.set(t.name, t);
  }

  list(): TensorInfo[] {
    return this.header.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
  }

  has(name: string): boolean {
    return this.#byName.has(name);
  }

  entry(name: string): SafetensorsEntry {
    const e = this.#byName.get(name);
    if (e === undefined) {
      throw new LorakitError(
        `${this.path}: expected a tensor named "${name}", found none among its ${this.#byName.size} tensors`,
      );
    }
    return e;
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { name: e.name, dtype: e.dtype, shape: [...e.shape] };
  }

  #open(name: string): SafetensorsEntry {
    const e = this.entry(name);
    if (this.#closed) throw new LorakitError(`${this.path}: read of "${name}" after close()`);
    return e;
  }

  async readRaw(name: string): Promise<Uint8Array> {
    const e = this.#open(name);
    return await this.#file.read(e.offset, e.byteLength);
  }

  async readRawInto(name: string, target: Uint8Array): Promise<void> {
    const e = this.#open(name);
    if (target.length !== e.byteLength) {
      throw new LorakitError(
        `${this.path}: tensor "${name}" has ${e.byteLength} bytes, target holds ${target.length}`,
      );
    }
    await readIntoFrom(this.#file, e.offset, target);
  }

  async readF32(name: string): Promise<HostTensor> {
    const e = this.#open(name);
    const data = new Float32Array(e.byteLength / DTYPE_SIZE[e.dtype]);
    await this.readF32Into(name, data);
    return { shape: [...e.shape], data };
  }

  async readF32Into(name: string, out: Float32Array): Promise<void> {
    const e = this.#open(name);
    const size = DTYPE_SIZE[e.dtype];
    const numel = e.byteLength / size;
    if (out.length !== numel) {
      throw new LorakitError(
        `${this.path}: tensor "${name}" has ${numel} elements, output holds ${out.length}`,
      );
    }
    if (e.dtype === "F32") {
      // Straight into the output's bytes: no scratch, no copy.
      const bytes = new Uint8Array(out.buffer, out.byteOffset, e.byteLength);
      await readIntoFrom(this.#file, e.offset, bytes);
      if (!HOST_LITTLE_ENDIAN) swapBytes(bytes, 4);
      return;
    }
    // The scratch buffer is shared, so one conversion runs at a time. Its two halves alternate:
    // the next chunk is read (off-thread) while this one is converted.
    const run = this.#lock.then(async () => {
      const step = Math.floor(SCRATCH_BYTES / 2 / size) * size;
      const want = 2 * Math.min(step, e.byteLength);
      if (this.#scratch === null || this.#scratch.length < want) {
        this.#scratch = new Uint8Array(want);
      }
      const halves = [this.#scratch.subarray(0, want / 2), this.#scratch.subarray(want / 2)];
      const load = (at: number, k: number) => {
        const chunk = halves[k & 1].subarray(0, Math.min(step, e.byteLength - at));
        const done = readIntoFrom(this.#file, e.offset + at, chunk).then(() => chunk);
        done.catch(() => {}); // awaited below; never an unhandled rejection if we stop early
        return done;
      };
      let next = e.byteLength > 0 ? load(0, 0) : null;
      for (let at = 0, k = 0; next !== null; at += step, k++) {
        const chunk = await next;
        next = at + step < e.byteLength ? load(at + step, k + 1) : null;
        decodeToF32(e.dtype, chunk, out.subarray(at / size, (at + chunk.length) / size));
      }
    });
    this.#lock = run.catch(() => {});
    await run;
  }

  close(): void {
    if (!this.#closed) {
      this.#closed = true;
      this.#scratch = null;
      this.#file.close();
    }
  }
}
