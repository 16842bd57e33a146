/**
 * Dequantisation and inverse DCT of one 8x8 block, bit-exact with libjpeg-turbo's default
 * `JDCT_ISLOW` (`jidctint.c`: Loeffler-Ligtenberg-Moschytz with 13-bit constants, 2 extra bits
 * between passes) and its post-IDCT range limit. libjpeg-turbo's SIMD versions of this IDCT give
 * the same results as its C code, so this matches what Pillow and OpenCV decode.
 *
 * @module
 */

const CONST_BITS = 13;
const PASS1_BITS = 2;
const FIX_0_298631336 = 2446;
const FIX_0_390180644 = 3196;
const FIX_0_541196100 = 4433;
const FIX_0_765366865 = 6270;
const FIX_0_899976223 = 7373;
const FIX_1_175875602 = 9633;
const FIX_1_501321110 = 12299;
const FIX_1_847759065 = 15137;
const FIX_1_961570560 = 16069;
const FIX_2_053119869 = 16819;
const FIX_2_562915447 = 20995;
const FIX_3_072711026 = 25172;

const P1_SHIFT = CONST_BITS - PASS1_BITS;
const P1_ROUND = 1 << (P1_SHIFT - 1);
const P2_SHIFT = CONST_BITS + PASS1_BITS + 3;
const P2_ROUND = 1 << (P2_SHIFT - 1);

/**
 * libjpeg's post-IDCT range limit, indexed by `value & 1023` where value is the IDCT output
 * before the +128 level shift: -128..127 map to 0..255, 128..511 saturate to 255, -512..-129 to
 * 0, and larger magnitudes wrap (the table's deliberate behaviour on corrupt data).
 */
const RANGE_LIMIT: Uint8Array = (() => {
  const t = new Uint8Array(1024);
  for (let i = 0; i < 1024; i++) t[i] = i < 128 ? i + 128 : i < 512 ? 255 : i < 896 ? 0 : i - 896;
  return t;
})();

const ws = new Int32Array(64);

/** {@link oddPart}'s results: `tmp0..tmp3` of jidctint.c after the odd part. */
const odd = new Float64Array(4);

/**
 * The odd part of both passes (inputs 7, 5, 3, 1 as jidctint.c's `tmp0..tmp3`): the rotations
 * that give the terms added to and subtracted from the even part's `tmp13, tmp12, tmp11, tmp10`.
 */
function oddPart(tmp0: number, tmp1: number, tmp2: number, tmp3: number): void {
  let z4 = tmp1 + tmp3;
  let z3 = tmp0 + tmp2;
  let z2 = tmp1 + tmp2;
  let z1 = tmp0 + tmp3;
  const z5 = Math.imul(z3 + z4, FIX_1_175875602);
  tmp3 = Math.imul(tmp3, FIX_1_501321110);
  tmp2 = Math.imul(tmp2, FIX_3_072711026);
  tmp1 = Math.imul(tmp1, FIX_2_053119869);
  tmp0 = Math.imul(tmp0, FIX_0_298631336);
  z4 = z5 - Math.imul(z4, FIX_0_390180644);
  z3 = z5 - Math.imul(z3, FIX_1_961570560);
  z1 = Math.imul(z1, -FIX_0_899976223);
  z2 = Math.imul(z2, -FIX_2_562915447);
  odd[0] = tmp0 + (z1 + z3);
  odd[1] = tmp1 + (z2 + z4);
  odd[2] = tmp2 + (z2 + z3);
  odd[3] = tmp3 + (z1 + z4);
}

/**
 * Inverse-transform the 64 coefficients at `coefs[cOff..cOff+64)` (natural order) with the
 * quantisation table `q` (natural order) into 8x8 samples at `out[oOff]`, rows `stride` apart.
 */
export function idctIslow(
  coefs: Int16Array,
  cOff: number,
  q: Uint16Array,
  out: Uint8Array,
  oOff: number,
  stride: number,
): void {
  // Pass 1: columns from the input into the workspace, scaled up by PASS1_BITS.
  for (let c = 0; c < 8; c++) {
    const i = cOff + c;
    if (
      coefs[i + 8] === 0 && coefs[i + 16] === 0 && coefs[i + 24] === 0 && coefs[i + 32] === 0 &&
      coefs[i + 40] === 0 && coefs[i + 48] === 0 && coefs[i + 56] === 0
    ) {
      // AC terms all zero: the column is flat.
      const dc = Math.imul(coefs[i], q[c]) << PASS1_BITS;
      for (let r = 0; r < 64; r += 8) ws[c + r] = dc;
      continue;
    }
    let z2 = Math.imul(coefs[i + 16], q[c + 16]);
    let z3 = Math.imul(coefs[i + 48], q[c + 48]);
    const z1 = Math.imul(z2 + z3, FIX_0_541196100);
    const tmp2 = z1 - Math.imul(z3, FIX_1_847759065);
    const tmp3 = z1 + Math.imul(z2, FIX_0_765366865);
    z2 = Math.imul(coefs[i], q[c]);
    z3 = Math.imul(coefs[i + 32], q[c + 32]);
    const tmp0 = (z2 + z3) << CONST_BITS;
    const tmp1 = (z2 - z3) << CONST_BITS;
    const tmp10 = tmp0 + tmp3;
    const tmp13 = tmp0 - tmp3;
    const tmp11 = tmp1 + tmp2;
    const tmp12 = tmp1 - tmp2;
    oddPart(
      Math.imul(coefs[i + 56], q[c + 56]),
      Math.imul(coefs[i + 40], q[c + 40]),
      Math.imul(coefs[i + 24], q[c + 24]),
      Math.imul(coefs[i + 8], q[c + 8]),
    );
    ws[c] = (tmp10 + odd[3] + P1_ROUND) >> P1_SHIFT;
    ws[c + 56] = (tmp10 - odd[3] + P1_ROUND) >> P1_SHIFT;
    ws[c + 8] = (tmp11 + odd[2] + P1_ROUND) >> P1_SHIFT;
    ws[c + 48] = (tmp11 - odd[2] + P1_ROUND) >> P1_SHIFT;
    ws[c + 16] = (tmp12 + odd[1] + P1_ROUND) >> P1_SHIFT;
    ws[c + 40] = (tmp12 - odd[1] + P1_ROUND) >> P1_SHIFT;
    ws[c + 24] = (tmp13 + odd[0] + P1_ROUND) >> P1_SHIFT;
    ws[c + 32] = (tmp13 - odd[0] + P1_ROUND) >> P1_SHIFT;
  }
  // Pass 2: rows from the workspace to the output, descaled by 8 and the pass-1 scaling.
  for (let r = 0; r < 64; r += 8) {
    const o = oOff + (r >> 3) * stride;
    const w0 = ws[r], w1 = ws[r + 1], w2 = ws[r + 2], w3 = ws[r + 3];
    const w4 = ws[r + 4], w5 = ws[r + 5], w6 = ws[r + 6], w7 = ws[r + 7];
    if (w1 === 0 && w2 === 0 && w3 === 0 && w4 === 0 && w5 === 0 && w6 === 0 && w7 === 0) {
      const v = RANGE_LIMIT[((w0 + (1 << (PASS1_BITS + 2))) >> (PASS1_BITS + 3)) & 1023];
      for (let k = 0; k < 8; k++) out[o + k] = v;
      continue;
    }
    const z1 = Math.imul(w2 + w6, FIX_0_541196100);
    const tmp0 = (w0 + w4) << CONST_BITS;
    const tmp3 = z1 + Math.imul(w2, FIX_0_765366865);
    const tmp1 = (w0 - w4) << CONST_BITS;
    const tmp2 = z1 - Math.imul(w6, FIX_1_847759065);
    const tmp10 = tmp0 + tmp3;
    const tmp13 = tmp0 - tmp3;
    const tmp11 = tmp1 + tmp2;
    const tmp12 = tmp1 - tmp2;
    oddPart(w7, w5, w3, w1);
    out[o] = RANGE_LIMIT[((tmp10 + odd[3] + P2_ROUND) >> P2_SHIFT) & 1023];
    out[o + 7] = RANGE_LIMIT[((tmp10 - odd[3] + P2_ROUND) >> P2_SHIFT) & 1023];
    out[o + 1] = RANGE_LIMIT[((tmp11 + odd[2] + P2_ROUND) >> P2_SHIFT) & 1023];
    out[o + 6] = RANGE_LIMIT[((tmp11 - odd[2] + P2_ROUND) >> P2_SHIFT) & 1023];
    out[o + 2] = RANGE_LIMIT[((tmp12 + odd[1] + P2_ROUND) >> P2_SHIFT) & 1023];
    out[o + 5] = RANGE_LIMIT[((tmp12 - odd[1] + P2_ROUND) >> P2_SHIFT) & 1023];
    out[o + 3] = RANGE_LIMIT[((tmp13 + odd[0] + P2_ROUND) >> P2_SHIFT) & 1023];
    out[o + 4] = RANGE_LIMIT[((tmp13 - odd[0] + P2_ROUND) >> P2_SHIFT) & 1023];
  }
}
