/**
 * PyTorch `.ckpt`/`.pt` checkpoints, read without executing pickle code.
 *
 * Two layouts exist. The zip format (torch >= 1.6) holds `<folder>/data.pkl`, whose persistent
 * ids `('storage', torch.FloatStorage, key, location, numel)` name raw storages stored as
 * `<folder>/data/<key>`. The legacy format (older torch, `_use_new_zipfile_serialization=False`)
 * is five pickles back to back (magic number, protocol, sys_info, the object, the storage keys)
 * followed by each storage as an int64 element count and its bytes.
 *
 * Either way a tensor is a view `(storage, storage_offset, size, stride)` built by
 * `torch._utils._rebuild_tensor_v2`; views are read lazily, gathered when not contiguous.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { DTYPE_SIZE } from "./dtype.ts";
import { type Storage, type TensorView, viewSource } from "./ckpt_views.ts";
import { openRead, type RandomAccessFile } from "./fs.ts";
import {
  PickleCall,
  PickleGlobal,
  PicklePersistent,
  type PickleValue,
  unpickle,
} from "./pickle.ts";
import type { FileDType, TensorSource } from "./tensor_source.ts";
import { looksLikeZip, openZip, type ZipArchive } from "./zip.ts";

/** A persistent id resolved to a storage (plus, in legacy files, an element offset into it). */
type StorageResolver = (id: PickleValue) => { storage: Storage; offset: number };

/** Legacy files: the pickled part must parse within this many leading bytes. */
const MAX_LEGACY_PICKLE_BYTES = 64 * 1024 * 1024;
/** The zip format's data.pkl is a few hundred KB for SD; anything past this is not a checkpoint. */
const MAX_DATA_PKL_BYTES = 64 * 1024 * 1024;
const MAX_NESTING = 32;
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

const STORAGE_DTYPES: Record<string, FileDType> = {
  DoubleStorage: "F64",
  FloatStorage: "F32",
  HalfStorage: "F16",
  BFloat16Storage: "BF16",
  LongStorage: "I64",
  IntStorage: "I32",
  ShortStorage: "I16",
  CharStorage: "I8",
  ByteStorage: "U8",
  BoolStorage: "BOOL",
  UntypedStorage: "U8",
};

/**
 * Open a PyTorch checkpoint. Tensors come from its `state_dict` entry when there is one, else
 * from the top-level dict; nested dicts are flattened with "." and non-tensor values (epoch,
 * global_step, callbacks) are skipped. Globals outside the tensor whitelist are refused.
 */
export async function openCkpt(path: string): Promise<TensorSource> {
  return await openCkptFile(await openRead(path));
}

/**
 * {@link openCkpt} over an already opened file (any RandomAccessFile, e.g. bytes in memory). The
 * source owns `file`: closing it closes the file, and so does a failure to open.
 */
export async function openCkptFile(file: RandomAccessFile): Promise<TensorSource> {
  const path = file.path;
  try {
    const head = await file.read(0, Math.min(4, file.size));
    if (looksLikeZip(head)) return await openZipCkpt(file);
    if (head[0] === 0x80) return await openLegacyCkpt(file);
    if (file.size >= 262) {
      const magic = new TextDecoder("latin1").decode(await file.read(257, 5));
      if (magic === "ustar") {
        throw new LorakitError(
          `${path}: this is the tar-based checkpoint format of torch before 0.4, which lorakit does not read; re-save it with a current torch (or convert it to .safetensors)`,
        );
      }
    }
    throw new LorakitError(
      `${path}: not a PyTorch checkpoint; expected a zip archive (torch.save) or a legacy pickle, found bytes ${
        [...head].map((b) => b.toString(16).padStart(2, "0")).join(" ")
      }`,
    );
  } catch (e) {
    file.close();
    throw e;
  }
}

async function openZipCkpt(file: RandomAccessFile): Promise<TensorSource> {
  const zip = await openZip(file);
  const pklEntry = zip.entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.name));
  if (pklEntry === undefined) {
    throw new LorakitError(
      `${file.path}: zip archive is not a PyTorch checkpoint; expected an entry '<folder>/data.pkl', found ${
        zip.entries.slice(0, 5).map((e) => `'${e.name}'`).join(", ") || "no entries"
      }`,
    );
  }
  if (pklEntry.size > MAX_DATA_PKL_BYTES) {
    throw new LorakitError(`${file.path}: '${pklEntry.name}' is ${pklEntry.size} bytes; too large`);
  }
  const prefix = pklEntry.name.slice(0, -"data.pkl".length);
  const order = zip.get(`${prefix}byteorder`);
  const bigEndian = order !== undefined &&
    new TextDecoder().decode(await zip.readEntry(order)).trim() === "big";
  const pkl = await zip.readEntry(pklEntry);
  const root = unpickle(pkl, { source: `${file.path}: ${pklEntry.name}` }).value;

  const storages = new Map<string, Storage>();
  const resolve: StorageResolver = (id) => {
    const { key, dtype } = parseStorageId(file.path, id);
    let storage = storages.get(key);
    if (storage === undefined) {
      storage = zipStorage(zip, `${prefix}data/${key}`, key, dtype);
      storages.set(key, storage);
    }
    if (storage.dtype !== dtype) throw storageConflict(file.path, key);
    return { storage, offset: 0 };
  };
  return viewSource(file, collectTensors(file.path, root, resolve, pkl.length), bigEndian);
}

function zipStorage(zip: ZipArchive, name: string, key: string, dtype: FileDType): Storage {
  const entry = zip.get(name);
  if (entry === undefined) {
    throw new LorakitError(
      `${zip.path}: storage '${key}' is referenced but entry '${name}' is missing`,
    );
  }
  return {
    key,
    dtype,
    byteLength: entry.size,
    read: (offset, length) => zip.readRange(entry, offset, length),
  };
}

async function openLegacyCkpt(file: RandomAccessFile): Promise<TensorSource> {
  // The pickles' total length is unknown up front: parse a prefix, growing it until they fit.
  let len = Math.min(file.size, 1 << 20);
  let parsed: { values: PickleValue[]; end: number } | undefined;
  while (parsed === undefined) {
    const bytes = await file.read(0, len);
    try {
      const values: PickleValue[] = [];
      let end = 0;
      for (let i = 0; i < 5; i++) {
        const r = unpickle(bytes, { source: `${file.path} (legacy format)`, offset: end });
        values.push(r.value);
        end = r.end;
      }
      parsed = { values, end };
    } catch (e) {
      const refused = e instanceof LorakitError && e.message.includes("refusing to load global");
      if (refused || len >= file.size || len >= MAX_LEGACY_PICKLE_BYTES) throw e;
      len = Math.min(file.size, len * 4, MAX_LEGACY_PICKLE_BYTES);
    }
  }
  const [magic, protocol, sysInfo, root, keys] = parsed.values;
  if (magic !== LEGACY_MAGIC || protocol !== 1001) {
    throw new LorakitError(
      `${file.path}: not a PyTorch checkpoint; expected the legacy torch.save magic number and protocol 1001, found ${
        describe(magic)
      } and ${describe(protocol)}`,
    );
  }
  const bigEndian = sysInfo instanceof Map && sysInfo.get("little_endian") === false;
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
    throw new LorakitError(`${file.path}: legacy checkpoint's storage key list is malformed`);
  }

  // First pass: learn every storage's dtype from the persistent ids, so the sizes can be walked.
  const dtypes = new Map<string, FileDType>();
  collectTensors(file.path, root, (id) => {
    const { key, dtype } = parseStorageId(file.path, id);
    if (dtypes.has(key) && dtypes.get(key) !== dtype) throw storageConflict(file.path, key);
    dtypes.set(key, dtype);
    const unread = () => Promise.resolve(new Uint8Array(0)); // this pass only learns dtypes
    return { storage: { key, dtype, byteLength: 0, read: unread }, offset: 0 };
  }, parsed.end);
  const storages = new Map<string, Storage>();
  let at = parsed.end;
  for (const key of keys as string[]) {
    const dtype = dtypes.get(key);
    // Without its dtype a storage's length is unknown, and so is where the next one starts.
    if (dtype === undefined) {
      throw new LorakitError(
        `${file.path}: legacy storage '${key}' is stored but never referenced`,
      );
    }
    const head = await file.read(at, 8);
    const count = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, !bigEndian);
    const byteLength = Number(count) * DTYPE_SIZE[dtype];
    const start = at + 8;
    if (!(byteLength <= file.size - start)) {
      throw new LorakitError(
        `${file.path}: legacy storage '${key}' claims ${count} elements, past the end of the file; the file is truncated or corrupt`,
      );
    }
    storages.set(key, { key, dtype, byteLength, read: (o, n) => file.read(start + o, n) });
    at = start + byteLength;
  }
  const resolve: StorageResolver = (id) => {
    const { key, viewOffset } = parseStorageId(file.path, id);
    const storage = storages.get(key);
    if (storage === undefined) {
      throw new LorakitError(`${file.path}: storage '${key}' is referenced but not stored`);
    }
    return { storage, offset: viewOffset };
  };
  return viewSource(file, collectTensors(file.path, root, resolve, parsed.end), bigEndian);
}

/**
 * `('storage', <torch.XStorage>, key, location, numel[, view_metadata])`. Legacy files add
 * view metadata `(view_key, offset, size)` for storages that are slices of another.
 */
function parseStorageId(
  path: string,
  id: PickleValue,
): { key: string; dtype: FileDType; viewOffset: number } {
  const bad = () =>
    new LorakitError(
      `${path}: malformed storage reference; expected ('storage', torch.<Type>Storage, key, location, numel), found ${
        describe(id)
      }`,
    );
  if (!Array.isArray(id) || id.length < 5 || id[0] !== "storage") throw bad();
  const type = id[1];
  const key = id[2];
  if (!(type instanceof PickleGlobal) || (typeof key !== "string" && typeof key !== "number")) {
    throw bad();
  }
  const dtype = type.module === "torch" ? STORAGE_DTYPES[type.name] : undefined;
  if (dtype === undefined) {
    throw new LorakitError(
      `${path}: storage type '${type.qualifiedName}' is not supported; expected one of ${
        Object.keys(STORAGE_DTYPES).map((n) => `torch.${n}`).join(", ")
      }`,
    );
  }
  let viewOffset = 0;
  const view = id[5];
  if (Array.isArray(view) && view.length >= 2) {
    if (!isIndex(view[1])) throw bad();
    viewOffset = view[1] as number;
  }
  return { key: String(key), dtype, viewOffset };
}

function storageConflict(path: string, key: string): LorakitError {
  return new LorakitError(`${path}: storage '${key}' is referenced with two different dtypes`);
}

/**
 * The `state_dict` (or top-level dict) flattened to named tensor views, in file order.
 * `pickleBytes` (the pickle's length) bounds the dict entries walked: a tree of dicts cannot hold
 * more entries than its pickle has bytes, but the memo can nest one dict in another any number of
 * times, and a few hundred bytes would then be billions of entries.
 */
function collectTensors(
  path: string,
  root: PickleValue,
  resolve: StorageResolver,
  pickleBytes: number,
): TensorView[] {
  if (!(root instanceof Map)) {
    throw new LorakitError(
      `${path}: expected the checkpoint to hold a dict of tensors, found ${describe(root)}`,
    );
  }
  const sd = root.get("state_dict");
  const out: TensorView[] = [];
  const seen = new Set<string>();
  let entries = 0;
  const walk = (dict: Map<PickleValue, PickleValue>, prefix: string, depth: number) => {
    if (depth > MAX_NESTING) {
      throw new LorakitError(
        `${path}: dicts nested deeper than ${MAX_NESTING} levels at '${prefix.slice(0, 200)}'`,
      );
    }
    entries += dict.size;
    if (entries > pickleBytes) {
      throw new LorakitError(
        `${path}: the checkpoint's dicts reach more entries than its ${pickleBytes}-byte pickle ` +
          `holds (the same dict is nested in others over and over); expected a tree of tensors`,
      );
    }
    for (const [k, v] of dict) {
      if (typeof k !== "string" && typeof k !== "number") continue;
      const name = prefix + String(k);
      if (v instanceof Map) {
        walk(v, `${name}.`, depth + 1);
        continue;
      }
      const t = tensorOf(path, name, v, resolve);
      if (t === null) continue;
      if (seen.has(name)) throw new LorakitError(`${path}: tensor name '${name}' occurs twice`);
      seen.add(name);
      out.push(t);
    }
  };
  walk(sd instanceof Map ? sd : root, "", 0);
  if (out.length === 0) {
    throw new LorakitError(`${path}: no tensors found; expected a state dict of tensors`);
  }
  return out;
}

/** The tensor a value rebuilds, or null for non-tensor values (ints, strings, callbacks...). */
function tensorOf(
  path: string,
  name: string,
  v: PickleValue,
  resolve: StorageResolver,
): TensorView | null {
  // Unwrap Parameter and subclass wrappers (bounded: each level is one recorded call).
  for (let depth = 0; v instanceof PickleCall && depth < 4; depth++) {
    const fn = v.callable.qualifiedName;
    if (
      fn === "torch._utils._rebuild_parameter" ||
      fn === "torch._utils._rebuild_parameter_with_state"
    ) {
      v = v.args[0];
    } else if (fn === "torch._tensor._rebuild_from_type_v2") {
      const [inner, , args] = v.args;
      if (!(inner instanceof PickleGlobal) || !Array.isArray(args)) break;
      v = new PickleCall(inner, args);
    } else break;
  }
  if (!(v instanceof PickleCall)) return null;
  const fn = v.callable.qualifiedName;
  if (fn !== "torch._utils._rebuild_tensor_v2" && fn !== "torch._utils._rebuild_tensor") {
    return null;
  }
  const [storageRef, offset, size, stride] = v.args;
  const bad = (what: string) => new LorakitError(`${path}: tensor '${name}' is malformed: ${what}`);
  if (!(storageRef instanceof PicklePersistent)) {
    throw bad("its storage is not a persistent reference");
  }
  if (!isIndex(offset)) {
    throw bad(`storage offset ${describe(offset)} is not a non-negative integer`);
  }
  if (!isIndexList(size)) {
    throw bad(`size ${describe(size)} is not a tuple of non-negative integers`);
  }
  if (!isIndexList(stride) || stride.length !== size.length) {
    throw bad(`stride ${describe(stride)} does not match size ${describe(size)}`);
  }
  const { storage, offset: base } = resolve(storageRef.id);
  return {
    name,
    dtype: storage.dtype,
    shape: [...size],
    storage,
    offset: base + (offset as number),
    stride: [...stride],
  };
}

function isIndex(v: PickleValue | undefined): boolean {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function isIndexList(v: PickleValue | undefined): v is number[] {
  return Array.isArray(v) && v.every(isIndex);
}

/**
 * A short description of a pickle value for error messages. Nesting is shown two levels deep: the
 * memo can share a tuple within a tuple any number of times, which written out in full is
 * exponentially long.
 */
function describe(v: PickleValue | undefined, depth = 0): string {
  if (v === undefined || v === null) return "None";
  if (Array.isArray(v)) {
    if (v.length > 8 || depth >= 2) return `a sequence of ${v.length} items`;
    return `(${v.map((x) => describe(x, depth + 1)).join(", ")})`;
  }
  if (v instanceof Map) return `a dict of ${v.size} items`;
  if (v instanceof PickleGlobal) return v.qualifiedName;
  if (v instanceof PickleCall) return `${v.callable.qualifiedName}(...)`;
  if (v instanceof PicklePersistent) return "a persistent reference";
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (typeof v === "bigint" && (v > 2n ** 64n || v < -(2n ** 64n))) {
    return `an integer of ${(v < 0n ? -v : v).toString(16).length * 4} bits`;
  }
  return typeof v === "string" ? `'${v.slice(0, 40)}'` : String(v);
}
