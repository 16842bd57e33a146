/**
 * A small BMP decoder (kohya counts `.bmp` among image files and imagescript cannot read it):
 * uncompressed 1/4/8-bit palette, 24-bit and 32-bit (BI_RGB or BI_BITFIELDS) images, bottom-up
 * or top-down. RLE-compressed BMPs are rejected with a clear error.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { RasterImage } from "./image.ts";

function maskShift(mask: number): [number, number] {
  if (mask === 0) return [0, 0];
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  return [shift, (mask >>> shift) >>> 0];
}

/** Decode a BMP file held in memory; `name` goes into errors. */
export function decodeBmp(b: Uint8Array, name: string, maxPixels: number): RasterImage {
  if (b.length < 26) throw new LorakitError(`${name}: truncated BMP (${b.length} bytes)`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const dataOffset = v.getUint32(10, true);
  const hdr = v.getUint32(14, true);
  if (hdr < 40 || 14 + hdr > b.length) {
    throw new LorakitError(`${name}: unsupported or truncated BMP header (size ${hdr})`);
  }
  const w = v.getInt32(18, true);
  const rawH = v.getInt32(22, true);
  const bpp = v.getUint16(28, true);
  const compression = v.getUint32(30, true);
  const h = Math.abs(rawH);
  if (w < 1 || h < 1 || w * h > maxPixels) {
    throw new LorakitError(`${name}: BMP size ${w}x${h} is empty or larger than allowed`);
  }
  if (compression !== 0 && !(compression === 3 && (bpp === 32 || bpp === 16))) {
    throw new LorakitError(`${name}: compressed BMP (method ${compression}) is not supported`);
  }
  if (![1, 4, 8, 24, 32].includes(bpp)) {
    throw new LorakitError(`${name}: ${bpp}-bit BMP is not supported`);
  }
  let masks = [0xff0000, 0xff00, 0xff, 0];
  if (compression === 3) {
    const at = hdr >= 52 ? 54 : 14 + hdr; // masks live in the header (V2+) or right after it
    if (at + 12 > b.length) throw new LorakitError(`${name}: truncated BMP bit masks`);
    masks = [v.getUint32(at, true), v.getUint32(at + 4, true), v.getUint32(at + 8, true), 0];
    if (hdr >= 56) masks[3] = v.getUint32(at + 12, true);
  }
  const hasAlpha = bpp === 32 && masks[3] !== 0;
  const channels = hasAlpha ? 4 : 3;
  const stride = Math.floor((w * bpp + 31) / 32) * 4;
  if (dataOffset + stride * h > b.length) {
    throw new LorakitError(
      `${name}: BMP is truncated (needs ${dataOffset + stride * h} bytes, has ${b.length})`,
    );
  }
  const palette: number[] = [];
  if (bpp <= 8) {
    const n = v.getUint32(46, true) || 1 << bpp;
    for (let i = 0; i < n; i++) {
      const p = 14 + hdr + i * 4;
      if (p + 4 > b.length) throw new LorakitError(`${name}: truncated BMP palette`);
      palette.push((b[p + 2] << 16) | (b[p + 1] << 8) | b[p]);
    }
  }
  const ms = masks.map(maskShift);
  const out = new Uint8Array(w * h * channels);
  for (let y = 0; y < h; y++) {
    const row = dataOffset + (rawH > 0 ? h - 1 - y : y) * stride;
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * channels;
      let rgb: number;
      if (bpp === 24) rgb = (b[row + x * 3 + 2] << 16) | (b[row + x * 3 + 1] << 8) | b[row + x * 3];
      else if (bpp === 32) {
        const px = v.getUint32(row + x * 4, true);
        const ch = ms.map(([s, m]) => (m === 0 ? 255 : Math.round((((px >>> s) & m) * 255) / m)));
        out[o] = ch[0], out[o + 1] = ch[1], out[o + 2] = ch[2];
        if (hasAlpha) out[o + 3] = ch[3];
        continue;
      } else {
        const bit = x * bpp;
        const idx = (b[row + (bit >> 3)] >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        rgb = palette[idx] ?? 0;
      }
      out[o] = rgb >> 16, out[o + 1] = (rgb >> 8) & 255, out[o + 2] = rgb & 255;
    }
  }
  return { width: w, height: h, channels, data: out };
}
