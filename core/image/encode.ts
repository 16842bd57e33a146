/**
 * Image encoding. PNG is written here (filtering per row, zlib via the web-standard
 * CompressionStream, optional tEXt/iTXt metadata) so that RGB images stay 3-channel and no
 * metadata is added behind the caller's back; JPEG goes through imagescript's encoder.
 *
 * @module
 */
import { Image } from "../deps/imagescript.ts";
import { LorakitError } from "../errors.ts";
import { type RasterImage, toRGBA } from "./image.ts";
import { makeChunk, PNG_SIGNATURE, textChunk } from "./png_chunks.ts";

/** Options of {@link encodePng}. */
export interface PngOptions {
  /** Text metadata, e.g. `{ parameters: "a photo of ..., Steps: 20, ..." }`, in this order. */
  text?: Record<string, string>;
}

async function deflate(data: Uint8Array): Promise<Uint8Array> {
  // "deflate" in the Compression Streams standard is the zlib format PNG's IDAT requires.
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/**
 * Filtered scanlines: each row takes the filter (None, Sub, Up, Average, Paeth) with the least
 * sum of absolute residuals, the heuristic libpng uses; it roughly halves the file size of
 * photographs compared with no filtering.
 */
function filterRows(img: RasterImage): Uint8Array {
  const bpp = img.channels;
  const rowLen = img.width * bpp;
  const out = new Uint8Array((rowLen + 1) * img.height);
  const cand = Array.from({ length: 5 }, () => new Uint8Array(rowLen));
  const src = img.data;
  for (let y = 0; y < img.height; y++) {
    const r = y * rowLen;
    const up = y > 0 ? r - rowLen : -1;
    let best = 0;
    let bestSum = Infinity;
    for (let f = 0; f < 5; f++) {
      const c = cand[f];
      let sum = 0;
      for (let i = 0; i < rowLen; i++) {
        const x = src[r + i];
        const a = i >= bpp ? src[r + i - bpp] : 0;
        const b = up >= 0 ? src[up + i] : 0;
        const cc = i >= bpp && up >= 0 ? src[up + i - bpp] : 0;
        const pred = f === 0
          ? 0
          : f === 1
          ? a
          : f === 2
          ? b
          : f === 3
          ? (a + b) >> 1
          : paeth(a, b, cc);
        const v = (x - pred) & 255;
        c[i] = v;
        sum += v < 128 ? v : 256 - v;
        if (sum >= bestSum) break;
      }
      if (sum < bestSum) (bestSum = sum), (best = f);
    }
    out[y * (rowLen + 1)] = best;
    // Only losing filters stop early, so the winner's candidate row is complete.
    out.set(cand[best], y * (rowLen + 1) + 1);
  }
  return out;
}

/** Encode an 8-bit gray, RGB or RGBA image as PNG, with optional text chunks. */
export async function encodePng(img: RasterImage, options: PngOptions = {}): Promise<Uint8Array> {
  const colorType = img.channels === 1 ? 0 : img.channels === 3 ? 2 : img.channels === 4 ? 6 : -1;
  if (colorType < 0) throw new LorakitError(`cannot encode a ${img.channels}-channel image as PNG`);
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, img.width);
  v.setUint32(4, img.height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = colorType; // compression, filter and interlace bytes stay 0
  const idat = await deflate(filterRows(img));
  const parts = [PNG_SIGNATURE, makeChunk("IHDR", ihdr)];
  for (const [k, val] of Object.entries(options.text ?? {})) parts.push(textChunk(k, val));
  parts.push(makeChunk("IDAT", idat), makeChunk("IEND", new Uint8Array(0)));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let p = 0;
  for (const part of parts) (out.set(part, p)), (p += part.length);
  return out;
}

/** Encode as baseline JPEG at `quality` 1-100 (alpha, if any, is dropped). */
export async function encodeJpeg(img: RasterImage, quality: number): Promise<Uint8Array> {
  if (!Number.isInteger(quality) || quality < 1 || quality > 100) {
    throw new LorakitError(`JPEG quality must be an integer 1-100, found ${quality}`);
  }
  const rgba = toRGBA(img);
  const im = new Image(img.width, img.height);
  im.bitmap.set(rgba.data);
  return await im.encodeJPEG(quality);
}
