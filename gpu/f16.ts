/**
 * IEEE half precision on the host: the one codec of the engine (uploads and downloads of f16
 * tensors) and of the file readers and writers (F16 tensors in safetensors and .ckpt), so both
 * round exactly alike — to nearest-even, as PyTorch's `.half()` does.
 *
 * @module
 */

// Reusable scratch for scalar conversions.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Decode one IEEE half (as its 16 bits) to a number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero and subnormals
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

/**
 * Encode a number as IEEE half bits, rounding to nearest-even (as PyTorch's `.half()` does):
 * overflow goes to infinity, underflow to signed zero through the subnormals, NaN to 0x7e00
 * with the sign kept.
 */
export function f32ToF16Bits(x: number): number {
  scratchF32[0] = x;
  return f32BitsToF16Bits(scratchU32[0]);
}

/** IEEE half bits from float32 bits, rounding to nearest-even (see {@link f32ToF16Bits}). */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | (mant !== 0 ? 0x7e00 : 0x7c00);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the full 24-bit significand, rounding half to even.
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    return sign | ((m + half - 1 + ((m >>> shift) & 1)) >>> shift);
  }
  const h = sign | (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  return rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1) ? h + 1 : h;
}
