/**
 * Image sizes from file headers, without decoding pixels: PNG (IHDR), JPEG (the first SOF
 * marker), WebP (VP8, VP8L, VP8X) and BMP. Like the `imagesize` package kohya uses, the stored
 * size is reported and EXIF orientation is not applied (kohya's PIL loading does not apply it
 * either, so buckets match the pixels it trains on). Reads are bounded: a corrupt file is an
 * error naming it, never a long scan.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { openRead, type RandomAccessFile } from "../io/fs.ts";

/** A size read from a header. */
export interface ImageHeaderSize {
  width: number;
  height: number;
  format: "png" | "jpeg" | "webp" | "bmp";
}

/** Read the pixel size of an image file from its header. Throws a LorakitError naming the file. */
export async function readImageSize(path: string): Promise<ImageHeaderSize> {
  const file = await openRead(path);
  try {
    const size = await sizeOf(file);
    if (!(size.width > 0 && size.height > 0)) {
      throw new LorakitError(`${path}: header gives an empty image (${size.width}x${size.height})`);
    }
    return size;
  } finally {
    file.close();
  }
}

async function sizeOf(file: RandomAccessFile): Promise<ImageHeaderSize> {
  const path = file.path;
  const bad = (what: string): never => {
    throw new LorakitError(`${path}: not a readable image (${what})`);
  };
  if (file.size < 26) bad(`only ${file.size} bytes`);
  const head = await file.read(0, Math.min(file.size, 32));
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const ascii = (o: number, n: number) => String.fromCharCode(...head.subarray(o, o + n));
  if (head[0] === 0x89 && ascii(1, 3) === "PNG") {
    if (ascii(12, 4) !== "IHDR") bad("PNG without IHDR first");
    return { width: dv.getUint32(16), height: dv.getUint32(20), format: "png" };
  }
  if (head[0] === 0xff && head[1] === 0xd8) return await jpegSize(file, bad);
  if (ascii(0, 4) === "RIFF" && ascii(8, 4) === "WEBP") {
    const tail = await file.read(0, Math.min(file.size, 30));
    const t = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    const chunk = ascii(12, 4);
    if (chunk === "VP8 " && tail.length >= 30) {
      if (tail[23] !== 0x9d || tail[24] !== 0x01 || tail[25] !== 0x2a) {
        bad("VP8 start code missing");
      }
      return {
        width: t.getUint16(26, true) & 0x3fff,
        height: t.getUint16(28, true) & 0x3fff,
        format: "webp",
      };
    }
    if (chunk === "VP8L" && tail.length >= 25) {
      if (tail[20] !== 0x2f) bad("VP8L signature missing");
      const bits = t.getUint32(21, true);
      return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1, format: "webp" };
    }
    if (chunk === "VP8X" && tail.length >= 30) {
      const u24 = (o: number) => tail[o] | (tail[o + 1] << 8) | (tail[o + 2] << 16);
      return { width: u24(24) + 1, height: u24(27) + 1, format: "webp" };
    }
    return bad(`unknown WebP chunk ${JSON.stringify(chunk)}`);
  }
  if (ascii(0, 2) === "BM") {
    const dib = dv.getUint32(14, true);
    if (dib === 12) {
      return { width: dv.getUint16(18, true), height: dv.getUint16(20, true), format: "bmp" };
    }
    if (dib < 40) bad(`BMP header of ${dib} bytes`);
    return {
      width: Math.abs(dv.getInt32(18, true)),
      height: Math.abs(dv.getInt32(22, true)),
      format: "bmp",
    };
  }
  return bad("unknown format: not PNG, JPEG, WebP or BMP");
}

/** Walk JPEG segments to the first start-of-frame marker. */
async function jpegSize(
  file: RandomAccessFile,
  bad: (what: string) => never,
): Promise<ImageHeaderSize> {
  let pos = 2;
  // Each step reads one segment header; a JPEG has a few dozen segments before SOF at most.
  for (let guard = 0; guard < 10000; guard++) {
    if (pos + 4 > file.size) return bad("JPEG ended before a frame header");
    const m = await file.read(pos, 4);
    if (m[0] !== 0xff) return bad(`JPEG marker expected at byte ${pos}`);
    const marker = m[1];
    if (marker === 0xff) {
      pos += 1; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return bad("JPEG has no frame header before its data");
    const length = (m[2] << 8) | m[3];
    if (length < 2) return bad(`JPEG segment of length ${length} at byte ${pos}`);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 &&
      marker !== 0xcc;
    if (isSof) {
      if (pos + 9 > file.size) return bad("JPEG frame header cut short");
      const f = await file.read(pos + 5, 4);
      return { height: (f[0] << 8) | f[1], width: (f[2] << 8) | f[3], format: "jpeg" };
    }
    pos += 2 + length;
  }
  return bad("too many JPEG segments");
}
