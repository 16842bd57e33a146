/**
 * Element types at the file boundary: sizes, f16/bf16 <-> f32 conversions, and decoding of every
 * {@link FileDType} from little-endian bytes to f32 (and encoding back).
 *
 * Hot paths work on typed-array views of whole tensors rather than per-element `DataView` calls,
 * which is what makes reading a multi-gigabyte checkpoint run near disk speed.
 *
 * @module
 */
import { f16BitsToF32, f32BitsToF16Bits, f32ToF16Bits } from "../../gpu/f16.ts";
import { LorakitError } from "../errors.ts";
import type { FileDType } from "./tensor_source.ts";

export { f16BitsToF32, f32ToF16Bits };

/** Bytes per element of each file dtype. */
export const DTYPE_SIZE: Readonly<Record<FileDType, number>> = Object.freeze({
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
});

/** True if `s` names a dtype lorakit can read. */
export function isFileDType(s: unknown): s is FileDType {
  return typeof s === "string" && Object.hasOwn(DTYPE_SIZE, s);
}

// Typed-array views use host byte order; files are little-endian. On a big-endian host (none in
// practice today, but the check is free) bytes are swapped into host order first.
/** True on little-endian hosts (every platform Deno ships for), where file bytes are host order. */
export const HOST_LITTLE_ENDIAN: boolean = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverse the bytes of each `size`-byte element in place (little- <-> big-endian). */
export function swapBytes(bytes: Uint8Array, size: number): void {
  if (size === 1) return;
  for (let i = 0; i + size <= bytes.length; i += size) {
    for (let a = i, b = i + size - 1; a < b; a++, b--) {
      const t = bytes[a];
      bytes[a] = bytes[b];
      bytes[b] = t;
    }
  }
}

// Reusable scratch for scalar conversions.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Decode one bfloat16 (as its 16 bits) to a number. */
export function bf16BitsToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0];
}

/** Encode a number as bfloat16 bits, rounding to nearest-even; NaN becomes 0x7fc0 like PyTorch. */
export function f32ToBf16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToBf16Bits(scratchU32[0]);
}

function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

let f16Table: Float32Array | null = null;

/** All 65536 half values as f32, built on first use (256 KiB); decoding is then one lookup. */
function halfTable(): Float32Array {
  if (f16Table === null) {
    const t = new Float32Array(65536);
    const bits = new Uint32Array(t.buffer);
    for (let h = 0; h < 65536; h++) {
      // NaNs keep their sign and payload rather than collapsing to one canonical NaN.
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) {
        bits[h] = ((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13);
      } else t[h] = f16BitsToF32(h);
    }
    f16Table = t;
  }
  return f16Table;
}

/**
 * `bytes` as an aligned typed-array-ready buffer in host byte order: the same memory when it is
 * already aligned and the host is little-endian, else a copy.
 */
function hostAligned(bytes: Uint8Array, size: number): ArrayBuffer {
  const aligned = bytes.byteOffset % size === 0 && bytes.buffer instanceof ArrayBuffer;
  if (aligned && HOST_LITTLE_ENDIAN) {
    return bytes.buffer as ArrayBuffer;
  }
  const copy = bytes.slice();
  if (!HOST_LITTLE_ENDIAN) swapBytes(copy, size);
  return copy.buffer;
}

/** Element offset of `bytes` inside the buffer returned by {@link hostAligned}. */
function viewStart(bytes: Uint8Array, buf: ArrayBuffer, size: number): number {
  return buf === bytes.buffer ? bytes.byteOffset / size : 0;
}

/**
 * Decode little-endian bytes of `dtype` to f32 values. Integers and bools become their numeric
 * value (int64 beyond 2^24 rounds as any f32 does). `bytes.length` must be a multiple of the
 * element size; `out`, when given, must hold exactly that many elements.
 */
export function decodeToF32(dtype: FileDType, bytes: Uint8Array, out?: Float32Array): Float32Array {
  const size = DTYPE_SIZE[dtype];
  if (size === undefined) throw new LorakitError(`unknown dtype ${String(dtype)}`);
  if (bytes.length % size !== 0) {
    throw new LorakitError(
      `${dtype} data: expected a multiple of ${size} bytes, found ${bytes.length}`,
    );
  }
  const n = bytes.length / size;
  if (out !== undefined && out.length !== n) {
    throw new LorakitError(`${dtype} data: output holds ${out.length} values, expected ${n}`);
  }
  const dst = out ?? new Float32Array(n);
  if (n === 0) return dst;
  if (size === 1) {
    const src = dtype === "I8" ? new Int8Array(bytes.buffer, bytes.byteOffset, n) : bytes;
    if (dtype === "BOOL") {
      for (let i = 0; i < n; i++) dst[i] = src[i] !== 0 ? 1 : 0;
    } else {
      dst.set(src);
    }
    return dst;
  }
  const buf = hostAligned(bytes, size);
  const at = viewStart(bytes, buf, size);
  switch (dtype) {
    case "F32":
      dst.set(new Float32Array(buf, at * 4, n));
      break;
    case "F64":
      dst.set(new Float64Array(buf, at * 8, n));
      break;
    case "I32":
      dst.set(new Int32Array(buf, at * 4, n));
      break;
    case "I16":
      dst.set(new Int16Array(buf, at * 2, n));
      break;
    case "F16": {
      const src = new Uint16Array(buf, at * 2, n);
      const table = halfTable();
      for (let i = 0; i < n; i++) dst[i] = table[src[i]];
      break;
    }
    case "BF16": {
      // bf16 is the top half of an f32: shift the bits into place through a u32 view.
      const src = new Uint16Array(buf, at * 2, n);
      const bits = new Uint32Array(dst.buffer, dst.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = src[i] << 16;
      break;
    }
    case "I64": {
      // Two 32-bit halves: exact below 2^53, which covers every index and step count in practice.
      const src = new Int32Array(buf, at * 8, 2 * n);
      for (let i = 0; i < n; i++) dst[i] = src[2 * i + 1] * 4294967296 + (src[2 * i] >>> 0);
      break;
    }
  }
  return dst;
}

/**
 * Like {@link decodeToF32}, but the caller hands `bytes` over: f32 data that is aligned and
 * covers its whole buffer is returned as a view of the same memory, with no copy.
 */
export function decodeOwnedToF32(dtype: FileDType, bytes: Uint8Array): Float32Array {
  if (
    dtype === "F32" && HOST_LITTLE_ENDIAN && bytes.byteOffset === 0 &&
    bytes.buffer instanceof ArrayBuffer && bytes.byteLength === bytes.buffer.byteLength &&
    bytes.length % 4 === 0
  ) {
    return new Float32Array(bytes.buffer, 0, bytes.length / 4);
  }
  return decodeToF32(dtype, bytes);
}

/** `[lowest, one past highest]` of each integer dtype (exclusive bound, as 2^63 - 1 is no f64). */
const INT_RANGE: Partial<Record<FileDType, [number, number]>> = {
  I64: [-(2 ** 63), 2 ** 63],
  I32: [-(2 ** 31), 2 ** 31],
  I16: [-32768, 32768],
  I8: [-128, 128],
  U8: [0, 256],
  BOOL: [0, 2],
};

/**
 * Encode f32 values as little-endian bytes of `dtype`. Floats round to nearest-even; integer
 * dtypes and BOOL accept only integral values in range (anything else is a LorakitError, since a
 * silent truncation would corrupt token ids or step counters).
 */
export function encodeFromF32(dtype: FileDType, values: Float32Array): Uint8Array {
  const size = DTYPE_SIZE[dtype];
  if (size === undefined) throw new LorakitError(`unknown dtype ${String(dtype)}`);
  const n = values.length;
  const out = new Uint8Array(n * size);
  const src = new Uint32Array(values.buffer, values.byteOffset, n);
  switch (dtype) {
    case "F32":
      out.set(new Uint8Array(values.buffer, values.byteOffset, n * 4));
      break;
    case "F64":
      new Float64Array(out.buffer).set(values);
      break;
    case "F16": {
      const dst = new Uint16Array(out.buffer);
      for (let i = 0; i < n; i++) dst[i] = f32BitsToF16Bits(src[i]);
      break;
    }
    case "BF16": {
      const dst = new Uint16Array(out.buffer);
      for (let i = 0; i < n; i++) dst[i] = f32BitsToBf16Bits(src[i]);
      break;
    }
    default: {
      const [lo, hi] = INT_RANGE[dtype]!;
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (!Number.isInteger(v) || v < lo || v >= hi) {
          throw new LorakitError(
            `cannot store ${v} (element ${i}) as ${dtype}: expected an integer in [${lo}, ${hi})`,
          );
        }
      }
      if (dtype === "I64") {
        const dst = new BigInt64Array(out.buffer);
        for (let i = 0; i < n; i++) dst[i] = BigInt(values[i]);
      } else if (dtype === "I32") new Int32Array(out.buffer).set(values);
      else if (dtype === "I16") new Int16Array(out.buffer).set(values);
      else if (dtype === "I8") new Int8Array(out.buffer).set(values);
      else out.set(values);
    }
  }
  if (!HOST_LITTLE_ENDIAN) swapBytes(out, size);
  return out;
}
