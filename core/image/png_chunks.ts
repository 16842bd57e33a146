/**
 * PNG chunk-level reading and writing: CRC-32, a bounds-checked chunk walker (so a truncated or
 * corrupt file is reported precisely instead of crashing a decoder), and the tEXt/iTXt chunks
 * that carry generation parameters (A1111's `parameters` key) and other metadata.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** The 8-byte PNG signature. */
export const PNG_SIGNATURE: Uint8Array = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as PNG and zip use) of `bytes`, continuing from `crc` when given. */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** One chunk: its 4-letter type, its data, and the byte offset of its length field. */
export interface PngChunk {
  readonly type: string;
  readonly data: Uint8Array;
  readonly offset: number;
}

/** True if `bytes` starts with the PNG signature. */
export function isPng(bytes: Uint8Array): boolean {
  if (bytes.length < 8) return false;
  for (let i = 0; i < 8; i++) if (bytes[i] !== PNG_SIGNATURE[i]) return false;
  return true;
}

/**
 * Every chunk up to and including IEND, with lengths and CRCs checked. `name` (the file) goes
 * into every error message.
 */
export function readChunks(bytes: Uint8Array, name: string): PngChunk[] {
  if (!isPng(bytes)) throw new LorakitError(`${name}: not a PNG file (bad signature)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: PngChunk[] = [];
  let p = 8;
  for (;;) {
    if (p + 12 > bytes.length) {
      throw new LorakitError(
        `${name}: PNG is truncated at byte ${p} of ${bytes.length} (expected a chunk, found end of file)`,
      );
    }
    const len = view.getUint32(p);
    const type = String.fromCharCode(bytes[p + 4], bytes[p + 5], bytes[p + 6], bytes[p + 7]);
    if (!/^[A-Za-z]{4}$/.test(type)) {
      throw new LorakitError(`${name}: corrupt PNG, invalid chunk type at byte ${p + 4}`);
    }
    if (len > 0x7fffffff || p + 12 + len > bytes.length) {
      throw new LorakitError(
        `${name}: PNG is truncated: chunk ${type} at byte ${p} declares ${len} bytes, only ${
          Math.max(0, bytes.length - p - 12)
        } remain`,
      );
    }
    const crc = view.getUint32(p + 8 + len);
    if (crc32(bytes.subarray(p + 4, p + 8 + len)) !== crc) {
      throw new LorakitError(`${name}: corrupt PNG, CRC mismatch in chunk ${type} at byte ${p}`);
    }
    out.push({ type, data: bytes.subarray(p + 8, p + 8 + len), offset: p });
    p += 12 + len;
    if (type === "IEND") return out;
  }
}

/** Serialise one chunk (length, type, data, CRC). */
export function makeChunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

function isLatin1(s: string): boolean {
  // deno-lint-ignore no-control-regex
  return /^[\u0000-\u00ff]*$/.test(s);
}

/**
 * A text chunk for `key` = `value`: tEXt when the value is Latin-1 (what readers such as A1111
 * and Pillow expect for `parameters`), else an uncompressed iTXt holding UTF-8.
 */
export function textChunk(key: string, value: string): Uint8Array {
  if (key.length < 1 || key.length > 79 || !isLatin1(key) || key.includes("\0")) {
    throw new LorakitError(`PNG text key "${key}" must be 1-79 Latin-1 characters without NUL`);
  }
  const keyBytes = Uint8Array.from(key, (c) => c.charCodeAt(0));
  if (isLatin1(value)) {
    const data = new Uint8Array(keyBytes.length + 1 + value.length);
    data.set(keyBytes);
    for (let i = 0; i < value.length; i++) data[keyBytes.length + 1 + i] = value.charCodeAt(i);
    return makeChunk("tEXt", data);
  }
  const utf8 = new TextEncoder().encode(value);
  // keyword NUL, compression flag 0, method 0, empty language tag NUL, empty translated key NUL
  const data = new Uint8Array(keyBytes.length + 5 + utf8.length);
  data.set(keyBytes);
  data.set(utf8, keyBytes.length + 5);
  return makeChunk("iTXt", data);
}

/** A copy of `png` with text chunks for `entries` inserted just before the first IDAT. */
export function insertTextChunks(
  png: Uint8Array,
  entries: Record<string, string>,
  name = "PNG data",
): Uint8Array {
  const chunks = readChunks(png, name);
  const idat = chunks.find((c) => c.type === "IDAT");
  if (!idat) throw new LorakitError(`${name}: PNG has no IDAT chunk`);
  const extra = Object.entries(entries).map(([k, v]) => textChunk(k, v));
  const extraLen = extra.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(png.length + extraLen);
  out.set(png.subarray(0, idat.offset));
  let p = idat.offset;
  for (const c of extra) (out.set(c, p)), (p += c.length);
  out.set(png.subarray(idat.offset), p);
  return out;
}

/** Bytes as ISO-8859-1 (the web's "latin1" label means windows-1252, which differs at 0x80-0x9f). */
function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return s;
}

/**
 * The tEXt and uncompressed iTXt entries of a PNG, in file order (later duplicates win).
 * Compressed zTXt/iTXt entries are skipped: reading them would need an async inflate.
 */
export function readTextChunks(png: Uint8Array, name = "PNG data"): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of readChunks(png, name)) {
    const z = c.data.indexOf(0);
    if (z < 1) continue;
    const key = latin1(c.data.subarray(0, z));
    if (c.type === "tEXt") out[key] = latin1(c.data.subarray(z + 1));
    else if (c.type === "iTXt" && c.data[z + 1] === 0) {
      const lang = c.data.indexOf(0, z + 3);
      const tkey = lang < 0 ? -1 : c.data.indexOf(0, lang + 1);
      if (tkey >= 0) out[key] = new TextDecoder().decode(c.data.subarray(tkey + 1));
    }
  }
  return out;
}
