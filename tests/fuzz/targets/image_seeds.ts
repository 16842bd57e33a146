/**
 * Seed images for the image targets, built in code: PNGs of every colour type the encoder writes
 * plus hand-assembled palette, 16-bit and interlaced ones; BMPs of each supported bit depth; and
 * the layouts (length fields, dimensions, chunks and segments) of PNG, JPEG and BMP files. Also
 * the full decode every image target performs.
 *
 * @module
 */
import { decodeImage } from "../../../core/image/decode.ts";
import { encodePng } from "../../../core/image/encode.ts";
import { makeImage } from "../../../core/image/image.ts";
import { crc32, makeChunk, PNG_SIGNATURE } from "../../../core/image/png_chunks.ts";
import type { Field, Layout } from "../mutate_bytes.ts";

/** Images are decoded with this pixel cap (a 256x256 image), which bounds their buffers. */
export const MAX_PIXELS = 1 << 16;

/** Decode with the cap and check the raster is what it claims. */
export async function decodeAndCheck(input: Uint8Array, name: string): Promise<void> {
  const img = await decodeImage(input, name, { maxPixels: MAX_PIXELS });
  const { width: w, height: h, channels: c } = img;
  if (!(w >= 1 && h >= 1 && w * h <= MAX_PIXELS) || (c !== 3 && c !== 4)) {
    throw new Error(`decoded a ${w}x${h}x${c} image`);
  }
  if (img.data.length !== w * h * c) {
    throw new Error(`${w}x${h}x${c} image holds ${img.data.length} bytes`);
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
}

async function zlib(data: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** A PNG from its IHDR fields, raw filtered scanlines and extra chunks before IDAT. */
async function rawPng(
  w: number,
  h: number,
  depth: number,
  colorType: number,
  interlace: number,
  scanlines: number[],
  extra: [string, Uint8Array][] = [],
): Promise<Uint8Array> {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, w);
  v.setUint32(4, h);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  ihdr[12] = interlace;
  return concat([
    PNG_SIGNATURE,
    makeChunk("IHDR", ihdr),
    ...extra.map(([t, d]) => makeChunk(t, d)),
    makeChunk("IDAT", await zlib(new Uint8Array(scanlines))),
    makeChunk("IEND", new Uint8Array(0)),
  ]);
}

const ramp = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 37 + 11) & 255);
const latin1 = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));

/** Valid PNGs: gray, RGB, RGBA with text, palette with tRNS, 16-bit RGB, Adam7-interlaced gray. */
export async function pngSeeds(): Promise<Uint8Array[]> {
  return [
    await encodePng(makeImage(4, 3, 1, ramp(12))),
    await encodePng(makeImage(5, 4, 3, ramp(60))),
    await encodePng(makeImage(3, 3, 4, ramp(36)), {
      text: {
        parameters: "a cat <lora:x:0.5>\nSteps: 20, Seed: 1, Size: 3x3",
        Comment: "caf\u00e9 \u{1f600}",
      },
    }),
    await rawPng(4, 2, 8, 3, 0, [0, 0, 1, 2, 3, 0, 3, 2, 1, 0], [
      ["PLTE", new Uint8Array([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])],
      ["tRNS", new Uint8Array([0, 128])],
      ["tEXt", latin1("Software\0lorakit")],
    ]),
    await rawPng(2, 2, 16, 2, 0, [0, ...ramp(12), 2, ...ramp(12)]),
    // Adam7 of a 2x2 image: pass 1 holds (0,0), pass 6 holds (1,0), pass 7 holds row 1.
    await rawPng(2, 2, 8, 0, 1, [0, 10, 0, 20, 0, 30, 40]),
  ];
}

/** Chunk lengths, IHDR dimensions and depth, and every chunk, of a valid PNG. */
export function pngLayout(b: Uint8Array): Layout {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: Field[] = [];
  const chunks: [number, number][] = [];
  for (let p = 8; p + 12 <= b.length;) {
    const len = v.getUint32(p);
    const type = String.fromCharCode(...b.subarray(p + 4, p + 8));
    fields.push({ at: p, size: 4, little: false, name: `${type} length` });
    if (type === "IHDR") {
      fields.push({ at: p + 8, size: 4, little: false, name: "IHDR width" });
      fields.push({ at: p + 12, size: 4, little: false, name: "IHDR height" });
      fields.push({ at: p + 16, size: 1, little: false, name: "IHDR bit depth" });
      fields.push({ at: p + 17, size: 1, little: false, name: "IHDR colour type" });
    } else chunks.push([p, p + 12 + len]);
    p += 12 + len;
  }
  return { fields, chunks };
}

/** Every chunk's CRC recomputed, as far as the lengths can be followed. */
export function fixPngCrcs(b: Uint8Array): Uint8Array {
  const out = b.slice();
  const v = new DataView(out.buffer);
  for (let p = 8; p + 12 <= out.length;) {
    const len = v.getUint32(p);
    if (p + 12 + len > out.length) break;
    v.setUint32(p + 8 + len, crc32(out.subarray(p + 4, p + 8 + len)));
    p += 12 + len;
  }
  return out;
}

/**
 * Marker segment lengths, frame dimensions and component counts, the restart interval, and every
 * segment (and each scan's entropy-coded data) as a chunk, of a valid JPEG.
 */
export function jpegLayout(b: Uint8Array): Layout {
  const fields: Field[] = [];
  const chunks: [number, number][] = [];
  let p = 2;
  while (p + 4 <= b.length && b[p] === 0xff) {
    const m = b[p + 1];
    if (m === 0xd9) break;
    const len = (b[p + 2] << 8) | b[p + 3];
    fields.push({ at: p + 2, size: 2, little: false, name: `marker 0x${m.toString(16)} length` });
    if (m >= 0xc0 && m <= 0xc2) {
      fields.push({ at: p + 5, size: 2, little: false, name: "SOF height" });
      fields.push({ at: p + 7, size: 2, little: false, name: "SOF width" });
      fields.push({ at: p + 9, size: 1, little: false, name: "SOF components" });
    } else if (m === 0xdd) fields.push({ at: p + 4, size: 2, little: false, name: "DRI interval" });
    else if (m === 0xda) fields.push({ at: p + 4, size: 1, little: false, name: "SOS components" });
    let end = p + 2 + len;
    if (m === 0xda) {
      // The scan's data runs to the next marker that is not a stuffed 0xFF00 or a restart.
      while (
        end + 1 < b.length &&
        !(b[end] === 0xff && b[end + 1] !== 0 && (b[end + 1] < 0xd0 || b[end + 1] > 0xd7))
      ) end++;
    }
    chunks.push([p, end]);
    p = end;
  }
  return { fields, chunks };
}

/** A BMP file: headers, optional bit masks and palette, then `rows` (each padded to 4 bytes). */
function bmp(
  w: number,
  h: number,
  bpp: number,
  o: { topDown?: boolean; palette?: number[]; masks?: number[]; v5?: boolean },
  rowBytes: (y: number) => number[],
): Uint8Array {
  const hdr = o.v5 ? 124 : 40;
  const stride = Math.floor((w * bpp + 31) / 32) * 4;
  const paletteBytes = (o.palette?.length ?? 0) * 4;
  const maskBytes = o.masks && !o.v5 ? 12 : 0;
  const offset = 14 + hdr + maskBytes + paletteBytes;
  const out = new Uint8Array(offset + stride * h);
  const v = new DataView(out.buffer);
  out[0] = 0x42;
  out[1] = 0x4d;
  v.setUint32(2, out.length, true);
  v.setUint32(10, offset, true);
  v.setUint32(14, hdr, true);
  v.setInt32(18, w, true);
  v.setInt32(22, o.topDown ? -h : h, true);
  v.setUint16(26, 1, true);
  v.setUint16(28, bpp, true);
  v.setUint32(30, o.masks ? 3 : 0, true);
  v.setUint32(34, stride * h, true);
  v.setUint32(46, o.palette?.length ?? 0, true);
  if (o.masks) o.masks.forEach((m, i) => v.setUint32(54 + 4 * i, m, true));
  o.palette?.forEach((c, i) => v.setUint32(14 + hdr + maskBytes + 4 * i, c, true));
  for (let y = 0; y < h; y++) out.set(rowBytes(y), offset + y * stride);
  return out;
}

/** Valid BMPs: 24-bit, 32-bit with alpha masks (V5 header), 8-, 4- and 1-bit palettes. */
export function bmpSeeds(): Uint8Array[] {
  return [
    bmp(5, 3, 24, {}, (y) => [...ramp(15)].map((x) => x ^ y)),
    bmp(3, 2, 32, { topDown: true, v5: true, masks: [0xff0000, 0xff00, 0xff, 0xff000000] }, () => [
      ...ramp(12),
    ]),
    bmp(4, 2, 32, { masks: [0xf800, 0x7e0, 0x1f] }, () => [...ramp(16)]),
    bmp(4, 3, 8, { palette: [0, 0xff0000, 0xff00, 0xff] }, (y) => [y, 1, 2, 3]),
    bmp(5, 2, 4, { palette: [0x123456, 0xabcdef] }, () => [0x01, 0x10, 0x10]),
    bmp(9, 2, 1, { palette: [0, 0xffffff] }, (y) => [0xa5 ^ y, 0x80]),
  ];
}

/** The file and info header's sizes, offsets, dimensions, depth, compression and palette count. */
export function bmpLayout(b: Uint8Array): Layout {
  const f = (at: number, size: 2 | 4, name: string): Field => ({ at, size, little: true, name });
  const fields = [
    f(2, 4, "file size"),
    f(10, 4, "pixel data offset"),
    f(14, 4, "info header size"),
    f(18, 4, "width"),
    f(22, 4, "height"),
    f(28, 2, "bits per pixel"),
    f(30, 4, "compression"),
    f(34, 4, "image size"),
    f(46, 4, "palette colours"),
  ];
  if (new DataView(b.buffer, b.byteOffset).getUint32(30, true) === 3) {
    fields.push(f(54, 4, "red mask"), f(58, 4, "green mask"), f(62, 4, "alpha mask"));
  }
  return { fields, chunks: [] };
}
