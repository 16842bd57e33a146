/**
 * Writing ZIP archives of STORED (uncompressed) entries, laid out as PyTorch's
 * `PyTorchStreamWriter` lays out a `torch.save` file: each entry's data can start on a 64-byte
 * boundary, padded through an `FB` extra field of the local header filled with `Z` bytes.
 *
 * The archive is produced as a sequence of chunks (headers and the entries' own bytes, never
 * copied), for `writeAtomic`. Archives that would need ZIP64 (past 4 GiB or 65535 entries) are
 * refused.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { crc32 } from "./zip.ts";

/** One member of the archive. */
export interface ZipEntryToWrite {
  /** Name inside the archive (`archive/data.pkl`, ...). */
  name: string;
  data: Uint8Array;
}

/** Options of {@link zipStoredChunks}. */
export interface ZipWriteOptions {
  /** Align every entry's data to this many bytes (torch uses 64); 0 or 1 for none. */
  align?: number;
  /** Named in errors. */
  path?: string;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const LOCAL_LEN = 30;
const CENTRAL_LEN = 46;
const EOCD_LEN = 22;
const VERSION = 20;
/** MS-DOS date of 1980-01-01, the earliest a ZIP can record. */
const DOS_DATE = (0 << 9) | (1 << 5) | 1;
const U32_MAX = 0xffffffff;

/** Bytes of the local-header extra field that puts data at a multiple of `align`. */
function alignmentExtra(dataStart: number, align: number): Uint8Array {
  if (align <= 1) return new Uint8Array(0);
  let pad = (align - (dataStart % align)) % align;
  if (pad === 0) return new Uint8Array(0);
  if (pad < 4) pad += align;
  const extra = new Uint8Array(pad).fill(0x5a); // 'Z'
  const v = new DataView(extra.buffer);
  extra[0] = 0x46; // 'F'
  extra[1] = 0x42; // 'B'
  v.setUint16(2, pad - 4, true);
  return extra;
}

/**
 * The chunks of a ZIP archive holding `entries` STORED, in order, then the central directory and
 * the end record. CRC-32s are computed as the chunks are pulled.
 */
export function* zipStoredChunks(
  entries: readonly ZipEntryToWrite[],
  options: ZipWriteOptions = {},
): Generator<Uint8Array> {
  const align = options.align ?? 0;
  const where = options.path !== undefined ? `${options.path}: ` : "";
  if (entries.length > 0xffff) {
    throw new LorakitError(
      `${where}${entries.length} archive entries need ZIP64, which lorakit does not write`,
    );
  }
  const enc = new TextEncoder();
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = enc.encode(e.name);
    // Bit 11: the name is UTF-8 (set only when it is not plain ASCII, as zip tools do).
    const flags = name.length !== e.name.length ? 0x800 : 0;
    const crc = crc32(e.data);
    const extra = alignmentExtra(offset + LOCAL_LEN + name.length, align);
    const headerLen = LOCAL_LEN + name.length + extra.length;
    if (offset + headerLen + e.data.length > U32_MAX) {
      throw new LorakitError(
        `${where}the archive passes 4 GiB at entry '${e.name}'; that needs ZIP64, which lorakit ` +
          "does not write (save as .safetensors instead)",
      );
    }
    const local = new Uint8Array(headerLen);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, VERSION, true);
    lv.setUint16(6, flags, true);
    lv.setUint16(8, 0, true); // STORED
    lv.setUint16(10, 0, true);
    lv.setUint16(12, DOS_DATE, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, e.data.length, true);
    lv.setUint32(22, e.data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, extra.length, true);
    local.set(name, LOCAL_LEN);
    local.set(extra, LOCAL_LEN + name.length);

    const cd = new Uint8Array(CENTRAL_LEN + name.length);
    const cv = new DataView(cd.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, VERSION, true);
    cv.setUint16(6, VERSION, true);
    cv.setUint16(8, flags, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, 0, true);
    cv.setUint16(14, DOS_DATE, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, e.data.length, true);
    cv.setUint32(24, e.data.length, true);
    cv.setUint16(28, name.length, true);
    // Extra, comment, disk number, attributes: all zero.
    cv.setUint32(42, offset, true);
    cd.set(name, CENTRAL_LEN);
    central.push(cd);

    yield local;
    if (e.data.length > 0) yield e.data;
    offset += headerLen + e.data.length;
  }
  const cdSize = central.reduce((n, c) => n + c.length, 0);
  if (offset + cdSize > U32_MAX) {
    throw new LorakitError(
      `${where}the archive passes 4 GiB; that needs ZIP64, which lorakit does not write`,
    );
  }
  yield* central;
  const end = new Uint8Array(EOCD_LEN);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, SIG_EOCD, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  yield end;
}
