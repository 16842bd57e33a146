/**
 * EXIF orientation: read tag 0x0112 from a JPEG's APP1 "Exif" segment and turn the decoded pixels
 * upright. Cameras store the sensor's pixels and record the rotation in this tag; viewers (and
 * what a user expects to train on) show the rotated image.
 *
 * @module
 */
import type { RasterImage } from "./image.ts";

/**
 * The EXIF orientation (1-8) of a JPEG, or 1 when absent or unreadable. Malformed EXIF is not an
 * error: the pixels are still valid, so the image is taken as stored.
 */
export function jpegOrientation(bytes: Uint8Array): number {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return 1;
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) return 1;
    const marker = bytes[p + 1];
    if (marker === 0xff) {
      p++; // fill byte
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return 1; // start of scan / end: no EXIF before data
    const len = (bytes[p + 2] << 8) | bytes[p + 3];
    if (len < 2 || p + 2 + len > bytes.length) return 1;
    if (marker === 0xe1) {
      const seg = bytes.subarray(p + 4, p + 2 + len);
      const o = tiffOrientation(seg);
      if (o !== null) return o;
    }
    p += 2 + len;
  }
  return 1;
}

/** Orientation from an APP1 payload ("Exif\0\0" + TIFF), or null if it is not EXIF. */
function tiffOrientation(seg: Uint8Array): number | null {
  if (seg.length < 14) return null;
  const hdr = String.fromCharCode(seg[0], seg[1], seg[2], seg[3]);
  if (hdr !== "Exif" || seg[4] !== 0 || seg[5] !== 0) return null;
  const t = seg.subarray(6);
  const view = new DataView(t.buffer, t.byteOffset, t.byteLength);
  const little = t[0] === 0x49 && t[1] === 0x49;
  if (!little && !(t[0] === 0x4d && t[1] === 0x4d)) return null;
  if (view.getUint16(2, little) !== 42) return null;
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > t.length) return null;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const e = ifd + 2 + i * 12;
    if (e + 12 > t.length) return null;
    if (view.getUint16(e, little) === 0x0112) {
      const v = view.getUint16(e + 8, little); // SHORT value, left-justified in the value field
      return v >= 1 && v <= 8 ? v : 1;
    }
  }
  return 1;
}

/**
 * The image as it should be displayed for EXIF `orientation`: 2 mirror, 3 rotate 180, 4 flip,
 * 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
 */
export function applyOrientation(img: RasterImage, orientation: number): RasterImage {
  if (orientation < 2 || orientation > 8) return img;
  const { width: w, height: h, channels: c } = img;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const out = new Uint8Array(img.data.length);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      // Source pixel (sx, sy) shown at display position (x, y).
      let sx: number, sy: number;
      switch (orientation) {
        case 2:
          (sx = w - 1 - x), (sy = y);
          break;
        case 3:
          (sx = w - 1 - x), (sy = h - 1 - y);
          break;
        case 4:
          (sx = x), (sy = h - 1 - y);
          break;
        case 5:
          (sx = y), (sy = x);
          break;
        case 6:
          (sx = y), (sy = h - 1 - x);
          break;
        case 7:
          (sx = w - 1 - y), (sy = h - 1 - x);
          break;
        default:
          (sx = w - 1 - y), (sy = x);
          break; // 8
      }
      const s = (sy * w + sx) * c;
      const d = (y * ow + x) * c;
      for (let k = 0; k < c; k++) out[d + k] = img.data[s + k];
    }
  }
  return { width: ow, height: oh, channels: c, data: out };
}
