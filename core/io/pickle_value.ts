/**
 * What unpickled data is made of: the JavaScript types pickle values map to, the scalar encodings
 * of the pickle opcodes, and the whitelist of globals a tensor checkpoint may name, with the few
 * pure data constructors among them that are evaluated (by code here, never by name lookup).
 *
 * Value model: None -> null, bool -> boolean, int -> number (bigint past 2^53), float -> number,
 * str -> string, bytes -> Uint8Array, list -> array, tuple (and set) -> frozen array,
 * dict -> Map (insertion-ordered, like Python's dict).
 *
 * @module
 */

/** A whitelisted global (`module.name`) as a value; it is never resolved to code. */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name`. */
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A recorded call `callable(*args)` (REDUCE, NEWOBJ, OBJ, INST), plus any BUILD state. */
export class PickleCall {
  /** Set by BUILD (the object's `__setstate__` argument); undefined when none was given. */
  state: PickleValue | undefined = undefined;
  constructor(readonly callable: PickleGlobal, readonly args: readonly PickleValue[]) {}
}

/** A persistent reference (PERSID/BINPERSID): torch's pointer to a storage outside the pickle. */
export class PicklePersistent {
  constructor(readonly id: PickleValue) {}
}

/** Any value an unpickled stream can hold. */
export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | readonly PickleValue[]
  | Map<PickleValue, PickleValue>
  | PickleGlobal
  | PickleCall
  | PicklePersistent;

/**
 * Globals a tensor checkpoint may name. None of them is ever called; their calls become
 * `PickleCall` records. `torch.storage._load_from_bytes` is deliberately absent: it runs
 * `torch.load` on embedded bytes, i.e. a nested, unchecked pickle.
 */
export const CHECKPOINT_GLOBALS: ReadonlySet<string> = new Set([
  "collections.OrderedDict",
  "builtins.set",
  "builtins.frozenset",
  "_codecs.encode",
  "torch._utils._rebuild_tensor",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  "torch._tensor._rebuild_from_type_v2",
  "torch.Tensor",
  "torch.nn.parameter.Parameter",
  "torch.nn.modules.container.ParameterDict",
  "torch.Size",
  "torch.device",
  "torch.UntypedStorage",
  ..."Double Float Half BFloat16 Long Int Short Char Byte Bool".split(" ").map((t) =>
    `torch.${t}Storage`
  ),
  ..."float64 float32 float16 bfloat16 int64 int32 int16 int8 uint8 bool".split(" ").map((t) =>
    `torch.${t}`
  ),
  "numpy.core.multiarray.scalar",
  "numpy._core.multiarray.scalar",
  "numpy.dtype",
  "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint",
  "pytorch_lightning.callbacks.ModelCheckpoint",
]);

/**
 * The value of `callable(*args)`: the few pure data constructors are evaluated here, by this
 * code; every other (whitelisted) call becomes a `PickleCall` record. Undefined when the
 * arguments are malformed.
 */
export function evaluateCall(
  callable: PickleGlobal,
  args: readonly PickleValue[],
): PickleValue | undefined {
  switch (callable.qualifiedName) {
    case "collections.OrderedDict": {
      const m = new Map<PickleValue, PickleValue>();
      if (args.length > 0 && Array.isArray(args[0])) {
        for (const pair of args[0]) {
          if (!Array.isArray(pair) || pair.length !== 2) return undefined;
          m.set(pair[0], pair[1]);
        }
      }
      return m;
    }
    case "builtins.set":
    case "builtins.frozenset":
      return Object.freeze(Array.isArray(args[0]) ? [...args[0]] : []);
    case "_codecs.encode": {
      // Protocol 2 spells Python 3 bytes as _codecs.encode(text, "latin1").
      const [text, enc] = args;
      if (typeof text === "string" && (enc === "latin1" || enc === "latin-1")) {
        return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
      }
      if (typeof text === "string" && (enc === "utf-8" || enc === "utf8")) {
        return new TextEncoder().encode(text);
      }
      return new PickleCall(callable, args);
    }
    default:
      return new PickleCall(callable, args);
  }
}

const HEX_BYTES = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** Two's-complement little-endian integer (LONG1/LONG4), as a number when it is exact. */
export function longLE(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  // One parse of the hex digits takes time linear in the length; shifting the value in a byte at
  // a time is quadratic, and a LONG4 argument may be as long as the stream.
  const hex: string[] = [];
  for (let i = b.length - 1; i >= 0; i--) hex.push(HEX_BYTES[b[i]]);
  let n = BigInt("0x" + hex.join(""));
  if (b[b.length - 1] & 0x80) n -= 1n << BigInt(8 * b.length);
  return Number.isSafeInteger(Number(n)) && BigInt(Number(n)) === n ? Number(n) : n;
}

/** PUT/GET text memo index. */
export function parseIndex(s: string): number {
  if (!/^\d{1,10}$/.test(s)) throw new Error(`memo index '${s.slice(0, 20)}'`);
  return Number(s);
}

/** INT/LONG text: decimal, optional sign, Python 2's trailing `L`; INT's "00"/"01" are bools. */
export function parseIntText(s: string, boolsAllowed: boolean): number | bigint | boolean {
  if (boolsAllowed && s === "00") return false;
  if (boolsAllowed && s === "01") return true;
  // Python caps int() at 4300 digits for the same reason: BigInt parsing is quadratic.
  const m = /^([+-]?\d{1,4300})L?$/.exec(s);
  if (!m) throw new Error(`integer '${s.slice(0, 20)}'`);
  const n = BigInt(m[1]);
  return Number.isSafeInteger(Number(n)) ? Number(n) : n;
}

/** FLOAT text: Python's `repr` of a float. */
export function parseFloatText(s: string): number {
  const t = s.trim();
  if (/^[+-]?(inf|nan)$/i.test(t)) {
    return t.toLowerCase().includes("nan") ? NaN : t[0] === "-" ? -Infinity : Infinity;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) {
    throw new Error(`float '${t.slice(0, 20)}'`);
  }
  return Number(t);
}

/** Python 2 string-literal escapes: the character after the backslash, then its value. */
const ESCAPE_PAIRS = ["n\n", "t\t", "r\r", "\\\\", "''", '""', "a\x07", "b\b", "f\f", "v\v", "\n"];
const PY_ESCAPES = new Map(ESCAPE_PAIRS.map((p) => [p[0], p.slice(1)]));

/** STRING: a Python 2 `repr` of a byte string, quoted; decoded as Latin-1 text. */
export function decodeStringOpcode(s: string): string {
  const q = s[0];
  if (s.length < 2 || (q !== "'" && q !== '"') || s[s.length - 1] !== q) {
    throw new Error("STRING argument is not quoted");
  }
  return s.slice(1, -1).replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|[\s\S])/g, (_, e: string) => {
    if (e[0] === "x") return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]/.test(e)) return String.fromCharCode(parseInt(e, 8) & 0xff);
    return PY_ESCAPES.get(e) ?? `\\${e}`;
  });
}

/** UNICODE: raw-unicode-escape, i.e. Latin-1 text where only \uXXXX and \UXXXXXXXX are escapes. */
export function decodeUnicodeOpcode(s: string): string {
  return s.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, u: string, U: string) => {
    const cp = parseInt(u ?? U, 16);
    if (cp > 0x10ffff) throw new Error("code point out of range");
    return String.fromCodePoint(cp);
  });
}
