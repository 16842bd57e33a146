/**
 * Image decoding to 8-bit rasters. PNG (1-16 bit, gray, palette, alpha, interlaced) is decoded by
 * imagescript's WebAssembly codec, after our own header checks (so a truncated or corrupt file,
 * or one whose size would need unbounded memory, becomes a LorakitError naming the file). JPEG
 * is decoded by our own `jpeg_decode.ts`, which gives exactly the pixels of libjpeg-turbo (and
 * so of kohya's Pillow and OpenCV); BMP is decoded here too; WebP by libwebp (`webp.ts`), after
 * its container is read. 16-bit samples keep their high byte, as Pillow and OpenCV do.
 *
 * @module
 */
import { Image } from "../deps/imagescript.ts";
import { LorakitError } from "../errors.ts";
import { readBytes } from "../io/fs.ts";
import { decodeBmp } from "./bmp.ts";
import { applyOrientation, jpegOrientation } from "./exif.ts";
import { type RasterImage, toRGB } from "./image.ts";
import { decodeJpeg } from "./jpeg_decode.ts";
import { readChunks } from "./png_chunks.ts";
import { decodeWebp, webpInfo } from "./webp.ts";

/** Container formats recognised by their leading bytes. */
export type ImageFormat = "png" | "jpeg" | "webp" | "bmp" | "gif" | "tiff";

/** A decoded image: RGB (3 channels) or, when the file has transparency, RGBA (4). */
export interface DecodedImage extends RasterImage {
  readonly format: ImageFormat;
  /** True when the file carries alpha (an alpha channel or a tRNS transparency chunk). */
  readonly hasAlpha: boolean;
  /** The EXIF orientation found (1 when none); already applied unless disabled. */
  readonly orientation: number;
}

/** Options of {@link decodeImage}. */
export interface DecodeOptions {
  /** Turn JPEGs upright by their EXIF orientation (default true). */
  applyOrientation?: boolean;
  /** Refuse images with more pixels than this (default 2^28), before allocating them. */
  maxPixels?: number;
}

const DEFAULT_MAX_PIXELS = 1 << 28;

/** The format of an encoded image from its magic bytes, or null if unrecognised. */
export function sniffFormat(b: Uint8Array): ImageFormat | null {
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) {
    return "png";
  }
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (
    b.length >= 12 && b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 &&
    b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 && b[11] === 0x50
  ) return "webp";
  if (b.length >= 2 && b[0] === 0x42 && b[1] === 0x4d) return "bmp";
  if (b.length >= 3 && b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46) return "gif";
  if (
    b.length >= 4 &&
    ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 42) ||
      (b[0] === 0x4d && b[1] === 0x4d && b[3] === 42))
  ) return "tiff";
  return null;
}

function checkSize(name: string, w: number, h: number, maxPixels: number): void {
  if (w < 1 || h < 1) throw new LorakitError(`${name}: image declares an empty size ${w}x${h}`);
  if (w * h > maxPixels) {
    throw new LorakitError(
      `${name}: image is ${w}x${h} (${w * h} pixels), more than the ${maxPixels} allowed`,
    );
  }
}

/** PNG header facts: size and whether there is transparency. Validates every chunk's CRC. */
function pngInfo(bytes: Uint8Array, name: string): { w: number; h: number; alpha: boolean } {
  const chunks = readChunks(bytes, name);
  const ihdr = chunks[0];
  if (ihdr.type !== "IHDR" || ihdr.data.length !== 13) {
    throw new LorakitError(`${name}: corrupt PNG, the first chunk is ${ihdr.type}, expected IHDR`);
  }
  if (!chunks.some((c) => c.type === "IDAT")) {
    throw new LorakitError(`${name}: corrupt PNG, no image data (IDAT) chunk`);
  }
  const v = new DataView(ihdr.data.buffer, ihdr.data.byteOffset, 13);
  const colorType = ihdr.data[9];
  const alpha = colorType === 4 || colorType === 6 || chunks.some((c) => c.type === "tRNS");
  return { w: v.getUint32(0), h: v.getUint32(4), alpha };
}

/** JPEG frame size from its SOF marker; a file without one is truncated or corrupt. */
function jpegSize(bytes: Uint8Array, name: string): { w: number; h: number } {
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) break;
    const m = bytes[p + 1];
    if (m === 0xff) {
      p++;
      continue;
    }
    const len = (bytes[p + 2] << 8) | bytes[p + 3];
    const isSof = m >= 0xc0 && m <= 0xcf && m !== 0xc4 && m !== 0xc8 && m !== 0xcc;
    if (isSof && p + 9 <= bytes.length) {
      return { h: (bytes[p + 5] << 8) | bytes[p + 6], w: (bytes[p + 7] << 8) | bytes[p + 8] };
    }
    if (m === 0xda || m === 0xd9) break;
    p += 2 + len;
  }
  throw new LorakitError(`${name}: corrupt or truncated JPEG (no frame header before the data)`);
}

/** imagescript's RGBA bitmap as our raster, dropping the alpha plane when the file has none. */
function fromRGBA(
  bitmap: Uint8ClampedArray,
  w: number,
  h: number,
  alpha: boolean,
): RasterImage {
  const rgba = new Uint8Array(bitmap.buffer, bitmap.byteOffset, bitmap.length);
  if (alpha) return { width: w, height: h, channels: 4, data: rgba.slice() };
  return toRGB({ width: w, height: h, channels: 4, data: rgba });
}

async function decodeWithImagescript(bytes: Uint8Array, name: string, kind: string) {
  try {
    return await Image.decode(bytes);
  } catch (e) {
    throw new LorakitError(
      `${name}: corrupt or truncated ${kind} (decoder said: ${(e as Error).message})`,
    );
  }
}

/** Decode an encoded image held in memory; `name` (usually the path) goes into errors. */
export async function decodeImage(
  bytes: Uint8Array,
  name: string,
  options: DecodeOptions = {},
): Promise<DecodedImage> {
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const format = sniffFormat(bytes);
  if (format === "png") {
    const info = pngInfo(bytes, name);
    checkSize(name, info.w, info.h, maxPixels);
    const im = await decodeWithImagescript(bytes, name, "PNG");
    const raster = fromRGBA(im.bitmap, im.width, im.height, info.alpha);
    return { ...raster, format, hasAlpha: info.alpha, orientation: 1 };
  }
  if (format === "jpeg") {
    const { w, h } = jpegSize(bytes, name);
    checkSize(name, w, h, maxPixels);
    const orientation = jpegOrientation(bytes);
    // Gray JPEGs become RGB like the other formats (Pillow's convert("RGB") replicates too).
    let raster = toRGB(decodeJpeg(bytes, name, { maxPixels }));
    if (options.applyOrientation ?? true) raster = applyOrientation(raster, orientation);
    return { ...raster, format, hasAlpha: false, orientation };
  }
  if (format === "bmp") {
    const raster = decodeBmp(bytes, name, maxPixels);
    return { ...raster, format, hasAlpha: raster.channels === 4, orientation: 1 };
  }
  if (format === "webp") {
    const info = webpInfo(bytes, name);
    checkSize(name, info.width, info.height, maxPixels);
    const raster = await decodeWebp(bytes, name, info);
    return { ...raster, format, hasAlpha: info.hasAlpha, orientation: 1 };
  }
  if (format === null) {
    throw new LorakitError(
      `${name}: not a recognised image (expected PNG, JPEG, WEBP or BMP data)`,
    );
  }
  throw new LorakitError(
    `${name}: ${format.toUpperCase()} images cannot be decoded (imagescript 1.3 has no ${format.toUpperCase()} decoder); convert it to PNG or JPEG`,
  );
}

/** Read and decode an image file. */
export async function readImage(path: string, options: DecodeOptions = {}): Promise<DecodedImage> {
  return await decodeImage(await readBytes(path), path, options);
}
