/**
 * Pickle-aware mutation, shared by the pickle and checkpoint targets: an opcode walker that finds
 * every length argument (BINUNICODE, BINBYTES, LONG4, FRAME, ...), integer argument (tensor
 * sizes, strides, offsets) and memo index, plus edits made at opcode boundaries: an integer
 * re-encoded huge or negative, opcodes inserted, dropped or repeated, deep MARK nesting, a
 * refused global.
 *
 * @module
 */
import type { Field } from "./mutate_bytes.ts";
import type { Rng } from "./rng.ts";

/** One opcode of a stream: where it starts and ends, and its fixed-size argument if any. */
export interface PickleOp {
  at: number;
  end: number;
  op: number;
  field?: Field;
}

const FIXED: Record<number, [1 | 2 | 4 | 8, string]> = {
  0x80: [1, "PROTO"],
  0x4b: [1, "BININT1 value"],
  0x68: [1, "BINGET index"],
  0x71: [1, "BINPUT index"],
  0x82: [1, "EXT1"],
  0x4d: [2, "BININT2 value"],
  0x83: [2, "EXT2"],
  0x4a: [4, "BININT value"],
  0x6a: [4, "LONG_BINGET index"],
  0x72: [4, "LONG_BINPUT index"],
  0x84: [4, "EXT4"],
  0x95: [8, "FRAME length"],
};
/** Opcodes whose argument is a length followed by that many bytes. */
const COUNTED: Record<number, [1 | 4 | 8, string]> = {
  0x8c: [1, "SHORT_BINUNICODE length"],
  0x43: [1, "SHORT_BINBYTES length"],
  0x55: [1, "SHORT_BINSTRING length"],
  0x8a: [1, "LONG1 length"],
  0x58: [4, "BINUNICODE length"],
  0x42: [4, "BINBYTES length"],
  0x54: [4, "BINSTRING length"],
  0x8b: [4, "LONG4 length"],
  0x8d: [8, "BINUNICODE8 length"],
  0x8e: [8, "BINBYTES8 length"],
  0x96: [8, "BYTEARRAY8 length"],
};
const ONE_LINE = new Set([0x49, 0x4c, 0x46, 0x53, 0x56, 0x67, 0x70, 0x50]);
const TWO_LINES = new Set([0x63, 0x69]);
/** Opcodes without an argument. */
const BARE = new Set([
  0x28,
  0x2e,
  0x30,
  0x31,
  0x32,
  0x4e,
  0x51,
  0x52,
  0x61,
  0x62,
  0x64,
  0x65,
  0x6c,
  0x6f,
  0x73,
  0x74,
  0x75,
  0x29,
  0x5d,
  0x7d,
  0x81,
  0x85,
  0x86,
  0x87,
  0x88,
  0x89,
  0x8f,
  0x90,
  0x91,
  0x92,
  0x93,
  0x94,
  0x97,
  0x98,
]);

/**
 * The opcodes of the pickles in `b` from `from`, through `stops` STOP opcodes (several pickles
 * back to back, as legacy checkpoints hold); stops early at anything it cannot walk.
 */
export function walkPickle(b: Uint8Array, from = 0, stops = 1): { ops: PickleOp[]; end: number } {
  const ops: PickleOp[] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = from;
  let left = stops;
  while (p < b.length && left > 0) {
    const at = p;
    const op = b[p++];
    let field: Field | undefined;
    if (op in FIXED) {
      const [size, name] = FIXED[op];
      field = { at: p, size, little: true, name };
      p += size;
    } else if (op in COUNTED) {
      const [size, name] = COUNTED[op];
      if (p + size > b.length) break;
      field = { at: p, size, little: true, name };
      const n = size === 1
        ? b[p]
        : size === 4
        ? v.getUint32(p, true)
        : Number(v.getBigUint64(p, true));
      p += size + n;
    } else if (op === 0x47) p += 8;
    else if (ONE_LINE.has(op) || TWO_LINES.has(op)) {
      for (let k = TWO_LINES.has(op) ? 2 : 1; k > 0; k--) {
        const nl = b.indexOf(0x0a, p);
        if (nl < 0) return { ops, end: at };
        p = nl + 1;
      }
    } else if (!BARE.has(op)) break;
    if (p > b.length) break;
    ops.push({ at, end: p, op, field });
    if (op === 0x2e) left--;
  }
  return { ops, end: p };
}

/** The length, integer and memo fields of the pickles in `b` (see {@link walkPickle}). */
export function pickleFields(b: Uint8Array, from = 0, stops = 1): Field[] {
  return walkPickle(b, from, stops).ops.flatMap((o) => (o.field ? [o.field] : []));
}

function concat(...parts: (Uint8Array | number[])[]): Uint8Array {
  const arrays = parts.map((p) => (p instanceof Uint8Array ? p : new Uint8Array(p)));
  const out = new Uint8Array(arrays.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of arrays) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const text = (s: string) => new TextEncoder().encode(s);

/** An integer as BININT, LONG1 or protocol 0 INT. */
function encodeInt(n: bigint, r: Rng): Uint8Array {
  if (n >= -(2n ** 31n) && n < 2n ** 31n && r.chance(0.5)) {
    const b = new Uint8Array(5);
    b[0] = 0x4a;
    new DataView(b.buffer).setInt32(1, Number(n), true);
    return b;
  }
  if (r.chance(0.3)) return text(`I${n}\n`);
  const bytes: number[] = [];
  let v = n;
  while (v !== 0n && v !== -1n) {
    bytes.push(Number(v & 0xffn));
    v >>= 8n;
  }
  if (bytes.length === 0 || (bytes[bytes.length - 1] & 0x80) !== (n < 0n ? 0x80 : 0)) {
    bytes.push(n < 0n ? 0xff : 0);
  }
  return new Uint8Array([0x8a, bytes.length, ...bytes]);
}

const HOSTILE_INTS = [
  -1n,
  0n,
  2n ** 31n - 1n,
  2n ** 32n,
  2n ** 40n,
  2n ** 53n,
  2n ** 63n,
  -(2n ** 63n),
  10n ** 30n,
];

/** Fragments spliced in at an opcode boundary. */
const SNIPPETS: Uint8Array[] = [
  text("cos\nsystem\n"),
  text("cbuiltins\neval\n"),
  text("ctorch._utils\n_rebuild_tensor_v2\n"),
  text("ctorch\nFloatStorage\n"),
  text("ccollections\nOrderedDict\n"),
  new Uint8Array([0x28]), // MARK
  new Uint8Array([0x2e]), // STOP
  new Uint8Array([0x30]), // POP
  new Uint8Array([0x31]), // POP_MARK
  new Uint8Array([0x32]), // DUP
  new Uint8Array([0x52]), // REDUCE
  new Uint8Array([0x62]), // BUILD
  new Uint8Array([0x51]), // BINPERSID
  new Uint8Array([0x74]), // TUPLE
  new Uint8Array([0x73]), // SETITEM
  new Uint8Array([0x75]), // SETITEMS
  new Uint8Array([0x65]), // APPENDS
  new Uint8Array([0x94]), // MEMOIZE
  new Uint8Array([0x68, 0x00]), // BINGET 0
  new Uint8Array([0x6a, 0xff, 0xff, 0xff, 0x7f]), // LONG_BINGET huge
  new Uint8Array([0x71, 0x01]), // BINPUT 1
  new Uint8Array([0x8b, 0xff, 0xff, 0x00, 0x00]), // LONG4 of 65535 bytes
  new Uint8Array([0x95, 0, 0, 0, 0, 0, 0, 0, 0x80]), // FRAME 2^63
  new Uint8Array([0x97]), // NEXT_BUFFER
  new Uint8Array([0x82, 0x01]), // EXT1
  text("I99999999999999999999999999\n"),
  text("F1e999\n"),
  text("S'\\x41\\101\\n'\n"),
  text("Vcaf\\u00e9\\U0010ffff\n"),
  text("P0\n"),
  text("g0\n"),
  text("p9999999999\n"),
  new Uint8Array([0x7d, 0x28, 0x4b, 0x01, 0x4b, 0x02, 0x75]), // {1: 2}
];

/**
 * A value of `levels` nested containers, each holding the one below `fan` times by memo reference:
 * a few hundred bytes that are `fan ^ levels` items to anything that walks them as a tree.
 */
export function sharedBomb(
  kind: "tuple" | "dict" | "list",
  levels: number,
  fan: number,
): Uint8Array {
  const memo = [0x00, 0x00, 0xf0, 0x7f]; // a memo index the seeds never use
  // Each level is built from the memo and put back there (LONG_BINPUT, POP); the last is pushed.
  const out: number[] = [
    kind === "dict" ? 0x7d : kind === "list" ? 0x5d : 0x29,
    0x72,
    ...memo,
    0x30,
  ];
  for (let l = 0; l < levels; l++) {
    out.push(0x28); // MARK
    for (let k = 0; k < fan; k++) {
      if (kind === "dict") out.push(0x8c, 0x02, 0x6b, 0x30 + k); // key "k<k>"
      out.push(0x6a, ...memo); // LONG_BINGET
    }
    out.push(kind === "dict" ? 0x64 : kind === "list" ? 0x6c : 0x74, 0x72, ...memo, 0x30);
  }
  out.push(0x6a, ...memo);
  return new Uint8Array(out);
}

/** One edit at opcode boundaries of the pickle in `b` (from `from`, through `stops` STOPs). */
export function mutatePickle(b: Uint8Array, r: Rng, from = 0, stops = 1): Uint8Array {
  const { ops } = walkPickle(b, from, stops);
  if (ops.length === 0) return b.slice();
  const o = r.pick(ops);
  const ints = ops.filter((x) => x.op === 0x4b || x.op === 0x4d || x.op === 0x4a);
  switch (r.int(9)) {
    case 8: { // an integer replaced by a value that shares itself through the memo, level on level
      const t = ints.length > 0 ? r.pick(ints) : o;
      const bomb = sharedBomb(
        r.pick(["tuple", "dict", "list"]),
        r.pick([4, 12, 24, 40]),
        r.pick([2, 8]),
      );
      return concat(b.subarray(0, t.at), bomb, b.subarray(t.end));
    }
    case 7: { // a counted argument (LONG4, BINUNICODE, BINBYTES, ...) tens of kilobytes long
      const [op, size] = r.pick([[0x8b, 4], [0x58, 4], [0x42, 4], [0x54, 4], [0x8d, 8]] as const);
      const n = r.pick([255, 4096, 40000, 150000]);
      const head = new Uint8Array(1 + size);
      head[0] = op;
      new DataView(head.buffer).setUint32(1, n, true);
      const fill = r.chance(0.5) ? 0x61 : r.int(256);
      const body = new Uint8Array(n).fill(fill);
      return concat(b.subarray(0, o.at), head, body, b.subarray(o.at));
    }
    case 0: { // an integer (a size, stride, offset, key) re-encoded as a hostile value
      const t = ints.length > 0 ? r.pick(ints) : o;
      const n = r.chance(0.7)
        ? r.pick(HOSTILE_INTS)
        : BigInt(r.int(2 ** 31)) * (r.chance(0.2) ? -1n : 1n);
      return concat(b.subarray(0, t.at), encodeInt(n, r), b.subarray(t.end));
    }
    case 1: // a fragment inserted before an opcode
      return concat(b.subarray(0, o.at), r.pick(SNIPPETS), b.subarray(o.at));
    case 2: // an opcode dropped
      return concat(b.subarray(0, o.at), b.subarray(o.end));
    case 3: { // a run of opcodes repeated
      const j = Math.min(ops.length - 1, ops.indexOf(o) + r.int(8));
      const piece = b.subarray(o.at, ops[j].end);
      const times = r.chance(0.8) ? 1 + r.int(3) : 1000;
      const reps = concat(...Array.from({ length: times }, () => piece));
      return concat(b.subarray(0, ops[j].end), reps, b.subarray(ops[j].end));
    }
    case 4: { // deep MARK or EMPTY_LIST nesting
      const depth = r.pick([100, 10000, 100000]);
      const op = r.pick([0x28, 0x5d, 0x7d]);
      return concat(b.subarray(0, o.at), new Uint8Array(depth).fill(op), b.subarray(o.at));
    }
    case 5: { // one opcode replaced by another of the same argument shape
      const out = b.slice();
      out[o.at] = r.pick([...BARE]);
      return out;
    }
    default: { // two opcodes swapped
      const q = r.pick(ops);
      const [a, c] = o.at < q.at ? [o, q] : [q, o];
      if (a === c || a.end > c.at) return b.slice();
      return concat(
        b.subarray(0, a.at),
        b.subarray(c.at, c.end),
        b.subarray(a.end, c.at),
        b.subarray(a.at, a.end),
        b.subarray(c.end),
      );
    }
  }
}
