/**
 * The pickle interpreter on its own: `unpickle` of streams using every protocol (0 to 5) and the
 * opcodes checkpoints use, plus text-argument opcodes, memo, frames and sets. What it returns must
 * be a pickle value all the way down (a memo can make it cyclic).
 *
 * @module
 */
import {
  PickleCall,
  PickleGlobal,
  PicklePersistent,
  type PickleValue,
  unpickle,
} from "../../../core/io/pickle.ts";
import { ckptPickle } from "../../ckpt_build.ts";
import { mutatePickle, pickleFields } from "../pickle_mutate.ts";
import type { Rng } from "../rng.ts";
import type { FuzzTarget, Seed } from "../target.ts";
import { SEED_TENSORS, seedStorages } from "./ckpt_seeds.ts";

const text = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Bytes from hex pairs, with `'...'` runs as Latin-1 text. */
function hex(spec: string): Uint8Array {
  const out: number[] = [];
  for (const tok of spec.match(/'[^']*'|\S+/g) ?? []) {
    if (tok.startsWith("'")) out.push(...text(tok.slice(1, -1)));
    else out.push(parseInt(tok, 16));
  }
  return new Uint8Array(out);
}

/** PROTO 4 and one FRAME around `body`. */
function framed(body: Uint8Array): Uint8Array {
  const out = new Uint8Array(11 + body.length);
  out.set([0x80, 0x04, 0x95]);
  new DataView(out.buffer).setUint32(3, body.length, true);
  out.set(body, 11);
  return out;
}

/** Hand-written streams for the opcodes the checkpoint seeds do not use. */
const STREAMS: Uint8Array[] = [
  // Protocol 0: a dict of a list, a quoted string, a long, a bool, a float, a global call.
  text(
    "(dp0\nVa\np1\n(lp2\nI1\naI2\naF0.5\nasVb\np3\nS'x\\n\\x41'\np4\nsVc\np5\n" +
      "L99999999999999999999L\nsVd\np6\nI01\nsVe\ng2\nsVf\nccollections\nOrderedDict\n" +
      "p7\n(tRp8\ns.",
  ),
  // Protocol 2: TUPLE2, BINFLOAT, LONG1, SHORT_BINSTRING, BINSTRING, TUPLE1, SETITEMS.
  hex(
    "80 02 7d 71 00 28 55 01 'k' 4b 01 4b 02 86 55 01 'f' 47 3f f8 00 00 00 00 00 00" +
      " 55 01 'l' 8a 02 ff 7f 55 01 't' 54 02 00 00 00 'hi' 85 75 2e",
  ),
  // Protocol 4: FRAME, MEMOIZE, EMPTY_SET + ADDITEMS, FROZENSET, BINBYTES, LONG4, TUPLE3,
  // SHORT_BINUNICODE, STACK_GLOBAL, NEWOBJ of torch.Size, APPENDS.
  framed(hex(
    "5d 94 28 8f 94 28 4b 01 4b 02 90 28 4b 03 91 42 03 00 00 00 01 02 03" +
      " 8b 03 00 00 00 01 00 80 4b 01 4b 02 4b 03 87 8c 05 'torch' 8c 04 'Size' 93" +
      " 4b 02 85 81 65 2e",
  )),
  // Protocol 5: BYTEARRAY8, READONLY_BUFFER, BINUNICODE8, BINBYTES8, PERSID, BINPERSID, TUPLE.
  hex(
    "80 05 28 96 02 00 00 00 00 00 00 00 07 08 98 8d 01 00 00 00 00 00 00 00 'z'" +
      " 8e 01 00 00 00 00 00 00 00 09 50 'key' 0a 4b 05 51 74 2e",
  ),
  // INST and OBJ appended to a list, POP_MARK, DUP, GET and POP, UNICODE escapes.
  text(
    "(lp0\n(I1\nI2\nitorch\nSize\na(ccollections\nOrderedDict\noa(I9\n1" +
      "(V\\u00e9\\U0001f600\n2tag0\n0.",
  ),
];

/** Every value reachable from `root` is a pickle value (walked without recursion: it nests deep). */
function checkValues(root: PickleValue): void {
  const seen = new Set<object>();
  const todo: PickleValue[] = [root];
  while (todo.length > 0) {
    const v = todo.pop()!;
    if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "bigint") {
      continue;
    }
    if (typeof v === "string" || v instanceof Uint8Array || v instanceof PickleGlobal) continue;
    if (seen.has(v)) continue;
    seen.add(v);
    if (Array.isArray(v)) { for (const x of v) todo.push(x); }
    else if (v instanceof Map) { for (const [k, x] of v) todo.push(k, x); }
    else if (v instanceof PickleCall) {
      for (const x of v.args) todo.push(x);
      if (v.state !== undefined) todo.push(v.state);
    } else if (v instanceof PicklePersistent) todo.push(v.id);
    else {throw new Error(
        `unpickle returned a ${typeof v} that is not a pickle value: ${String(v)}`,
      );}
  }
}

export const target: FuzzTarget = {
  name: "pickle",
  what: "unpickle (protocols 0-5) and a walk of the value it returns",
  boundText: "8 x input + 64 KiB per buffer",
  allocBound: (n) => 8 * n + 65536,
  seeds() {
    const storages = seedStorages();
    const streams = [
      ckptPickle(SEED_TENSORS, storages, {}),
      ckptPickle(SEED_TENSORS, storages, { stateDict: true }),
      ...STREAMS,
    ];
    return Promise.resolve(
      streams.map((bytes) => ({ bytes, layout: { fields: pickleFields(bytes), chunks: [] } })),
    );
  },
  structural: [
    (seed: Seed, r: Rng) => mutatePickle(seed.bytes, r),
    (seed: Seed, r: Rng) => mutatePickle(seed.bytes, r),
  ],
  run(input) {
    const { value, end } = unpickle(input, { source: "fuzz.pkl" });
    if (end > input.length) throw new Error(`STOP past the end (${end} of ${input.length})`);
    checkValues(value);
    return Promise.resolve();
  },
};
