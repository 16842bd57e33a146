import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import {
  bf16BitsToF32,
  decodeToF32,
  encodeFromF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  swapBytes,
} from "../core/io/dtype.ts";
import type { FileDType } from "../core/io/tensor_source.ts";

/** Small deterministic PRNG (xorshift32) so a failing fuzz case can be replayed from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

/** `n` pseudo-random 32-bit patterns (crypto.getRandomValues caps a call at 64 KiB). */
function randomBits(n: number, seed: number): Uint32Array {
  const r = rng(seed);
  return Uint32Array.from({ length: n }, () => Math.floor(r() * 4294967296));
}

Deno.test("f16: every half decodes and re-encodes to itself; ties round to even", () => {
  for (let h = 0; h < 65536; h++) {
    const x = f16BitsToF32(h);
    if (Number.isNaN(x)) assert.equal(f32ToF16Bits(x), 0x7e00);
    else assert.equal(f32ToF16Bits(x), h, `half 0x${h.toString(16)}`);
    // The table path agrees with the scalar path.
    const t = decodeToF32("F16", new Uint8Array(new Uint16Array([h]).buffer))[0];
    assert.ok(Object.is(t, x) || (Number.isNaN(t) && Number.isNaN(x)));
  }
  // Exact midpoints between neighbouring halves: ties go to the even mantissa.
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // between 0x3c00 and 0x3c01
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // between 0x3c01 and 0x3c02
  assert.equal(f32ToF16Bits(65520), 0x7c00); // midpoint of max half and 2^16: overflows
  assert.equal(f32ToF16Bits(65519.99), 0x7bff);
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // half the smallest subnormal: to even (zero)
  assert.equal(f32ToF16Bits(-(2 ** -25) * 1.0001), 0x8001);
  assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002); // 1.5 subnormal ulps: to even
  assert.equal(f32ToF16Bits(-0), 0x8000);
  assert.equal(f32ToF16Bits(NaN) & 0x7fff, 0x7e00);
});

Deno.test("f16: bulk encode matches the platform's Float16Array on random f32 bit patterns", () => {
  const bits = randomBits(200_000, 1234);
  // Bias half of them into the half-precision range, where rounding matters.
  for (let i = 0; i < bits.length; i += 2) bits[i] = (bits[i] & 0x87ffffff) | 0x30000000;
  const values = new Float32Array(bits.buffer);
  const ours = new Uint16Array(encodeFromF32("F16", values).buffer);
  const F16 = (globalThis as unknown as { Float16Array?: Float32ArrayConstructor }).Float16Array;
  if (F16 === undefined) return;
  const ref = new Uint16Array(new F16(values).buffer);
  for (let i = 0; i < values.length; i++) {
    if (Number.isNaN(values[i])) assert.equal(ours[i] & 0x7fff, 0x7e00);
    else assert.equal(ours[i], ref[i], `value ${values[i]} (0x${bits[i].toString(16)})`);
  }
});

Deno.test("bf16: round to nearest even, NaN and overflow like PyTorch", () => {
  const fromBits = (b: number) => new Float32Array(new Uint32Array([b]).buffer)[0];
  assert.equal(f32ToBf16Bits(fromBits(0x3f808000)), 0x3f80); // tie, even stays
  assert.equal(f32ToBf16Bits(fromBits(0x3f818000)), 0x3f82); // tie, odd rounds up
  assert.equal(f32ToBf16Bits(fromBits(0x3f808001)), 0x3f81);
  assert.equal(f32ToBf16Bits(fromBits(0x3f807fff)), 0x3f80);
  assert.equal(f32ToBf16Bits(fromBits(0x7f7fffff)), 0x7f80); // max f32 rounds to infinity
  assert.equal(f32ToBf16Bits(NaN), 0x7fc0);
  assert.equal(f32ToBf16Bits(-0), 0x8000);
  assert.equal(bf16BitsToF32(0x3f80), 1);
  assert.equal(bf16BitsToF32(0xc040), -3);
  // Property check on random patterns: the result is a nearest bf16, ties to even.
  const bits = randomBits(50_000, 99);
  const encoded = new Uint16Array(encodeFromF32("BF16", new Float32Array(bits.buffer)).buffer);
  for (let i = 0; i < bits.length; i++) {
    const x = fromBits(bits[i]);
    if (!Number.isFinite(x)) continue;
    const lo = bits[i] >>> 16; // truncation: the bf16 toward zero
    const rest = bits[i] & 0xffff;
    const want = rest > 0x8000 || (rest === 0x8000 && (lo & 1) === 1) ? lo + 1 : lo;
    assert.equal(encoded[i], want & 0xffff);
    assert.equal(f32ToBf16Bits(x), want & 0xffff);
  }
});

Deno.test("decodeToF32 handles every dtype, unaligned input and extreme integers", () => {
  const le = (arr: ArrayBufferView) =>
    new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).slice();
  const cases: [FileDType, Uint8Array, number[]][] = [
    ["F64", le(new Float64Array([1.5, -2.25, 1e300])), [1.5, -2.25, Infinity]],
    ["F32", le(new Float32Array([3.5, -0.125])), [3.5, -0.125]],
    ["F16", le(new Uint16Array([0x3c00, 0xc000, 0x7c00])), [1, -2, Infinity]],
    ["BF16", le(new Uint16Array([0x3f80, 0xc040])), [1, -3]],
    ["I64", le(new BigInt64Array([0n, -1n, 76n, -(2n ** 40n), 2n ** 52n])), [
      0,
      -1,
      76,
      -(2 ** 40),
      2 ** 52,
    ]],
    ["I32", le(new Int32Array([-2147483648, 7])), [-2147483648, 7]],
    ["I16", le(new Int16Array([-32768, 32767])), [-32768, 32767]],
    ["I8", le(new Int8Array([-128, 5])), [-128, 5]],
    ["U8", new Uint8Array([255, 0]), [255, 0]],
    ["BOOL", new Uint8Array([0, 1, 2]), [0, 1, 1]],
  ];
  for (const [dtype, bytes, want] of cases) {
    assert.deepEqual([...decodeToF32(dtype, bytes)], want.map(Math.fround), dtype);
    // The same bytes at an odd offset (as a subarray of a larger buffer) decode the same.
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    assert.deepEqual([...decodeToF32(dtype, shifted.subarray(1))], want.map(Math.fround), dtype);
  }
  assert.throws(() => decodeToF32("F32", new Uint8Array(3)), LorakitError);
  const swapped = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  swapBytes(swapped, 4);
  assert.deepEqual([...swapped], [4, 3, 2, 1, 8, 7, 6, 5]);
});

Deno.test("encodeFromF32 rejects values an integer dtype cannot hold", () => {
  assert.deepEqual([...encodeFromF32("I8", new Float32Array([-128, 127]))], [128, 127]);
  for (
    const [dtype, v] of [["I8", 128], ["U8", -1], ["I32", 0.5], ["BOOL", 2], ["I64", NaN], [
      "I64",
      2 ** 63,
    ]] as const
  ) {
    assert.throws(() => encodeFromF32(dtype, new Float32Array([v])), LorakitError, `${dtype} ${v}`);
  }
});
