/**
 * A read-only ZIP reader over a random-access file, for the archives `torch.save` writes.
 *
 * Only the central directory is read up front; entry data is located and read on demand, so a
 * multi-gigabyte checkpoint can be indexed with a few small reads and its tensor storages read
 * one range at a time. ZIP64 is handled because torch.save switches to it for large files.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { RandomAccessFile } from "./fs.ts";

/** One member of the archive, as the central directory describes it. */
export interface ZipEntry {
  /** Name inside the archive (`archive/data.pkl`, `archive/data/0`, ...). */
  readonly name: string;
  /** 0 = STORED, 8 = DEFLATE; other methods are rejected when read. */
  readonly method: number;
  readonly compressedSize: number;
  /** Uncompressed size in bytes. */
  readonly size: number;
  readonly crc32: number;
  /** Offset of the local file header. */
  readonly localHeaderOffset: number;
}

/** An opened archive. Reads go straight to the underlying file. */
export interface ZipArchive {
  readonly path: string;
  /** Entries in central-directory order. */
  readonly entries: readonly ZipEntry[];
  /** Entry by exact name, or undefined. */
  get(name: string): ZipEntry | undefined;
  /** Absolute file offset of the entry's (compressed) data, from its local header. */
  dataOffset(entry: ZipEntry): Promise<number>;
  /** Whole entry, decompressed, with its CRC-32 checked. */
  readEntry(entry: ZipEntry): Promise<Uint8Array>;
  /** `length` bytes at `offset` inside the uncompressed entry (STORED entries read only that range). */
  readRange(entry: ZipEntry, offset: number, length: number): Promise<Uint8Array>;
  close(): void;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_MIN = 22;
const MAX_COMMENT = 0xffff;
const CENTRAL_MIN = 46;
/** DEFLATE's largest expansion: a 258-byte match coded in two bits. */
const MAX_DEFLATE_RATIO = 1032;
/** A central directory larger than this is not a checkpoint's (a million entries is ~100 MB). */
const MAX_CENTRAL_DIR = 512 * 1024 * 1024;

/** True if the first bytes are a ZIP local-header (or empty-archive EOCD) signature. */
export function looksLikeZip(head: Uint8Array): boolean {
  if (head.length < 4) return false;
  const sig = new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true);
  return sig === SIG_LOCAL || sig === SIG_EOCD;
}

/** Read the central directory of `file`. Malformed archives raise a LorakitError naming it. */
export async function openZip(file: RandomAccessFile): Promise<ZipArchive> {
  const bad = (what: string): LorakitError =>
    new LorakitError(
      `${file.path}: not a valid ZIP archive (${what}); the file is truncated or corrupt`,
    );
  if (file.size < EOCD_MIN) throw bad(`${file.size} bytes is too short for a ZIP archive`);

  const tailLen = Math.min(file.size, EOCD_MIN + MAX_COMMENT);
  const tailStart = file.size - tailLen;
  const tail = await file.read(tailStart, tailLen);
  const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  // Scan backwards: the record sits before an optional comment of up to 64 KiB.
  for (let i = tailLen - EOCD_MIN; i >= 0; i--) {
    if (
      tv.getUint32(i, true) === SIG_EOCD && i + EOCD_MIN + tv.getUint16(i + 20, true) <= tailLen
    ) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw bad("end-of-central-directory record not found");
  if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) {
    throw bad("multi-disk archives are not supported");
  }
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  let cdEnd = tailStart + eocd;

  // ZIP64: a locator 20 bytes before the EOCD points at the 64-bit EOCD record.
  const locAt = tailStart + eocd - 20;
  if (locAt >= 0) {
    const loc = await file.read(locAt, 20);
    const lv = new DataView(loc.buffer, loc.byteOffset, 20);
    if (lv.getUint32(0, true) === SIG_ZIP64_LOCATOR) {
      const z64At = safeU64(lv, 8, () => bad("ZIP64 locator offset is too large"));
      if (z64At + 56 > locAt) throw bad("ZIP64 end-of-central-directory offset is out of range");
      const rec = await file.read(z64At, 56);
      const rv = new DataView(rec.buffer, rec.byteOffset, 56);
      if (rv.getUint32(0, true) !== SIG_ZIP64_EOCD) throw bad("ZIP64 record signature mismatch");
      const tooBig = () => bad("ZIP64 central directory field is too large");
      count = safeU64(rv, 32, tooBig);
      cdSize = safeU64(rv, 40, tooBig);
      cdOffset = safeU64(rv, 48, tooBig);
      cdEnd = z64At;
    }
  }
  if (cdOffset + cdSize > cdEnd) throw bad("central directory lies outside the file");
  if (cdSize > MAX_CENTRAL_DIR) {
    throw bad(`central directory of ${cdSize} bytes is implausibly large`);
  }
  if (count * CENTRAL_MIN > cdSize) {
    throw bad(`${count} entries cannot fit in a ${cdSize}-byte central directory`);
  }

  const cd = await file.read(cdOffset, cdSize);
  const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const entries: ZipEntry[] = [];
  const byName = new Map<string, ZipEntry>();
  let p = 0;
  for (let n = 0; n < count; n++) {
    if (p + CENTRAL_MIN > cdSize || cv.getUint32(p, true) !== SIG_CENTRAL) {
      throw bad(`central directory entry ${n} is malformed`);
    }
    const flags = cv.getUint16(p + 8, true);
    const method = cv.getUint16(p + 10, true);
    const crc32 = cv.getUint32(p + 16, true);
    let compressedSize = cv.getUint32(p + 20, true);
    let size = cv.getUint32(p + 24, true);
    const nameLen = cv.getUint16(p + 28, true);
    const extraLen = cv.getUint16(p + 30, true);
    const commentLen = cv.getUint16(p + 32, true);
    let localHeaderOffset = cv.getUint32(p + 42, true);
    const end = p + CENTRAL_MIN + nameLen + extraLen + commentLen;
    if (end > cdSize) throw bad(`central directory entry ${n} runs past the directory`);
    const nameBytes = cd.subarray(p + CENTRAL_MIN, p + CENTRAL_MIN + nameLen);
    // Bit 11 marks UTF-8 names; others are CP437, which agrees with Latin-1 on ASCII names.
    const name = new TextDecoder(flags & 0x800 ? "utf-8" : "latin1").decode(nameBytes);
    if (flags & 1) throw new LorakitError(`${file.path}: entry '${name}' is encrypted`);

    // ZIP64 extra field (id 1) carries, in order, only the fields saturated at 0xFFFFFFFF.
    let e = p + CENTRAL_MIN + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = cv.getUint16(e, true);
      const len = cv.getUint16(e + 2, true);
      if (e + 4 + len > extraEnd) throw bad(`extra field of entry '${name}' is malformed`);
      if (id === 1) {
        let q = e + 4;
        const next = (): number => {
          if (q + 8 > e + 4 + len) throw bad(`ZIP64 extra field of entry '${name}' is too short`);
          const v = safeU64(cv, q, () => bad(`ZIP64 size of entry '${name}' is too large`));
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
      }
      e += 4 + len;
    }
    if (localHeaderOffset + 30 + compressedSize > cdOffset) {
      throw bad(`data of entry '${name}' lies outside the file`);
    }
    // Inflating allocates the declared size up front, so it must be one DEFLATE can produce.
    if (method === 8 && size > compressedSize * MAX_DEFLATE_RATIO + 1024) {
      throw bad(
        `entry '${name}' declares ${size} bytes from ${compressedSize} compressed; ` +
          `DEFLATE expands at most ${MAX_DEFLATE_RATIO}:1`,
      );
    }
    const entry: ZipEntry = { name, method, compressedSize, size, crc32, localHeaderOffset };
    entries.push(entry);
    if (!byName.has(name)) byName.set(name, entry);
    p = end;
  }
  return new Archive(file, entries, byName, bad);
}

class Archive implements ZipArchive {
  readonly path: string;
  #offsets = new Map<ZipEntry, number>();

  constructor(
    private file: RandomAccessFile,
    readonly entries: readonly ZipEntry[],
    private byName: Map<string, ZipEntry>,
    private bad: (what: string) => LorakitError,
  ) {
    this.path = file.path;
  }

  get(name: string): ZipEntry | undefined {
    return this.byName.get(name);
  }

  async dataOffset(entry: ZipEntry): Promise<number> {
    const cached = this.#offsets.get(entry);
    if (cached !== undefined) return cached;
    const h = await this.file.read(entry.localHeaderOffset, 30);
    const hv = new DataView(h.buffer, h.byteOffset, 30);
    if (hv.getUint32(0, true) !== SIG_LOCAL) {
      throw this.bad(`local header of entry '${entry.name}' not found`);
    }
    // The local name/extra lengths may differ from the central ones (torch pads the extra field).
    const off = entry.localHeaderOffset + 30 + hv.getUint16(26, true) + hv.getUint16(28, true);
    if (off + entry.compressedSize > this.file.size) {
      throw this.bad(`data of entry '${entry.name}' runs past the end of the file`);
    }
    this.#offsets.set(entry, off);
    return off;
  }

  async readEntry(entry: ZipEntry): Promise<Uint8Array> {
    const raw = await this.file.read(await this.dataOffset(entry), entry.compressedSize);
    let data: Uint8Array;
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size) {
        throw this.bad(`stored entry '${entry.name}' has mismatched sizes`);
      }
      data = raw;
    } else if (entry.method === 8) {
      data = await inflate(
        raw,
        entry.size,
        () => this.bad(`entry '${entry.name}' fails to inflate`),
      );
    } else {
      throw new LorakitError(
        `${this.path}: entry '${entry.name}' uses compression method ${entry.method}; expected 0 (stored) or 8 (deflate)`,
      );
    }
    if (crc32(data) !== entry.crc32) throw this.bad(`CRC-32 mismatch in entry '${entry.name}'`);
    return data;
  }

  async readRange(entry: ZipEntry, offset: number, length: number): Promise<Uint8Array> {
    if (!(offset >= 0 && length >= 0 && offset + length <= entry.size)) {
      throw this.bad(
        `range of ${length} bytes at ${offset} is outside entry '${entry.name}' (${entry.size} bytes)`,
      );
    }
    if (entry.method === 0 && entry.compressedSize === entry.size) {
      return await this.file.read((await this.dataOffset(entry)) + offset, length);
    }
    return (await this.readEntry(entry)).slice(offset, offset + length);
  }

  close(): void {
    this.file.close();
  }
}

/** A little-endian u64 as a number; values past 2^53 are errors, not silently rounded. */
function safeU64(v: DataView, at: number, tooBig: () => Error): number {
  const n = v.getBigUint64(at, true);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw tooBig();
  return Number(n);
}

/** Raw DEFLATE through the web-standard stream, refusing output past the declared size. */
async function inflate(raw: Uint8Array, size: number, fail: () => Error): Promise<Uint8Array> {
  const out = new Uint8Array(size);
  let got = 0;
  const stream = new Blob([raw as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new DecompressionStream("deflate-raw"),
  );
  const reader = stream.getReader();
  try {
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      if (got + value.length > size) throw fail();
      out.set(value, got);
      got += value.length;
    }
  } catch {
    await reader.cancel().catch(() => {});
    throw fail();
  }
  if (got !== size) throw fail();
  return out;
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (IEEE, as ZIP uses). */
export function crc32(data: Uint8Array): number {
  if (crcTable === null) {
    crcTable = new Uint32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c >>> 0;
    }
  }
  const t = crcTable;
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = t[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
