/**
 * Writing PyTorch checkpoints (`.ckpt`/`.pt`) in the zip format `torch.save` uses since torch
 * 1.6, for a flat dict of tensors: what kohya's `save_model_as ckpt|pt` writes with
 * `torch.save(state_dict, file)`.
 *
 * Layout, as torch writes it (the folder is the file name without its extension):
 * - `<stem>/data.pkl`: a protocol-2 pickle of `{key: tensor, ...}`, each tensor
 *   `torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())` with the
 *   storage a persistent id `('storage', torch.FloatStorage, '<n>', 'cpu', numel)`;
 * - `<stem>/byteorder`: `little`;
 * - `<stem>/data/<n>`: each storage's raw little-endian bytes, one per tensor, contiguous;
 * - `<stem>/version`: `3\n`.
 *
 * Entries are STORED, their data aligned to 64 bytes, and the file is written atomically.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { baseName, writeAtomic } from "./fs.ts";
import { type ZipEntryToWrite, zipStoredChunks } from "./zip_write.ts";

/** Element types a LoRA checkpoint holds. */
export type CkptDType = "F32" | "F16" | "BF16";

/** One tensor of a checkpoint. */
export interface CkptTensorToWrite {
  /** Key in the dict. */
  name: string;
  dtype: CkptDType;
  /** Dimensions; `[]` for a 0-d scalar such as kohya's `alpha`. */
  shape: readonly number[];
  /** Raw little-endian bytes in `dtype`, row-major. */
  data: Uint8Array;
}

const STORAGE: Readonly<Record<CkptDType, { type: string; size: number }>> = {
  F32: { type: "FloatStorage", size: 4 },
  F16: { type: "HalfStorage", size: 2 },
  BF16: { type: "BFloat16Storage", size: 2 },
};

/** torch's data-entry alignment (`kFieldAlignment`). */
const ALIGN = 64;

/** A protocol-2 pickle emitter for the few value kinds a state dict needs. */
class PickleWriter {
  #parts: number[] = [];
  #enc = new TextEncoder();

  op(...codes: number[]): this {
    for (const c of codes) this.#parts.push(c);
    return this;
  }

  #bytes(b: Uint8Array): this {
    for (const x of b) this.#parts.push(x);
    return this;
  }

  /** BINUNICODE. */
  str(s: string): this {
    const b = this.#enc.encode(s);
    return this.op(0x58, ...le(b.length, 4)).#bytes(b);
  }

  /** BININT1 / BININT2 / BININT, or LONG1 past 32 bits, as Python's pickler picks them. */
  int(n: number): this {
    if (!Number.isSafeInteger(n)) throw new LorakitError(`cannot pickle ${n} as an integer`);
    if (n >= 0 && n < 0x100) return this.op(0x4b, n);
    if (n >= 0 && n < 0x10000) return this.op(0x4d, ...le(n, 2));
    if (n >= -(2 ** 31) && n < 2 ** 31) return this.op(0x4a, ...le(n >>> 0, 4));
    const bytes: number[] = [];
    let v = BigInt(n);
    // Minimal two's complement, little-endian: stop once the sign bit of the last byte agrees.
    for (;;) {
      const byte = Number(v & 0xffn);
      bytes.push(byte);
      v >>= 8n;
      if ((v === 0n && (byte & 0x80) === 0) || (v === -1n && (byte & 0x80) !== 0)) break;
    }
    return this.op(0x8a, bytes.length, ...bytes);
  }

  /** GLOBAL `module\nname\n`. */
  global(module: string, name: string): this {
    return this.op(0x63).#bytes(this.#enc.encode(`${module}\n${name}\n`));
  }

  /** A tuple of ints: EMPTY_TUPLE, TUPLE1..3, or MARK ... TUPLE. */
  intTuple(values: readonly number[]): this {
    if (values.length === 0) return this.op(0x29);
    if (values.length > 3) this.op(0x28);
    for (const v of values) this.int(v);
    return this.op(values.length > 3 ? 0x74 : 0x84 + values.length);
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.#parts);
  }
}

function le(n: number, width: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < width; i++) out.push(Math.floor(n / 2 ** (8 * i)) & 0xff);
  return out;
}

function contiguousStride(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    stride[d] = acc;
    acc *= shape[d];
  }
  return stride;
}

/** The `data.pkl` of a flat dict whose i-th tensor lives in storage `'<i>'`. */
export function checkpointPickle(tensors: readonly CkptTensorToWrite[]): Uint8Array {
  const pk = new PickleWriter();
  pk.op(0x80, 2); // PROTO 2
  pk.op(0x7d); // EMPTY_DICT
  if (tensors.length > 0) pk.op(0x28); // MARK
  tensors.forEach((t, i) => {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    pk.str(t.name);
    pk.global("torch._utils", "_rebuild_tensor_v2").op(0x28);
    pk.op(0x28).str("storage").global("torch", STORAGE[t.dtype].type).str(String(i)).str("cpu");
    pk.int(numel).op(0x74, 0x51); // TUPLE, BINPERSID
    pk.int(0).intTuple(t.shape).intTuple(contiguousStride(t.shape));
    pk.op(0x89); // NEWFALSE (requires_grad)
    pk.global("collections", "OrderedDict").op(0x29, 0x52); // OrderedDict() for backward hooks
    pk.op(0x74, 0x52); // TUPLE, REDUCE
  });
  if (tensors.length > 0) pk.op(0x75); // SETITEMS
  return pk.op(0x2e).bytes(); // STOP
}

/** The archive folder torch names after the file: its base name without the extension. */
function archiveFolder(path: string): string {
  const base = baseName(path);
  const dot = base.lastIndexOf(".");
  const stem = dot > 0 ? base.slice(0, dot) : base;
  const plain = [...stem].every((c) => c.charCodeAt(0) >= 0x20 && c !== "\\");
  return stem.length > 0 && plain ? stem : "archive";
}

/**
 * Write `tensors` as a `torch.save` zip-format checkpoint of a flat dict, atomically. Keys must
 * be unique; each tensor's `data` must hold exactly its shape's bytes. No metadata is stored
 * (torch checkpoints have none; kohya drops it for ckpt/pt).
 */
export async function writeTorchCheckpoint(
  path: string,
  tensors: readonly CkptTensorToWrite[],
): Promise<void> {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) throw new LorakitError(`${path}: duplicate tensor key '${t.name}'`);
    seen.add(t.name);
    const st = STORAGE[t.dtype];
    if (st === undefined) {
      throw new LorakitError(
        `${path}: tensor '${t.name}': expected dtype F32, F16 or BF16, found ${String(t.dtype)}`,
      );
    }
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new LorakitError(
        `${path}: tensor '${t.name}': invalid shape [${t.shape.join(", ")}]`,
      );
    }
    const bytes = t.shape.reduce((a, b) => a * b, 1) * st.size;
    if (t.data.length !== bytes) {
      throw new LorakitError(
        `${path}: tensor '${t.name}': shape [${t.shape.join(", ")}] ${t.dtype} needs ${bytes} ` +
          `bytes, found ${t.data.length}`,
      );
    }
  }
  const folder = archiveFolder(path);
  const enc = new TextEncoder();
  const entries: ZipEntryToWrite[] = [
    { name: `${folder}/data.pkl`, data: checkpointPickle(tensors) },
    { name: `${folder}/byteorder`, data: enc.encode("little") },
    ...tensors.map((t, i) => ({ name: `${folder}/data/${i}`, data: t.data })),
    { name: `${folder}/version`, data: enc.encode("3\n") },
  ];
  await writeAtomic(path, zipStoredChunks(entries, { align: ALIGN, path }));
}
