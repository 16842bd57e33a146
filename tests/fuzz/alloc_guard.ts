/**
 * Allocation bound: the buffer constructors (ArrayBuffer, SharedArrayBuffer, every typed array,
 * Array with a length) and the string padders are replaced by wrappers that measure each request
 * before it is made. A request over the case's bound is recorded and refused with
 * {@link AllocationBoundError}; the record survives even when a parser catches the error.
 *
 * The wrappers are Proxies of the original constructors, so `instanceof`, `constructor`
 * comparisons, statics (`Uint8Array.from`) and subclassing keep working; typed arrays made by
 * `slice`/`subarray` of an existing one are never larger than it and are not measured.
 *
 * Installed only in a fuzz runner process, never in one that runs anything else.
 *
 * @module
 */

/** Thrown (and recorded) when a case asks for a buffer over its bound. */
export class AllocationBoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AllocationBoundError";
  }
}

/** The measurements of the current case. */
export interface AllocGuard {
  /** Start measuring a case: requests over `bound` bytes fail. */
  arm(bound: number): void;
  /** Stop measuring (runner bookkeeping allocates freely). */
  disarm(): void;
  /** Largest single request of the armed period, in bytes. */
  readonly largest: number;
  /** What was first requested over the bound, or null. */
  readonly violation: string | null;
}

const TYPED = [
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float16Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
] as const;

let installed: AllocGuard | null = null;

/** Replace the constructors (once per realm) and return the guard. */
export function installAllocGuard(): AllocGuard {
  if (installed !== null) return installed;
  let armed = false;
  let bound = Infinity;
  let largest = 0;
  let violation: string | null = null;
  const g = globalThis as unknown as Record<string, unknown>;

  const request = (what: string, bytes: number): void => {
    if (!armed || !(bytes > 0)) return;
    if (bytes > largest) largest = bytes;
    if (bytes > bound) {
      const msg = `${what} of ${bytes} bytes is over the bound of ${Math.floor(bound)} bytes`;
      violation ??= msg;
      throw new AllocationBoundError(msg);
    }
  };
  const isBuffer = (v: unknown): boolean =>
    v instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer !== "undefined" && v instanceof SharedArrayBuffer);
  const lengthOf = (v: unknown): number => {
    if (typeof v === "number") return v;
    if (v !== null && typeof v === "object" && !isBuffer(v)) {
      const n = (v as { length?: unknown }).length;
      return typeof n === "number" ? n : 0;
    }
    return 0;
  };

  for (const name of TYPED) {
    const Orig = g[name] as (new (...a: unknown[]) => ArrayBufferView) & {
      BYTES_PER_ELEMENT: number;
    };
    if (typeof Orig !== "function") continue;
    g[name] = new Proxy(Orig, {
      construct(target, args, newTarget) {
        request(`new ${name}`, lengthOf(args[0]) * Orig.BYTES_PER_ELEMENT);
        const made = Reflect.construct(target, args, newTarget) as ArrayBufferView;
        // Built from an iterable without a length: measured once made.
        if (!isBuffer(args[0])) request(`new ${name}`, made.byteLength);
        return made;
      },
    });
  }
  for (const name of ["ArrayBuffer", "SharedArrayBuffer"]) {
    const Orig = g[name] as new (...a: unknown[]) => ArrayBuffer;
    if (typeof Orig !== "function") continue;
    g[name] = new Proxy(Orig, {
      construct(target, args, newTarget) {
        const opts = args[1] as { maxByteLength?: unknown } | undefined;
        const max = typeof opts?.maxByteLength === "number" ? opts.maxByteLength : 0;
        request(`new ${name}`, Math.max(Number(args[0]) || 0, max));
        return Reflect.construct(target, args, newTarget);
      },
    });
  }
  const OrigArray = Array;
  const arrayRequest = (args: unknown[]) => {
    if (args.length === 1 && typeof args[0] === "number") request("Array", args[0] * 8);
  };
  g.Array = new Proxy(OrigArray, {
    construct(target, args, newTarget) {
      arrayRequest(args);
      return Reflect.construct(target, args, newTarget);
    },
    apply(target, self, args) {
      arrayRequest(args);
      return Reflect.apply(target, self, args);
    },
  });
  const resize = ArrayBuffer.prototype.resize;
  if (typeof resize === "function") {
    ArrayBuffer.prototype.resize = function (n: number) {
      request("ArrayBuffer.resize", n);
      return resize.call(this, n);
    };
  }
  const str = String.prototype;
  const { repeat, padStart, padEnd } = str;
  str.repeat = function (this: string, n: number) {
    request("String.repeat", String(this).length * n * 2);
    return repeat.call(this, n);
  };
  str.padStart = function (this: string, n: number, fill?: string) {
    request("String.padStart", n * 2);
    return padStart.call(this, n, fill);
  };
  str.padEnd = function (this: string, n: number, fill?: string) {
    request("String.padEnd", n * 2);
    return padEnd.call(this, n, fill);
  };

  installed = {
    arm(b: number) {
      armed = true;
      bound = b;
      largest = 0;
      violation = null;
    },
    disarm() {
      armed = false;
    },
    get largest() {
      return largest;
    },
    get violation() {
      return violation;
    },
  };
  return installed;
}
