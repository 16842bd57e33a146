/**
 * Byte-level mutations: bit flips, bytes set to 0x00/0xff/random, truncation, length and size
 * fields set to huge or off-by-one values, duplicated chunks, repeated and spliced ranges. Each
 * returns a new array and never modifies its input (seeds are reused by every case).
 *
 * @module
 */
import type { Rng } from "./rng.ts";

/** Inputs never grow past this, so a repeated range stays cheap to build and to parse. */
export const MAX_INPUT_BYTES = 192 * 1024;

/** An integer field of a format: a length, size, offset, count or dimension. */
export interface Field {
  /** Byte offset of the field. */
  at: number;
  size: 1 | 2 | 4 | 8;
  little: boolean;
  /** What it is, e.g. "IHDR width" (for reports). */
  name: string;
}

/** Where a format's length fields and whole chunks (segments, entries, records) lie. */
export interface Layout {
  fields: Field[];
  /** `[start, end)` byte ranges of self-contained chunks, for duplication and removal. */
  chunks: [number, number][];
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A position in [0, n), biased towards the start, where headers and length fields live. */
function position(r: Rng, n: number): number {
  if (n <= 0) return 0;
  return r.chance(0.5) ? r.int(Math.min(n, 512)) : r.int(n);
}

/** A range `[s, e)` inside `n` bytes, mostly short. */
function range(r: Rng, n: number): [number, number] {
  const s = position(r, n);
  const len = 1 + (r.chance(0.7) ? r.int(16) : r.int(Math.max(1, n - s)));
  return [s, Math.min(n, s + len)];
}

/** 1 to 8 single-bit flips. */
export function flipBits(b: Uint8Array, r: Rng): Uint8Array {
  const out = b.slice();
  if (out.length === 0) return out;
  for (let k = 1 + r.int(r.chance(0.7) ? 2 : 8); k > 0; k--) {
    out[position(r, out.length)] ^= 1 << r.int(8);
  }
  return out;
}

/** 1 to 4 bytes (or a short run) set to 0x00, 0xff, 0x7f, 0x80 or a random value. */
export function setBytes(b: Uint8Array, r: Rng): Uint8Array {
  const out = b.slice();
  if (out.length === 0) return out;
  const v = r.pick([0x00, 0xff, 0x7f, 0x80, -1]);
  const [s, e] = r.chance(0.3) ? range(r, out.length) : [position(r, out.length), -1];
  const end = e < 0 ? Math.min(out.length, s + 1 + r.int(4)) : e;
  for (let i = s; i < end; i++) out[i] = v < 0 ? r.int(256) : v;
  return out;
}

/** The first `k` bytes, `k` anywhere (often just short of the end). */
export function truncate(b: Uint8Array, r: Rng): Uint8Array {
  if (b.length === 0) return b.slice();
  const k = r.chance(0.3) ? Math.max(0, b.length - 1 - r.int(16)) : r.int(b.length);
  return b.slice(0, k);
}

/** A range inserted again right after itself (1 to 3 copies). */
export function duplicateRange(b: Uint8Array, r: Rng, chunk?: [number, number]): Uint8Array {
  const [s, e] = chunk ?? range(r, b.length);
  const copies = Array.from({ length: 1 + r.int(3) }, () => b.subarray(s, e));
  const out = concat(b.subarray(0, e), ...copies, b.subarray(e));
  return out.length > MAX_INPUT_BYTES ? out.slice(0, MAX_INPUT_BYTES) : out;
}

/** A range repeated until the input reaches up to {@link MAX_INPUT_BYTES}: quadratic-time bait. */
export function repeatRange(b: Uint8Array, r: Rng, chunk?: [number, number]): Uint8Array {
  const [s, e] = chunk ?? range(r, b.length);
  const unit = b.subarray(s, e);
  if (unit.length === 0) return b.slice();
  const room = Math.max(0, MAX_INPUT_BYTES - b.length);
  const target = r.chance(0.5) ? room : r.int(room + 1);
  const copies = Math.floor(target / unit.length);
  const fill = new Uint8Array(copies * unit.length);
  for (let i = 0; i < copies; i++) fill.set(unit, i * unit.length);
  return concat(b.subarray(0, e), fill, b.subarray(e));
}

/** A range removed. */
export function deleteRange(b: Uint8Array, r: Rng, chunk?: [number, number]): Uint8Array {
  const [s, e] = chunk ?? range(r, b.length);
  return concat(b.subarray(0, s), b.subarray(e));
}

/** A range overwritten, or preceded, by a range copied from elsewhere (here or `other`). */
export function spliceRange(b: Uint8Array, r: Rng, other?: Uint8Array): Uint8Array {
  const src = other ?? b;
  const [s, e] = range(r, src.length);
  const piece = src.slice(s, e);
  const at = position(r, b.length + 1);
  if (r.chance(0.5)) {
    const out = b.slice();
    out.set(piece.subarray(0, Math.max(0, out.length - at)), at);
    return out;
  }
  const out = concat(b.subarray(0, at), piece, b.subarray(at));
  return out.length > MAX_INPUT_BYTES ? out.slice(0, MAX_INPUT_BYTES) : out;
}

/** 1 to 16 random bytes inserted. */
export function insertBytes(b: Uint8Array, r: Rng): Uint8Array {
  const at = position(r, b.length + 1);
  const piece = Uint8Array.from({ length: 1 + r.int(16) }, () => r.int(256));
  return concat(b.subarray(0, at), piece, b.subarray(at));
}

const BIG = [
  0x7f,
  0x80,
  0xff,
  0x7fff,
  0x8000,
  0xffff,
  0x7fffffff,
  0x80000000,
  0xffffffff,
  2 ** 32,
  2 ** 53 - 1,
  2 ** 53,
  2 ** 63,
  2 ** 64 - 1,
];

/** The value stored in `f`. */
export function readField(b: Uint8Array, f: Field): number {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (f.size === 1) return b[f.at];
  if (f.size === 2) return v.getUint16(f.at, f.little);
  if (f.size === 4) return v.getUint32(f.at, f.little);
  return Number(v.getBigUint64(f.at, f.little));
}

/** Store `value` (clamped to the field's width) into `f` of `b`, in place. */
export function writeField(b: Uint8Array, f: Field, value: number): void {
  if (f.at < 0 || f.at + f.size > b.length) return; // the input no longer reaches the field
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const max = 2 ** (8 * f.size) - 1;
  const n = Math.max(0, Math.min(max, Math.floor(value)));
  if (f.size === 1) b[f.at] = n;
  else if (f.size === 2) v.setUint16(f.at, n, f.little);
  else if (f.size === 4) v.setUint32(f.at, n >>> 0, f.little);
  else v.setBigUint64(f.at, BigInt.asUintN(64, BigInt(n)), f.little);
}

/**
 * A length/size/offset field set to a value a parser must not trust: 0, 1, one past or short of
 * its value, twice it, the bytes that remain, the whole input, or huge (up to 2^64 - 1).
 */
export function setField(b: Uint8Array, f: Field, r: Rng): Uint8Array {
  const out = b.slice();
  if (f.at + f.size > out.length) return out;
  const old = readField(out, f);
  const rest = out.length - f.at - f.size;
  const choices = [
    0,
    1,
    old + 1,
    old - 1,
    old * 2,
    old * 2 ** (1 + r.int(12)),
    old + 1 + r.int(64),
    rest,
    rest + 1,
    out.length,
    r.next() * 2 ** (8 * f.size),
    ...BIG,
    ...BIG,
  ];
  writeField(out, f, r.pick(choices));
  return out;
}

/** One generic mutation, picked at random. */
export function mutateBytes(b: Uint8Array, r: Rng, other?: Uint8Array): Uint8Array {
  switch (r.int(9)) {
    case 0:
    case 1:
      return flipBits(b, r);
    case 2:
      return setBytes(b, r);
    case 3:
      return truncate(b, r);
    case 4:
      return duplicateRange(b, r);
    case 5:
      return r.chance(0.5) ? repeatRange(b, r) : deleteRange(b, r);
    case 6:
      return spliceRange(b, r, other);
    case 7:
      return insertBytes(b, r);
    default:
      return r.chance(0.5) ? flipBits(b, r) : setBytes(b, r);
  }
}

/** One edit of a whole chunk: duplicated, dropped, repeated many times, or moved. */
export function mutateChunk(b: Uint8Array, chunk: [number, number], r: Rng): Uint8Array {
  const k = r.int(10);
  if (k < 4) return duplicateRange(b, r, chunk);
  if (k < 6) return deleteRange(b, r, chunk);
  if (k < 8) return repeatRange(b, r, chunk);
  // Moved elsewhere (chunks out of order).
  const rest = deleteRange(b, r, chunk);
  const at = r.int(rest.length + 1);
  return concat(rest.subarray(0, at), b.subarray(chunk[0], chunk[1]), rest.subarray(at));
}
