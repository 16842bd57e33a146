/**
 * From decoded component planes to pixels, as libjpeg-turbo does it by default (Pillow's and
 * OpenCV's decode): chroma upsampling by `jdsample.c` (the "fancy" triangle filters for 2:1
 * horizontal, 2:1 vertical and 2:1 both ways, with their alternating rounding biases; plain
 * replication for other integer ratios and for planes at most 2 samples wide), then YCbCr->RGB
 * with `jdcolor.c`'s 16-bit fixed-point tables and its range limit.
 *
 * The upsamplers see the plane's real samples only (libjpeg's `downsampled_width/height`), with
 * the first and last row and column repeated beyond the edges, as libjpeg's context rows do.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** One component's samples after the IDCT. */
export interface ComponentPlane {
  readonly data: Uint8Array;
  /** Bytes between rows of `data`. */
  readonly stride: number;
  /** Real samples (libjpeg's downsampled_width / downsampled_height). */
  readonly width: number;
  readonly height: number;
  readonly h: number;
  readonly v: number;
}

/** How the components map to colours (libjpeg's `jpeg_color_space`). */
export type JpegColorSpace = "gray" | "ycc" | "rgb";

const SCALEBITS = 16;
const ONE_HALF = 1 << (SCALEBITS - 1);
const fix = (x: number): number => Math.trunc(x * (1 << SCALEBITS) + 0.5);

/** `build_ycc_rgb_table`: R = Y + crR[Cr], G = Y + ((cbG[Cb] + crG[Cr]) >> 16), B = Y + cbB[Cb]. */
const CR_R = new Int32Array(256);
const CB_B = new Int32Array(256);
const CR_G = new Int32Array(256);
const CB_G = new Int32Array(256);
for (let i = 0; i < 256; i++) {
  const x = i - 128;
  CR_R[i] = (fix(1.402) * x + ONE_HALF) >> SCALEBITS;
  CB_B[i] = (fix(1.772) * x + ONE_HALF) >> SCALEBITS;
  CR_G[i] = -fix(0.71414) * x;
  CB_G[i] = -fix(0.34414) * x + ONE_HALF;
}

/** libjpeg's `range_limit` (0 below 0, 255 above 255), offset by 384 so indices are >= 0. */
const LIMIT = new Uint8Array(1024);
for (let i = 0; i < 1024; i++) LIMIT[i] = Math.min(255, Math.max(0, i - 384));

/** Fills `out` with full-resolution row `y` of a component; returns the offset of the row. */
type RowSource = (y: number) => { buf: Uint8Array; off: number };

function rowSource(p: ComponentPlane, maxH: number, maxV: number, name: string): RowSource {
  const hr = maxH / p.h;
  const vr = maxV / p.v;
  if (!Number.isInteger(hr) || !Number.isInteger(vr)) {
    throw new LorakitError(
      `${name}: JPEG sampling factors ${p.h}x${p.v} against ${maxH}x${maxV} are not an integer ratio (not supported by libjpeg either)`,
    );
  }
  const { data, stride, width: w, height: h } = p;
  const lastRow = h - 1;
  if (hr === 1 && vr === 1) return (y) => ({ buf: data, off: y * stride });
  const out = new Uint8Array(w * hr + 8);
  const res = { buf: out, off: 0 };
  if (hr === 2 && vr === 1 && w > 2) {
    // h2v1_fancy_upsample: 3/4 nearer + 1/4 further sample, biases 1 and 2 alternating.
    return (y) => {
      const r = y * stride;
      for (let i = 0; i < w; i++) {
        const c3 = data[r + i] * 3;
        out[2 * i] = (c3 + data[r + (i > 0 ? i - 1 : 0)] + 1) >> 2;
        out[2 * i + 1] = (c3 + data[r + (i < w - 1 ? i + 1 : i)] + 2) >> 2;
      }
      return res;
    };
  }
  if (hr === 1 && vr === 2) {
    // h1v2_fancy_upsample: the row above biased by 1, the row below by 2.
    return (y) => {
      const cy = y >> 1;
      const below = (y & 1) === 1;
      const ny = below ? Math.min(cy + 1, lastRow) : Math.max(cy - 1, 0);
      const r0 = cy * stride, r1 = ny * stride;
      const bias = below ? 2 : 1;
      for (let i = 0; i < w; i++) out[i] = (data[r0 + i] * 3 + data[r1 + i] + bias) >> 2;
      return res;
    };
  }
  if (hr === 2 && vr === 2 && w > 2) {
    // h2v2_fancy_upsample: column sums 3*near row + far row, then 3:1 across with biases 8, 7.
    const sums = new Int32Array(w);
    return (y) => {
      const cy = y >> 1;
      const ny = (y & 1) === 1 ? Math.min(cy + 1, lastRow) : Math.max(cy - 1, 0);
      const r0 = cy * stride, r1 = ny * stride;
      for (let i = 0; i < w; i++) sums[i] = data[r0 + i] * 3 + data[r1 + i];
      for (let i = 0; i < w; i++) {
        const c3 = sums[i] * 3;
        out[2 * i] = (c3 + sums[i > 0 ? i - 1 : 0] + 8) >> 4;
        out[2 * i + 1] = (c3 + sums[i < w - 1 ? i + 1 : i] + 7) >> 4;
      }
      return res;
    };
  }
  // Box replication (int_upsample, and h2v1/h2v2_upsample for planes at most 2 samples wide).
  return (y) => {
    const r = Math.min(Math.floor(y / vr), lastRow) * stride;
    for (let i = 0, o = 0; i < w; i++) {
      const s = data[r + i];
      for (let k = 0; k < hr; k++) out[o++] = s;
    }
    return res;
  };
}

/**
 * Upsample and colour-convert planes into interleaved 8-bit pixels of `width` x `height`: 1
 * channel for gray, 3 (RGB) otherwise.
 */
export function planesToPixels(
  planes: readonly ComponentPlane[],
  width: number,
  height: number,
  space: JpegColorSpace,
  name: string,
): { channels: 1 | 3; data: Uint8Array } {
  const maxH = Math.max(...planes.map((p) => p.h));
  const maxV = Math.max(...planes.map((p) => p.v));
  const sources = planes.map((p) => rowSource(p, maxH, maxV, name));
  if (space === "gray") {
    const out = new Uint8Array(width * height);
    for (let y = 0; y < height; y++) {
      const { buf, off } = sources[0](y);
      out.set(buf.subarray(off, off + width), y * width);
    }
    return { channels: 1, data: out };
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const a = sources[0](y);
    const b = sources[1](y);
    const c = sources[2](y);
    const b0 = a.buf, b1 = b.buf, b2 = c.buf;
    let o0 = a.off, o1 = b.off, o2 = c.off;
    let o = y * width * 3;
    if (space === "rgb") {
      for (let x = 0; x < width; x++, o += 3) {
        out[o] = b0[o0++];
        out[o + 1] = b1[o1++];
        out[o + 2] = b2[o2++];
      }
      continue;
    }
    for (let x = 0; x < width; x++, o += 3) {
      const yy = b0[o0++] + 384;
      const cb = b1[o1++];
      const cr = b2[o2++];
      out[o] = LIMIT[yy + CR_R[cr]];
      out[o + 1] = LIMIT[yy + ((CB_G[cb] + CR_G[cr]) >> SCALEBITS)];
      out[o + 2] = LIMIT[yy + CB_B[cb]];
    }
  }
  return { channels: 3, data: out };
}
