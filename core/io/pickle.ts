/**
 * A pickle interpreter that never executes anything. Python's unpickler calls whatever callable a
 * stream names (`os.system` included), which is why a `.ckpt` from the internet is dangerous to
 * load in Python. Here a global is only a name checked against a whitelist of what tensor
 * checkpoints contain, and "calling" it (REDUCE, NEWOBJ, BUILD) records the call as data for the
 * reader above to interpret. The value model and the whitelist live in `pickle_value.ts`.
 *
 * Every read is bounds-checked against the input, and the stack and memo are capped, so a hostile
 * stream costs at most memory proportional to its own length.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import {
  CHECKPOINT_GLOBALS,
  decodeStringOpcode,
  decodeUnicodeOpcode,
  evaluateCall,
  longLE,
  parseFloatText,
  parseIndex,
  parseIntText,
  PickleCall,
  PickleGlobal,
  PicklePersistent,
  type PickleValue,
} from "./pickle_value.ts";

export { CHECKPOINT_GLOBALS, PickleCall, PickleGlobal, PicklePersistent };
export type { PickleValue };

/** Options of `unpickle`. */
export interface UnpickleOptions {
  /** Name used in error messages (the file, or `file:member`). */
  source: string;
  /** Allowed `module.name` globals; defaults to `CHECKPOINT_GLOBALS`. */
  globals?: ReadonlySet<string>;
  /** Start offset in `bytes` (for streams that hold several pickles back to back). */
  offset?: number;
  /** Cap on stack items plus open MARKs. */
  maxStack?: number;
  /** Cap on memo entries. */
  maxMemo?: number;
}

/** Result of `unpickle`: the value and where the stream's STOP ended. */
export interface UnpickleResult {
  value: PickleValue;
  /** Offset just past the STOP opcode. */
  end: number;
}

/**
 * Modules known under another name: Python 2 spellings of builtins (protocol 0-2 pickles written
 * by Python 3 use them), and torch's own rename that `torch.load` applies too.
 */
const RENAMED_MODULES: Record<string, string> = {
  __builtin__: "builtins",
  copy_reg: "copyreg",
  "torch.tensor": "torch._tensor",
};

/**
 * Interpret one pickle stream starting at `options.offset`. Refused globals, malformed or
 * truncated streams and exceeded caps raise a LorakitError naming `options.source`.
 */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): UnpickleResult {
  return new Machine(bytes, options).run();
}

type Dict = Map<PickleValue, PickleValue>;

class Machine {
  readonly src: string;
  readonly globals: ReadonlySet<string>;
  readonly maxStack: number;
  readonly maxMemo: number;
  readonly view: DataView;
  pos: number;
  stack: PickleValue[] = [];
  /** Stack heights at each open MARK (Python's metastack). */
  marks: number[] = [];
  memo = new Map<number, PickleValue>();
  /** Opcodes that read their argument and push one value, with no other effect. */
  readonly values: Record<number, () => PickleValue>;

  constructor(readonly bytes: Uint8Array, o: UnpickleOptions) {
    this.src = o.source;
    this.globals = o.globals ?? CHECKPOINT_GLOBALS;
    this.maxStack = o.maxStack ?? 1 << 22;
    this.maxMemo = o.maxMemo ?? 1 << 22;
    this.pos = o.offset ?? 0;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const latin1 = (b: Uint8Array) => new TextDecoder("latin1").decode(b);
    this.values = {
      0x4e: () => null, // NONE
      0x88: () => true, // NEWTRUE
      0x89: () => false, // NEWFALSE
      0x4b: () => this.uint(1), // BININT1
      0x4d: () => this.uint(2), // BININT2
      0x4a: () => this.int32(), // BININT
      0x8a: () => longLE(this.take(this.uint(1))), // LONG1
      0x8b: () => longLE(this.take(this.length32())), // LONG4
      0x49: () => this.text(() => parseIntText(this.line(), true)), // INT ("00"/"01": bools)
      0x4c: () => this.text(() => parseIntText(this.line(), false)), // LONG
      0x46: () => this.text(() => parseFloatText(this.line())), // FLOAT
      0x47: () => this.view.getFloat64(this.take(8).byteOffset - bytes.byteOffset, false), // BINFLOAT
      0x8c: () => this.utf8(this.uint(1)), // SHORT_BINUNICODE
      0x58: () => this.utf8(this.uint(4)), // BINUNICODE
      0x8d: () => this.utf8(this.uint(8)), // BINUNICODE8
      0x56: () => this.text(() => decodeUnicodeOpcode(this.line())), // UNICODE
      // Python 2 byte strings (SHORT_BINSTRING, BINSTRING, STRING) become Latin-1 text.
      0x55: () => latin1(this.take(this.uint(1))),
      0x54: () => latin1(this.take(this.length32())),
      0x53: () => this.text(() => decodeStringOpcode(this.line())),
      0x43: () => this.take(this.uint(1)).slice(), // SHORT_BINBYTES
      0x42: () => this.take(this.uint(4)).slice(), // BINBYTES
      0x8e: () => this.take(this.uint(8)).slice(), // BINBYTES8
      0x96: () => this.take(this.uint(8)).slice(), // BYTEARRAY8
      0x29: () => Object.freeze([]), // EMPTY_TUPLE
      0x5d: () => [], // EMPTY_LIST
      0x8f: () => [], // EMPTY_SET (a set is an array here)
      0x7d: () => new Map(), // EMPTY_DICT
      0x67: () => this.memoGet(this.text(() => parseIndex(this.line()))), // GET
      0x68: () => this.memoGet(this.uint(1)), // BINGET
      0x6a: () => this.memoGet(this.uint(4)), // LONG_BINGET
      0x50: () => new PicklePersistent(this.line()), // PERSID
      0x63: () => this.global(this.line(), this.line()), // GLOBAL
    };
  }

  fail(what: string, at = this.pos): LorakitError {
    return new LorakitError(`${this.src}: corrupt pickle stream: ${what} (at byte ${at})`);
  }

  take(n: number): Uint8Array {
    if (!(n >= 0) || this.pos + n > this.bytes.length) {
      throw this.fail(`needs ${n} more bytes but the stream ends`);
    }
    this.pos += n;
    return this.bytes.subarray(this.pos - n, this.pos);
  }
  /** Unsigned little-endian integer of 1, 2, 4 or 8 bytes (8: saturated, then `take` fails). */
  uint(n: 1 | 2 | 4 | 8): number {
    const at = this.take(n).byteOffset - this.bytes.byteOffset;
    if (n === 1) return this.bytes[at];
    if (n === 2) return this.view.getUint16(at, true);
    if (n === 4) return this.view.getUint32(at, true);
    const v = this.view.getBigUint64(at, true);
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  }
  int32(): number {
    return this.view.getInt32(this.take(4).byteOffset - this.bytes.byteOffset, true);
  }
  length32(): number {
    const n = this.int32();
    if (n < 0) throw this.fail("negative length");
    return n;
  }
  /** A newline-terminated text argument (protocol 0 opcodes); bounded by the input. */
  line(): string {
    const end = this.bytes.indexOf(0x0a, this.pos);
    if (end < 0) throw this.fail("text argument has no terminating newline");
    const s = new TextDecoder("latin1").decode(this.bytes.subarray(this.pos, end));
    this.pos = end + 1;
    return s;
  }
  utf8(n: number): string {
    const at = this.pos;
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(this.take(n));
    } catch (e) {
      throw e instanceof LorakitError ? e : this.fail("string is not valid UTF-8", at);
    }
  }
  /** Run a text-argument parser, turning its plain errors into stream errors. */
  text<T>(parse: () => T): T {
    const at = this.pos;
    try {
      return parse();
    } catch (e) {
      if (e instanceof LorakitError) throw e;
      throw this.fail(`bad text argument (${(e as Error).message})`, at);
    }
  }

  push(v: PickleValue): void {
    if (this.stack.length + this.marks.length >= this.maxStack) {
      throw this.fail(`stack grows past ${this.maxStack} items`);
    }
    this.stack.push(v);
  }
  /** Height below which the current MARK protects the stack. */
  floor(): number {
    return this.marks.length > 0 ? this.marks[this.marks.length - 1] : 0;
  }
  pop(): PickleValue {
    if (this.stack.length <= this.floor()) throw this.fail("stack underflow");
    return this.stack.pop() as PickleValue;
  }
  top(): PickleValue {
    if (this.stack.length <= this.floor()) throw this.fail("stack underflow");
    return this.stack[this.stack.length - 1];
  }
  /** Items pushed since the last MARK, removing them and the mark. */
  popMark(): PickleValue[] {
    const m = this.marks.pop();
    if (m === undefined) throw this.fail("no MARK on the stack");
    return this.stack.splice(m);
  }
  memoPut(i: number, v: PickleValue): void {
    if (!this.memo.has(i) && this.memo.size >= this.maxMemo) {
      throw this.fail(`memo grows past ${this.maxMemo} entries`);
    }
    this.memo.set(i, v);
  }
  memoGet(i: number): PickleValue {
    const v = this.memo.get(i);
    if (v === undefined) throw this.fail(`memo entry ${i} is read before it is written`);
    return v;
  }

  global(module: string, name: string): PickleGlobal {
    const mod = RENAMED_MODULES[module] ?? module;
    const qualified = `${mod}.${name}`;
    if (!this.globals.has(qualified)) {
      throw new LorakitError(
        `${this.src}: refusing to load global '${qualified}' — only tensor data is read from .ckpt files, and nothing in them is executed; convert the checkpoint to .safetensors with a trusted tool if it needs more`,
      );
    }
    return new PickleGlobal(mod, name);
  }

  /** REDUCE / NEWOBJ / OBJ / INST. */
  call(callable: PickleValue, args: PickleValue): PickleValue {
    if (!(callable instanceof PickleGlobal)) throw this.fail("call target is not a global");
    if (!Array.isArray(args)) throw this.fail("call arguments are not a tuple");
    const v = evaluateCall(callable, args);
    if (v === undefined) throw this.fail(`malformed arguments to ${callable.qualifiedName}`);
    return v;
  }

  /** A mutable list (or set) that APPEND(S)/ADDITEMS may extend. */
  list(v: PickleValue): PickleValue[] {
    if (!Array.isArray(v) || Object.isFrozen(v)) throw this.fail("append to a non-list");
    return v as PickleValue[];
  }

  dict(v: PickleValue): Dict {
    if (!(v instanceof Map)) throw this.fail("item assignment to a non-dict");
    return v;
  }

  setPairs(m: Dict, items: PickleValue[]): Dict {
    if (items.length % 2 !== 0) throw this.fail("odd number of dict items");
    for (let i = 0; i < items.length; i += 2) m.set(items[i], items[i + 1]);
    return m;
  }

  run(): UnpickleResult {
    while (true) {
      const at = this.pos;
      if (at >= this.bytes.length) throw this.fail("stream ends without STOP");
      const op = this.bytes[this.pos++];
      const value = this.values[op];
      if (value !== undefined) {
        this.push(value());
        continue;
      }
      this.step(op, at);
      if (op === 0x2e) return { value: this.stack[0], end: this.pos };
    }
  }

  /** Opcodes other than the plain value pushes. */
  step(op: number, at: number): void {
    switch (op) {
      case 0x80: // PROTO
        if (this.uint(1) > 5) throw this.fail("pickle protocol newer than 5", at);
        return;
      case 0x95: // FRAME: only a buffering hint, but one past the end means truncation.
        if (this.uint(8) > this.bytes.length - this.pos) throw this.fail("frame past the end", at);
        return;
      case 0x2e: // STOP
        if (this.marks.length > 0 || this.stack.length !== 1) {
          throw this.fail(`STOP with ${this.stack.length} values and an open MARK`, at);
        }
        return;
      case 0x28: // MARK
        if (this.stack.length + this.marks.length >= this.maxStack) {
          throw this.fail("too many nested MARKs", at);
        }
        this.marks.push(this.stack.length);
        return;
      case 0x30: // POP (of a MARK left on top, as Python does, else of a value)
        if (this.marks.length > 0 && this.floor() === this.stack.length) this.marks.pop();
        else this.pop();
        return;
      case 0x31: // POP_MARK
        this.popMark();
        return;
      case 0x32: // DUP
        return this.push(this.top());
      case 0x98: // READONLY_BUFFER
        this.top();
        return;
      case 0x97: // NEXT_BUFFER
        throw this.fail("out-of-band buffers are not supported", at);
      case 0x85: // TUPLE1
        return this.push(Object.freeze([this.pop()]));
      case 0x86: { // TUPLE2
        const b = this.pop();
        return this.push(Object.freeze([this.pop(), b]));
      }
      case 0x87: { // TUPLE3
        const c = this.pop();
        const b = this.pop();
        return this.push(Object.freeze([this.pop(), b, c]));
      }
      case 0x74: // TUPLE
      case 0x91: // FROZENSET
        return this.push(Object.freeze(this.popMark()));
      case 0x6c: // LIST
        return this.push(this.popMark());
      case 0x61: { // APPEND
        const v = this.pop();
        this.list(this.top()).push(v);
        return;
      }
      case 0x65: // APPENDS
      case 0x90: { // ADDITEMS
        const items = this.popMark();
        const list = this.list(this.top());
        for (const v of items) list.push(v); // not push(...items): that overflows on big batches
        return;
      }
      case 0x64: // DICT
        return this.push(this.setPairs(new Map(), this.popMark()));
      case 0x73: { // SETITEM
        const v = this.pop();
        const k = this.pop();
        this.dict(this.top()).set(k, v);
        return;
      }
      case 0x75: { // SETITEMS
        const items = this.popMark();
        this.setPairs(this.dict(this.top()), items);
        return;
      }
      case 0x70: // PUT
        return this.memoPut(this.text(() => parseIndex(this.line())), this.top());
      case 0x71: // BINPUT
        return this.memoPut(this.uint(1), this.top());
      case 0x72: // LONG_BINPUT
        return this.memoPut(this.uint(4), this.top());
      case 0x94: // MEMOIZE
        return this.memoPut(this.memo.size, this.top());
      case 0x93: { // STACK_GLOBAL
        const name = this.pop();
        const module = this.pop();
        if (typeof module !== "string" || typeof name !== "string") {
          throw this.fail("STACK_GLOBAL needs two strings", at);
        }
        return this.push(this.global(module, name));
      }
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: // EXT4
        throw this.fail("extension-registry globals (EXT1/2/4) are not supported", at);
      case 0x52: // REDUCE
      case 0x81: { // NEWOBJ
        const args = this.pop();
        return this.push(this.call(this.pop(), args));
      }
      case 0x92: { // NEWOBJ_EX (keyword arguments dropped: no whitelisted global takes any)
        this.pop();
        const args = this.pop();
        return this.push(this.call(this.pop(), args));
      }
      case 0x6f: { // OBJ: MARK class args... OBJ
        const items = this.popMark();
        if (items.length === 0) throw this.fail("OBJ without a class", at);
        return this.push(this.call(items[0], Object.freeze(items.slice(1))));
      }
      case 0x69: { // INST: MARK args... INST module\n name\n
        const g = this.global(this.line(), this.line());
        return this.push(this.call(g, Object.freeze(this.popMark())));
      }
      case 0x62: { // BUILD
        const state = this.pop();
        const target = this.top();
        if (target instanceof PickleCall) target.state = state;
        // An OrderedDict's state is its attribute dict (torch's `_metadata`); it holds no data.
        else if (!(target instanceof Map)) {
          throw this.fail("BUILD on a value that has no state", at);
        }
        return;
      }
      case 0x51: // BINPERSID
        return this.push(new PicklePersistent(this.pop()));
      default:
        throw this.fail(`unknown opcode 0x${op.toString(16).padStart(2, "0")}`, at);
    }
  }
}
