/**
 * TensorBoard event files as torch's `SummaryWriter` writes them for kohya's trackers: a TFRecord
 * stream of `Event` protocol buffers named `events.out.tfevents.<unix seconds>.<host>.<pid>.<n>`,
 * whose first event carries `file_version` "brain.Event:2" and each later one a `Summary` with one
 * scalar: `Summary.Value{tag, simple_value}` (a float32, the encoding torch's `add_scalar` uses by
 * default and that TensorBoard reads as a scalar), plus the step and the wall time.
 *
 * TFRecord framing per record: the data length as a little-endian uint64, the masked CRC32C of
 * those 8 bytes, the data, the masked CRC32C of the data. This module only makes the bytes; the
 * command line's writer (cli/tensorboard_log.ts) appends them to the file.
 *
 * @module
 */
/** The CRC32C (Castagnoli) table, reflected polynomial 0x82F63B78. */
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC32C of `bytes`. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15, add a constant (mod 2^32). */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** Just the protocol buffer encodings an Event needs. */
class ProtoWriter {
  private parts: number[] = [];

  private varint(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`protobuf varint: expected a non-negative integer, found ${v}`);
    }
    while (v >= 0x80) {
      this.parts.push((v % 0x80) | 0x80);
      v = Math.floor(v / 0x80);
    }
    this.parts.push(v);
  }

  private key(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  uint(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }

  double(field: number, v: number): this {
    this.key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.parts.push(...b);
    return this;
  }

  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.key(field, 2);
    this.varint(b.length);
    this.parts.push(...b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** One event: the file version header or one scalar. */
export type TensorBoardEvent =
  | { wallTime: number; fileVersion: string }
  | { wallTime: number; step: number; tag: string; value: number };

/**
 * The `Event` message: wall_time (1, double), step (2, int64), file_version (3, string) or
 * summary (5, a `Summary` whose value (1) holds tag (1) and simple_value (2, float)). A step of 0
 * is left out, as proto3 leaves out default values.
 */
export function encodeEvent(e: TensorBoardEvent): Uint8Array {
  const w = new ProtoWriter().double(1, e.wallTime);
  if ("fileVersion" in e) return w.string(3, e.fileVersion).finish();
  if (e.step !== 0) w.uint(2, e.step);
  const value = new ProtoWriter().string(1, e.tag).float(2, e.value).finish();
  const summary = new ProtoWriter().bytes(1, value).finish();
  return w.bytes(5, summary).finish();
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + 16);
  const v = new DataView(out.buffer);
  v.setBigUint64(0, BigInt(data.length), true);
  v.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  v.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

/** The folder kohya's TensorBoard tracker writes to: `<logging_dir>/<log_prefix><stamp>/<name>`. */
export function tensorboardFolder(
  loggingDir: string,
  logPrefix: string | null,
  stamp: string,
  trackerName: string | null,
): string {
  return `${loggingDir}/${logPrefix ?? ""}${stamp}/${trackerName ?? "network_train"}`;
}

/** The event file name torch's writer uses. */
export function eventFileName(unixSeconds: number, host: string, pid: number, n: number): string {
  return `events.out.tfevents.${String(Math.floor(unixSeconds)).padStart(10, "0")}.${host}.` +
    `${pid}.${n}`;
}

/** The bytes that append `values` (one event per value, in the object's order) at `step`. */
export function scalarRecords(
  step: number,
  values: Record<string, number>,
  wallTime: number,
): Uint8Array {
  return joinRecords(
    Object.entries(values).map(([tag, value]) => ({ wallTime, step, tag, value })),
  );
}

/** The bytes that start an event file: its file-version event. */
export function fileVersionRecord(wallTime: number): Uint8Array {
  return joinRecords([{ wallTime, fileVersion: "brain.Event:2" }]);
}

function joinRecords(events: TensorBoardEvent[]): Uint8Array {
  const records = events.map((e) => tfRecord(encodeEvent(e)));
  const buf = new Uint8Array(records.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of records) {
    buf.set(r, at);
    at += r.length;
  }
  return buf;
}
