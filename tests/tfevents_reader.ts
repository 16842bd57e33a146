/**
 * A reader of TensorBoard event files for the tests, written from the formats' descriptions and
 * sharing no code with the writer: TFRecord framing (uint64 little-endian length, masked CRC32C
 * of the length bytes, data, masked CRC32C of the data), protocol buffer wire format (varint
 * keys, wire types 0/1/2/5), and the fields of the `Event`, `Summary` and `Summary.Value`
 * messages (event.proto, summary.proto).
 */

/** CRC32C (Castagnoli), bit by bit from the reflected polynomial. */
export function crc32cBitwise(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0x82f63b78 & -(crc & 1));
  }
  return (~crc) >>> 0;
}

/** The masked form TFRecord stores: rotated right 15 bits, plus 0xa282ead8. */
export function maskCrc(crc: number): number {
  const rotated = ((crc >>> 15) | (crc << 17)) >>> 0;
  return (rotated + 0xa282ead8) % 0x100000000;
}

/** The records of a TFRecord file; `truncated` when it ends inside a record. */
export interface Records {
  records: Uint8Array[];
  truncated: boolean;
}

/** Split a TFRecord stream, checking both CRCs of every record (a mismatch throws). */
export function readRecords(file: Uint8Array): Records {
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const records: Uint8Array[] = [];
  let at = 0;
  while (at < file.length) {
    if (file.length - at < 12) return { records, truncated: true };
    const lo = view.getUint32(at, true), hi = view.getUint32(at + 4, true);
    const length = hi * 0x100000000 + lo;
    const lengthCrc = view.getUint32(at + 8, true);
    if (lengthCrc !== maskCrc(crc32cBitwise(file.subarray(at, at + 8)))) {
      throw new Error(`record at byte ${at}: the length CRC does not match`);
    }
    if (file.length - at < 12 + length + 4) return { records, truncated: true };
    const data = file.subarray(at + 12, at + 12 + length);
    const dataCrc = view.getUint32(at + 12 + length, true);
    if (dataCrc !== maskCrc(crc32cBitwise(data))) {
      throw new Error(`record at byte ${at}: the data CRC does not match`);
    }
    records.push(data);
    at += 12 + length + 4;
  }
  return { records, truncated: false };
}

/** One decoded protocol buffer field. */
export interface Field {
  number: number;
  wireType: number;
  /** Varints as bigint; fixed64/fixed32 and length-delimited values as their raw bytes. */
  value: bigint | Uint8Array;
}

function readVarint(b: Uint8Array, at: number): [bigint, number] {
  let v = 0n, shift = 0n;
  for (;;) {
    if (at >= b.length) throw new Error("protobuf: varint runs past the end");
    const byte = b[at++];
    v |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return [v, at];
    shift += 7n;
    if (shift > 63n) throw new Error("protobuf: varint longer than 10 bytes");
  }
}

/** Every field of a message, in order. */
export function readFields(b: Uint8Array): Field[] {
  const out: Field[] = [];
  let at = 0;
  while (at < b.length) {
    const [key, next] = readVarint(b, at);
    at = next;
    const number = Number(key >> 3n), wireType = Number(key & 7n);
    if (number === 0) throw new Error("protobuf: field number 0");
    let value: bigint | Uint8Array;
    if (wireType === 0) [value, at] = readVarint(b, at);
    else if (wireType === 1 || wireType === 5) {
      const n = wireType === 1 ? 8 : 4;
      if (at + n > b.length) throw new Error("protobuf: fixed field runs past the end");
      value = b.subarray(at, at + n);
      at += n;
    } else if (wireType === 2) {
      const [len, start] = readVarint(b, at);
      const end = start + Number(len);
      if (end > b.length) throw new Error("protobuf: length-delimited field runs past the end");
      value = b.subarray(start, end);
      at = end;
    } else throw new Error(`protobuf: wire type ${wireType} not expected here`);
    out.push({ number, wireType, value });
  }
  return out;
}

/** One `Summary.Value`: its tag and, for simple_value scalars, the float. */
export interface SummaryValue {
  tag: string;
  simpleValue: number | null;
}

/** One `Event`, as far as scalar logs use it. */
export interface DecodedEvent {
  wallTime: number;
  /** int64; 0 when absent (proto3 default). */
  step: number;
  fileVersion: string | null;
  values: SummaryValue[] | null;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function bytesOf(f: Field): Uint8Array {
  if (!(f.value instanceof Uint8Array)) throw new Error(`field ${f.number}: expected bytes`);
  return f.value;
}

function decodeValue(b: Uint8Array): SummaryValue {
  const v: SummaryValue = { tag: "", simpleValue: null };
  for (const f of readFields(b)) {
    if (f.number === 1 && f.wireType === 2) v.tag = utf8.decode(bytesOf(f));
    else if (f.number === 2 && f.wireType === 5) {
      const raw = bytesOf(f);
      v.simpleValue = new DataView(raw.buffer, raw.byteOffset, 4).getFloat32(0, true);
    }
  }
  return v;
}

/** Decode an `Event` (wall_time 1, step 2, file_version 3, summary 5). */
export function decodeEvent(b: Uint8Array): DecodedEvent {
  const e: DecodedEvent = { wallTime: 0, step: 0, fileVersion: null, values: null };
  for (const f of readFields(b)) {
    if (f.number === 1 && f.wireType === 1) {
      const raw = bytesOf(f);
      e.wallTime = new DataView(raw.buffer, raw.byteOffset, 8).getFloat64(0, true);
    } else if (f.number === 2 && f.wireType === 0) {
      e.step = Number(BigInt.asIntN(64, f.value as bigint));
    } else if (f.number === 3 && f.wireType === 2) e.fileVersion = utf8.decode(bytesOf(f));
    else if (f.number === 5 && f.wireType === 2) {
      e.values = readFields(bytesOf(f)).filter((v) => v.number === 1 && v.wireType === 2)
        .map((v) => decodeValue(bytesOf(v)));
    }
  }
  return e;
}

/** Read a whole event file. */
export async function readEventFile(
  path: string,
): Promise<{ events: DecodedEvent[]; truncated: boolean }> {
  const { records, truncated } = readRecords(await Deno.readFile(path));
  return { events: records.map(decodeEvent), truncated };
}

/** The scalars of an event file as (step, tag, value) in file order. */
export function scalarsOf(events: DecodedEvent[]): { step: number; tag: string; value: number }[] {
  return events.flatMap((e) =>
    (e.values ?? []).map((v) => {
      if (v.simpleValue === null) throw new Error(`tag ${v.tag}: not a simple_value scalar`);
      return { step: e.step, tag: v.tag, value: v.simpleValue };
    })
  );
}
