import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import {
  PickleCall,
  type PickleGlobal,
  PicklePersistent,
  type PickleValue,
  unpickle,
} from "../core/io/pickle.ts";
import { ckptPickle, OP, Pk, rng } from "./ckpt_build.ts";

const run = (bytes: Uint8Array, extra: { maxStack?: number; maxMemo?: number } = {}) =>
  unpickle(bytes, { source: "evil.ckpt", ...extra }).value;

function refused(bytes: Uint8Array, name: string): void {
  assert.throws(
    () => run(bytes),
    (e: unknown) =>
      e instanceof LorakitError && e.message.includes(`refusing to load global '${name}'`),
    name,
  );
}

Deno.test("pickle: globals outside the whitelist are refused, by GLOBAL, STACK_GLOBAL and INST", () => {
  const call = (pk: Pk) => pk.str("echo pwned").op(OP.TUPLE1, OP.REDUCE, OP.STOP).bytes();
  refused(call(new Pk().op(OP.PROTO, 2).global("os", "system")), "os.system");
  refused(call(new Pk().op(OP.PROTO, 4).stackGlobal("os", "system")), "os.system");
  refused(call(new Pk().op(OP.PROTO, 2).global("builtins", "eval")), "builtins.eval");
  refused(call(new Pk().op(OP.PROTO, 4).stackGlobal("builtins", "eval")), "builtins.eval");
  // Python 3 writes builtins as __builtin__ in protocol 2; the refusal names the real module.
  refused(call(new Pk().op(OP.PROTO, 2).global("__builtin__", "eval")), "builtins.eval");
  refused(call(new Pk().op(OP.PROTO, 2).global("subprocess", "Popen")), "subprocess.Popen");
  refused(call(new Pk().op(OP.PROTO, 4).stackGlobal("subprocess", "Popen")), "subprocess.Popen");
  refused(call(new Pk().global("posix", "system")), "posix.system");
  // torch's nested-pickle loader is as dangerous as eval.
  refused(
    call(new Pk().op(OP.PROTO, 2).global("torch.storage", "_load_from_bytes")),
    "torch.storage._load_from_bytes",
  );
  // INST (protocol 0): MARK args INST module\nname\n
  refused(
    new Pk().op(OP.MARK).str("id").op(0x69).raw("os\nsystem\n").op(OP.STOP).bytes(),
    "os.system",
  );
  // A refused global deep inside an otherwise valid checkpoint pickle is still refused.
  const f32 = { type: "FloatStorage", data: new Uint8Array(4), elementSize: 4 };
  const evil = ckptPickle([{ name: "w", storage: "0", size: [1] }], { "0": f32 }, {
    stateDict: true,
    extra: (pk) => pk.str("x").global("nt", "system").str("calc").op(OP.TUPLE1, OP.REDUCE),
  });
  refused(evil, "nt.system");
});

Deno.test("pickle: whitelisted calls are recorded as data, never run", () => {
  const bytes = new Pk().op(OP.PROTO, 2).global("torch._utils", "_rebuild_tensor_v2")
    .op(OP.MARK).op(OP.MARK).str("storage").global("torch", "HalfStorage").str("7").str("cpu")
    .int(4).op(OP.TUPLE, OP.BINPERSID).int(1).tuple([3]).tuple([1]).op(OP.NEWFALSE)
    .orderedDict().op(OP.TUPLE, OP.REDUCE, OP.STOP).bytes();
  const v = run(bytes);
  assert.ok(v instanceof PickleCall);
  assert.equal(v.callable.qualifiedName, "torch._utils._rebuild_tensor_v2");
  const pid = v.args[0];
  assert.ok(pid instanceof PicklePersistent && Array.isArray(pid.id));
  assert.equal((pid.id[1] as PickleGlobal).qualifiedName, "torch.HalfStorage");
  assert.deepEqual(v.args.slice(1, 4), [1, [3], [1]]);
  assert.ok(Object.isFrozen(v.args[2]), "tuples are frozen arrays");
  assert.ok(v.args[5] instanceof Map);
});

Deno.test("pickle: scalar encodings, memo, dicts and protocol 0 text opcodes", () => {
  const b = new Pk().op(OP.PROTO, 4, OP.EMPTY_DICT, OP.MEMOIZE, OP.MARK)
    .str("neg").int(-5).str("big").long(-(2n ** 70n)).str("long1").long(2n ** 40n)
    .str("f").op(0x47, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18) // BINFLOAT pi
    .str("s").op(0x8c, 3).raw("h\u00e9".normalize()).str("b").op(0x43, 2, 1, 2) // SHORT_BINBYTES
    .str("self").op(OP.BINGET, 0) // a dict containing itself
    .str("t").op(0x49).raw("01\n").str("i").op(0x4c).raw("-12L\n").str("x").op(0x46).raw("2.5\n")
    .str("q").op(0x53).raw("'a\\x41\\n'\n").str("u").op(0x56).raw("\\u00e9z\n")
    .op(OP.SETITEMS, OP.STOP).bytes();
  const d = run(b) as Map<PickleValue, PickleValue>;
  assert.equal(d.get("neg"), -5);
  assert.equal(d.get("big"), -(2n ** 70n));
  assert.equal(d.get("long1"), 2 ** 40);
  assert.equal(d.get("f"), Math.PI);
  assert.equal(d.get("s"), "hé");
  assert.deepEqual(d.get("b"), new Uint8Array([1, 2]));
  assert.equal(d.get("self"), d);
  assert.equal(d.get("t"), true);
  assert.equal(d.get("i"), -12);
  assert.equal(d.get("x"), 2.5);
  assert.equal(d.get("q"), "aA\n");
  assert.equal(d.get("u"), "éz");
  // Protocol 2 spells bytes as _codecs.encode(text, "latin1"); that is evaluated, not run.
  const enc = new Pk().op(OP.PROTO, 2).global("_codecs", "encode").op(OP.MARK).str("\u00ff\u0001")
    .str("latin1").op(OP.TUPLE, OP.REDUCE, OP.STOP).bytes();
  assert.deepEqual(run(enc), new Uint8Array([255, 1]));
});

/** A valid pickle with the shapes real checkpoints have, for truncation and fuzzing. */
function samplePickle(): Uint8Array {
  const st = { type: "FloatStorage", data: new Uint8Array(24), elementSize: 4 };
  return ckptPickle(
    [
      { name: "a", storage: "0", size: [2, 3] },
      { name: "b", storage: "0", size: [3, 2], stride: [1, 3], param: true },
    ],
    { "0": st },
    { stateDict: true },
  );
}

Deno.test("pickle: every truncation of a valid stream is a LorakitError", () => {
  const good = samplePickle();
  assert.ok(run(good) instanceof Map);
  for (let n = 0; n < good.length; n++) {
    assert.throws(() => run(good.subarray(0, n)), LorakitError, `cut at ${n}`);
  }
});

Deno.test("pickle: random corruption never escapes as anything but a LorakitError", () => {
  const good = samplePickle();
  const rand = rng(1234);
  for (let iter = 0; iter < 3000; iter++) {
    const bad = good.slice();
    const flips = 1 + Math.floor(rand() * 3);
    for (let k = 0; k < flips; k++) bad[Math.floor(rand() * bad.length)] = Math.floor(rand() * 256);
    try {
      run(bad);
    } catch (e) {
      if (!(e instanceof LorakitError)) throw new Error(`iteration ${iter}: ${e}`);
    }
  }
});

Deno.test("pickle: length fields and caps cannot force big allocations", () => {
  const ff = [0xff, 0xff, 0xff, 0xff];
  const bombs: [string, number[]][] = [
    ["BINUNICODE", [0x58, ...ff]],
    ["BINUNICODE8", [0x8d, ...ff, ...ff]],
    ["BINBYTES", [0x42, ...ff]],
    ["BINBYTES8", [0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40]],
    ["LONG4", [0x8b, 0xff, 0xff, 0xff, 0x7f]],
    ["BINSTRING negative", [0x54, ...ff]],
    ["FRAME", [0x95, ...ff, ...ff, OP.NONE, OP.STOP]],
  ];
  for (const [what, bytes] of bombs) {
    assert.throws(() => run(new Uint8Array([OP.PROTO, 4, ...bytes])), LorakitError, what);
  }
  const nones = new Pk().op(OP.MARK);
  for (let i = 0; i < 40; i++) nones.op(OP.NONE);
  assert.throws(
    () => run(nones.op(OP.TUPLE, OP.STOP).bytes(), { maxStack: 16 }),
    /stack grows past 16/,
  );
  const puts = new Pk().op(OP.NONE);
  for (let i = 0; i < 10; i++) puts.op(OP.BINPUT, i);
  assert.throws(() => run(puts.op(OP.STOP).bytes(), { maxMemo: 4 }), /memo grows past 4/);
  const marks = new Pk();
  for (let i = 0; i < 40; i++) marks.op(OP.MARK);
  assert.throws(() => run(marks.op(OP.STOP).bytes(), { maxStack: 16 }), /MARK/);
});

Deno.test("pickle: malformed streams are LorakitErrors naming the source", () => {
  const cases: [string, number[]][] = [
    ["unknown opcode", [0xff]],
    ["memo miss", [OP.BINGET, 3, OP.STOP]],
    ["underflow", [OP.REDUCE]],
    ["no mark", [OP.NONE, OP.TUPLE]],
    ["STOP on empty stack", [OP.STOP]],
    ["two values at STOP", [OP.NONE, OP.NONE, OP.STOP]],
    ["call of a non-global", [OP.NONE, OP.EMPTY_TUPLE, OP.REDUCE, OP.STOP]],
    ["SETITEM on a list", [OP.EMPTY_LIST, OP.NONE, OP.NONE, OP.SETITEM, OP.STOP]],
    ["EXT1", [0x82, 1, OP.STOP]],
    ["protocol 9", [OP.PROTO, 9, OP.NONE, OP.STOP]],
    ["bad utf-8", [0x8c, 2, 0xc3, 0x28, OP.STOP]],
    ["bad INT text", [0x49, 0x78, 0x0a, OP.STOP]],
  ];
  for (const [what, bytes] of cases) {
    assert.throws(
      () => run(new Uint8Array(bytes)),
      (e: unknown) => e instanceof LorakitError && e.message.startsWith("evil.ckpt:"),
      what,
    );
  }
});
