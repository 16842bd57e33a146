/**
 * kohya's `color_aug`: with probability 0.33 the image gets either a hue shift of up to ±8 (of
 * OpenCV's 180-step hue circle, i.e. ±16°) or a gamma in [0.95, 1.05], each half the time.
 * kohya shifts hue in OpenCV's 8-bit HSV; lorakit rotates hue in floating-point HSV and rounds
 * once at the end (no 8-bit HSV quantisation), and rounds the gamma result back to 8 bits.
 *
 * @module
 */
import type { RasterImage } from "../image/image.ts";
import type { Random } from "./buckets.ts";

/** Apply kohya's color augmentation to an RGB image (returns the input when it draws none). */
export function colorAug(img: RasterImage, random: Random): RasterImage {
  if (random() > 0.33) return img;
  const out = { ...img, data: new Uint8Array(img.data.length) };
  if (random() > 0.5) {
    let shift = (random() * 2 - 1) * 8; // in OpenCV hue steps (2 degrees each)
    if (shift < 0) shift += 180;
    const deg = shift * 2;
    for (let i = 0; i < img.data.length; i += 3) {
      const [r, g, b] = hueRotate(img.data[i], img.data[i + 1], img.data[i + 2], deg);
      out.data[i] = r;
      out.data[i + 1] = g;
      out.data[i + 2] = b;
    }
  } else {
    const gamma = 0.95 + random() * 0.1;
    for (let i = 0; i < img.data.length; i++) {
      out.data[i] = Math.min(255, Math.round(img.data[i] ** gamma));
    }
  }
  return out;
}

/** Rotate the hue of one 8-bit RGB pixel by `deg` degrees in HSV, keeping S and V. */
function hueRotate(r: number, g: number, b: number, deg: number): [number, number, number] {
  const max = Math.max(r, g, b), min = Math.min(r, g, b);
  const d = max - min;
  if (d === 0) return [r, g, b]; // grey: no hue
  let h = max === r ? ((g - b) / d) % 6 : max === g ? (b - r) / d + 2 : (r - g) / d + 4;
  h = ((h * 60 + deg) % 360 + 360) % 360;
  const v = max, c = d, x = c * (1 - Math.abs(((h / 60) % 2) - 1)), m = v - c;
  const [r1, g1, b1] = h < 60
    ? [c, x, 0]
    : h < 120
    ? [x, c, 0]
    : h < 180
    ? [0, c, x]
    : h < 240
    ? [0, x, c]
    : h < 300
    ? [x, 0, c]
    : [c, 0, x];
  return [Math.round(r1 + m), Math.round(g1 + m), Math.round(b1 + m)];
}
