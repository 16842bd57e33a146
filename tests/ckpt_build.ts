/**
 * Test helpers that write what torch.save writes, byte by byte: a pickle assembler, a ZIP writer
 * (STORED or DEFLATE entries, optional ZIP64, torch's 64-byte data alignment), and builders for
 * zip-format and legacy-format checkpoints. No Python or torch is needed to run the tests.
 */
import { LorakitError } from "../core/errors.ts";
import type { RandomAccessFile } from "../core/io/fs.ts";
import { crc32 } from "../core/io/zip.ts";
import { uniformRandom } from "../gpu/random.ts";

/** Pickle opcodes used by the builders and the hand-written hostile streams. */
export const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  POP: 0x30,
  NONE: 0x4e,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  APPENDS: 0x65,
  BUILD: 0x62,
  BINGET: 0x68,
  BINPUT: 0x71,
  SETITEM: 0x73,
  TUPLE: 0x74,
  SETITEMS: 0x75,
  EMPTY_TUPLE: 0x29,
  EMPTY_LIST: 0x5d,
  EMPTY_DICT: 0x7d,
  PROTO: 0x80,
  TUPLE1: 0x85,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
} as const;

/** A tiny pickle assembler: each method appends one value's opcodes. */
export class Pk {
  #b: number[] = [];
  op(...codes: number[]): this {
    this.#b.push(...codes);
    return this;
  }
  raw(bytes: Uint8Array | string): this {
    const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
    for (const x of b) this.#b.push(x);
    return this;
  }
  /** BINUNICODE. */
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.op(0x58, ...u32(b.length)).raw(b);
  }
  /** BININT1 / BININT2 / BININT as Python's pickler picks them. */
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, n, true);
    return this.op(0x4a, ...b);
  }
  /** LONG1 of a bigint. */
  long(n: bigint): this {
    const bytes: number[] = [];
    let v = n;
    while (v !== 0n && v !== -1n) {
      bytes.push(Number(v & 0xffn));
      v >>= 8n;
    }
    if (bytes.length === 0 || (bytes[bytes.length - 1] & 0x80) !== (n < 0n ? 0x80 : 0)) {
      bytes.push(n < 0n ? 0xff : 0);
    }
    return this.op(0x8a, bytes.length, ...bytes);
  }
  global(module: string, name: string): this {
    return this.op(0x63).raw(`${module}\n${name}\n`);
  }
  stackGlobal(module: string, name: string): this {
    return this.str(module).str(name).op(OP.STACK_GLOBAL);
  }
  tuple(items: number[]): this {
    this.op(OP.MARK);
    for (const i of items) this.int(i);
    return this.op(OP.TUPLE);
  }
  /** An empty `collections.OrderedDict()`, as torch writes for backward hooks. */
  orderedDict(): this {
    return this.global("collections", "OrderedDict").op(OP.EMPTY_TUPLE, OP.REDUCE);
  }
  bytes(): Uint8Array {
    return new Uint8Array(this.#b);
  }
}

function u16(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff];
}
function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}
function u64(n: number): number[] {
  return [...u32(n % 2 ** 32), ...u32(Math.floor(n / 2 ** 32))];
}

/** A tensor to write: a view into a named storage. */
export interface TensorSpec {
  name: string;
  storage: string;
  offset?: number;
  size: number[];
  stride?: number[];
  /** Wrap in `torch._utils._rebuild_parameter`, as nn.Parameter values are. */
  param?: boolean;
}

/** A raw storage: torch type name (`FloatStorage`...) and its bytes. */
export interface StorageSpec {
  type: string;
  data: Uint8Array;
  elementSize: number;
}

function contiguousStride(size: number[]): number[] {
  const s = new Array<number>(size.length);
  let acc = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    s[d] = acc;
    acc *= size[d];
  }
  return s;
}

/** Opcodes of one `name: tensor` pair, with torch's persistent id (legacy adds view metadata). */
function writeTensor(
  pk: Pk,
  t: TensorSpec,
  storages: Record<string, StorageSpec>,
  legacy: boolean,
): void {
  const st = storages[t.storage];
  pk.str(t.name);
  if (t.param) pk.global("torch._utils", "_rebuild_parameter").op(OP.MARK);
  pk.global("torch._utils", "_rebuild_tensor_v2").op(OP.MARK);
  pk.op(OP.MARK).str("storage").global("torch", st.type).str(t.storage).str("cpu");
  pk.int(st.data.length / st.elementSize);
  if (legacy) pk.op(OP.NONE);
  pk.op(OP.TUPLE, 0x51);
  pk.int(t.offset ?? 0).tuple(t.size).tuple(t.stride ?? contiguousStride(t.size));
  pk.op(OP.NEWFALSE).orderedDict().op(OP.TUPLE, OP.REDUCE);
  if (t.param) pk.op(OP.NEWTRUE).orderedDict().op(OP.TUPLE, OP.REDUCE);
}

/** Options for the checkpoint pickle. */
export interface CkptPickleOptions {
  /** Put the tensors under "state_dict" (with "epoch"/"global_step" beside it), as SD files do. */
  stateDict?: boolean;
  /** Extra opcodes for one more `key: value` pair inside the tensor dict. */
  extra?: (pk: Pk) => void;
  legacy?: boolean;
}

/** The data.pkl of a checkpoint holding `tensors`. */
export function ckptPickle(
  tensors: TensorSpec[],
  storages: Record<string, StorageSpec>,
  o: CkptPickleOptions = {},
): Uint8Array {
  const pk = new Pk().op(OP.PROTO, 2, OP.EMPTY_DICT, OP.MARK);
  if (o.stateDict) pk.str("state_dict").op(OP.EMPTY_DICT, OP.MARK);
  for (const t of tensors) writeTensor(pk, t, storages, o.legacy ?? false);
  o.extra?.(pk);
  if (o.stateDict) pk.op(OP.SETITEMS).str("epoch").int(6).str("global_step").int(470000);
  return pk.op(OP.SETITEMS, OP.STOP).bytes();
}

/** One ZIP member to write. */
export interface ZipFileSpec {
  name: string;
  data: Uint8Array;
  deflate?: boolean;
}

/** Write a ZIP archive; `zip64` forces ZIP64 records, as torch.save does for large files. */
export async function zipBytes(
  files: ZipFileSpec[],
  o: { zip64?: boolean; comment?: string } = {},
): Promise<Uint8Array> {
  const out: number[] = [];
  const central: number[] = [];
  const sat = (n: number) => (o.zip64 ? 0xffffffff : n);
  for (const f of files) {
    const stored = f.deflate ? await deflateRaw(f.data) : f.data;
    const name = new TextEncoder().encode(f.name);
    const offset = out.length;
    const crc = crc32(f.data);
    const method = f.deflate ? 8 : 0;
    const z64Local = o.zip64
      ? [...u16(1), ...u16(16), ...u64(f.data.length), ...u64(stored.length)]
      : [];
    // torch pads the local extra field ("FB" id) so each member's data is 64-byte aligned.
    const base = offset + 30 + name.length + z64Local.length + 4;
    const pad = (64 - (base % 64)) % 64;
    const extra = [...z64Local, ...u16(0x4246), ...u16(pad), ...new Array<number>(pad).fill(0x5a)];
    out.push(...u32(0x04034b50), ...u16(o.zip64 ? 45 : 20), ...u16(0x800), ...u16(method));
    out.push(...u32(0), ...u32(crc), ...u32(sat(stored.length)), ...u32(sat(f.data.length)));
    out.push(...u16(name.length), ...u16(extra.length), ...name, ...extra);
    // Member data one byte at a time: a spread of a large member overflows the call stack.
    for (const b of stored) out.push(b);
    const z64 = o.zip64
      ? [...u16(1), ...u16(24), ...u64(f.data.length), ...u64(stored.length), ...u64(offset)]
      : [];
    central.push(...u32(0x02014b50), ...u16(45), ...u16(o.zip64 ? 45 : 20), ...u16(0x800));
    central.push(...u16(method), ...u32(0), ...u32(crc), ...u32(sat(stored.length)));
    central.push(...u32(sat(f.data.length)), ...u16(name.length), ...u16(z64.length));
    central.push(...u16(0), ...u16(0), ...u16(0), ...u32(0), ...u32(sat(offset)), ...name, ...z64);
  }
  const cdOffset = out.length;
  for (const b of central) out.push(b);
  const comment = new TextEncoder().encode(o.comment ?? "");
  if (o.zip64) {
    const z64At = out.length;
    out.push(...u32(0x06064b50), ...u64(44), ...u16(45), ...u16(45), ...u32(0), ...u32(0));
    out.push(...u64(files.length), ...u64(files.length), ...u64(central.length), ...u64(cdOffset));
    out.push(...u32(0x07064b50), ...u32(0), ...u64(z64At), ...u32(1));
  }
  const n16 = o.zip64 ? 0xffff : files.length;
  out.push(...u32(0x06054b50), ...u16(0), ...u16(0), ...u16(n16), ...u16(n16));
  out.push(...u32(sat(central.length)), ...u32(sat(cdOffset)), ...u16(comment.length), ...comment);
  return new Uint8Array(out);
}

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate-raw"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** A zip-format checkpoint (`<folder>/data.pkl`, `<folder>/data/<key>`, `<folder>/version`). */
export function zipCkpt(
  folder: string,
  tensors: TensorSpec[],
  storages: Record<string, StorageSpec>,
  o: CkptPickleOptions & { zip64?: boolean; deflate?: boolean; byteorder?: string } = {},
): Promise<Uint8Array> {
  const files: ZipFileSpec[] = [
    { name: `${folder}/data.pkl`, data: ckptPickle(tensors, storages, o), deflate: o.deflate },
  ];
  if (o.byteorder) {
    files.push({ name: `${folder}/byteorder`, data: new TextEncoder().encode(o.byteorder) });
  }
  for (const [key, s] of Object.entries(storages)) {
    files.push({ name: `${folder}/data/${key}`, data: s.data, deflate: o.deflate });
  }
  files.push({ name: `${folder}/version`, data: new TextEncoder().encode("3\n") });
  return zipBytes(files, { zip64: o.zip64 });
}

/** A legacy (non-zip) checkpoint: magic, protocol, sys_info, object, keys, then storages. */
export function legacyCkpt(
  tensors: TensorSpec[],
  storages: Record<string, StorageSpec>,
  o: CkptPickleOptions = {},
): Uint8Array {
  const parts: Uint8Array[] = [
    new Pk().op(OP.PROTO, 2).long(0x1950a86a20f9469cfc6cn).op(OP.STOP).bytes(),
    new Pk().op(OP.PROTO, 2).int(1001).op(OP.STOP).bytes(),
    new Pk().op(OP.PROTO, 2, OP.EMPTY_DICT, OP.MARK).str("protocol_version").int(1001)
      .str("little_endian").op(OP.NEWTRUE).op(OP.SETITEMS, OP.STOP).bytes(),
    ckptPickle(tensors, storages, { ...o, legacy: true }),
  ];
  const keys = new Pk().op(OP.PROTO, 2, OP.EMPTY_LIST, OP.MARK);
  for (const k of Object.keys(storages)) keys.str(k);
  parts.push(keys.op(OP.APPENDS, OP.STOP).bytes());
  for (const s of Object.values(storages)) {
    parts.push(new Uint8Array(u64(s.data.length / s.elementSize)), s.data);
  }
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** An in-memory RandomAccessFile, bounds-checked like the real one. */
export function memFile(bytes: Uint8Array, path = "mem.zip"): RandomAccessFile {
  return {
    path,
    size: bytes.length,
    read(offset: number, length: number): Promise<Uint8Array> {
      if (offset < 0 || length < 0 || offset + length > bytes.length) {
        return Promise.reject(new LorakitError(`${path}: read outside the file`));
      }
      return Promise.resolve(bytes.slice(offset, offset + length));
    },
    close() {},
  };
}

/** Deterministic PRNG (mulberry32) for fuzz loops. */
export const rng: (seed: number) => () => number = uniformRandom;
