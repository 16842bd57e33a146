/**
 * WebP decoding: lossy (VP8), lossless (VP8L), with alpha (ALPH or VP8L's own), and the first
 * frame of an animation. The pixels come from libwebp itself (the @jsquash/webp WebAssembly
 * build), the library OpenCV and Pillow decode WebP with, so they are the pixels kohya trains on.
 *
 * The RIFF container is read here first, so that a truncated file, a wrong chunk or a size past
 * the pixel limit is a LorakitError naming the file before libwebp allocates anything. An
 * animation's first frame is cut out into a still WebP of its own, decoded, and placed at its
 * offset on a transparent black canvas: what Pillow (kohya's reader) shows for frame 0. OpenCV
 * reads no animations at all.
 *
 * Each decode gets a fresh instance of the WebAssembly module (a few ms): the libwebp in the
 * package (1.1.0) predates the fix for CVE-2023-4863, a heap overflow on crafted lossless files;
 * in WebAssembly such a write stays inside the instance's own memory, and dropping the instance
 * after each file keeps a crafted file from touching any later decode. It also gives back the
 * memory a large image needed.
 *
 * @module
 */
import { webpDecoderFactory, webpDecoderWasm } from "../deps/jsquash_webp.ts";
import { LorakitError } from "../errors.ts";
import { type RasterImage, toRGB } from "./image.ts";

/** What the container says, read before decoding. */
export interface WebpInfo {
  /** Canvas size: the image's, or for an animation the canvas its frames are drawn on. */
  readonly width: number;
  readonly height: number;
  /** Whether libwebp reports alpha (and OpenCV or Pillow would give 4 channels). */
  readonly hasAlpha: boolean;
  readonly animated: boolean;
}

interface Chunk {
  readonly fourcc: string;
  /** The payload. */
  readonly data: Uint8Array;
  /** The whole chunk: header, payload and the pad byte when there is one. */
  readonly raw: Uint8Array;
}

interface Parsed extends WebpInfo {
  /** The chunks after the RIFF header, within the size it declares. */
  readonly chunks: readonly Chunk[];
}

const u24 = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8) | (b[o + 2] << 16);
const u32 = (b: Uint8Array, o: number) =>
  (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const fourccAt = (b: Uint8Array, o: number) => String.fromCharCode(...b.subarray(o, o + 4));

function corrupt(name: string, why: string): LorakitError {
  return new LorakitError(`${name}: corrupt or truncated WEBP (${why})`);
}

/** A chunk name for a message: printable ASCII as it is, other bytes in hex. */
function shown(fourcc: string): string {
  const text = [...fourcc].map((ch) => {
    const c = ch.charCodeAt(0);
    return c >= 0x20 && c < 0x7f && ch !== '"' && ch !== "\\"
      ? ch
      : `\\x${c.toString(16).padStart(2, "0")}`;
  });
  return `"${text.join("")}"`;
}

const isImageFourcc = (fourcc: string) => fourcc === "VP8 " || fourcc === "VP8L";

/**
 * The chunks of a RIFF payload `b[from..to)`, up to and including the first that `last` accepts:
 * like libwebp, nothing after the chunk that is decoded is looked at. A chunk running past `to`
 * before that is an error.
 */
function readChunks(
  b: Uint8Array,
  from: number,
  to: number,
  name: string,
  last: (fourcc: string) => boolean,
): Chunk[] {
  const chunks: Chunk[] = [];
  let p = from;
  while (p + 8 <= to) {
    const fourcc = fourccAt(b, p);
    const size = u32(b, p + 4);
    if (size > to - p - 8) {
      throw corrupt(name, `chunk ${shown(fourcc)} of ${size} bytes runs past the end`);
    }
    const end = p + 8 + size;
    const padded = Math.min(end + (size & 1), to);
    chunks.push({ fourcc, data: b.subarray(p + 8, end), raw: b.subarray(p, padded) });
    if (last(fourcc)) break;
    p = padded;
  }
  return chunks;
}

/** Size (and for VP8L the alpha bit) of an image chunk's bitstream, checking its signature. */
function bitstreamInfo(c: Chunk, name: string): { w: number; h: number; alpha: boolean } {
  const d = c.data;
  if (c.fourcc === "VP8 ") {
    if (d.length < 10 || d[3] !== 0x9d || d[4] !== 0x01 || d[5] !== 0x2a) {
      throw corrupt(name, "VP8 frame header missing");
    }
    return { w: (d[6] | (d[7] << 8)) & 0x3fff, h: (d[8] | (d[9] << 8)) & 0x3fff, alpha: false };
  }
  if (d.length < 5 || d[0] !== 0x2f) throw corrupt(name, "VP8L signature missing");
  const bits = u32(d, 1);
  return {
    w: (bits & 0x3fff) + 1,
    h: ((bits >>> 14) & 0x3fff) + 1,
    alpha: ((bits >>> 28) & 1) === 1,
  };
}

const isImageChunk = (c: Chunk) => isImageFourcc(c.fourcc);

/** Read the container of a file that starts with "RIFF....WEBP". */
function parse(b: Uint8Array, name: string): Parsed {
  if (b.length < 20) throw corrupt(name, `only ${b.length} bytes`);
  const riffEnd = 8 + u32(b, 4);
  if (riffEnd > b.length) {
    throw corrupt(name, `the file has ${b.length} of the ${riffEnd} bytes its header declares`);
  }
  const chunks = readChunks(b, 12, riffEnd, name, (f) => isImageFourcc(f) || f === "ANMF");
  const first = chunks[0];
  if (first === undefined) throw corrupt(name, "no chunks");
  if (isImageChunk(first)) {
    const { w, h, alpha } = bitstreamInfo(first, name);
    return { width: w, height: h, hasAlpha: alpha, animated: false, chunks };
  }
  if (first.fourcc !== "VP8X" || first.data.length < 10) {
    throw corrupt(name, `unexpected first chunk ${shown(first.fourcc)}`);
  }
  const flags = first.data[0];
  const width = u24(first.data, 4) + 1, height = u24(first.data, 7) + 1;
  const animated = (flags & 0x02) !== 0;
  if (animated) return { width, height, hasAlpha: (flags & 0x10) !== 0, animated, chunks };
  const image = chunks.find(isImageChunk);
  if (image === undefined) throw corrupt(name, "no VP8 or VP8L image chunk");
  const bs = bitstreamInfo(image, name);
  if (bs.w !== width || bs.h !== height) {
    throw corrupt(name, `canvas ${width}x${height} but image ${bs.w}x${bs.h}`);
  }
  // libwebp's rule: a lossless image says itself whether it has alpha; a lossy one has it when
  // the extended header says so or an ALPH chunk is there.
  const hasAlpha = image.fourcc === "VP8L"
    ? bs.alpha
    : (flags & 0x10) !== 0 || chunks.some((c) => c.fourcc === "ALPH");
  return { width, height, hasAlpha, animated, chunks };
}

/** Size, alpha and animation from a WebP file's container, without decoding it. */
export function webpInfo(bytes: Uint8Array, name: string): WebpInfo {
  const { width, height, hasAlpha, animated } = parse(bytes, name);
  return { width, height, hasAlpha, animated };
}

/** A RIFF/WEBP file holding `parts` (whole chunks). */
function riff(parts: Uint8Array[]): Uint8Array {
  const size = 4 + parts.reduce((n, p) => n + p.length + (p.length & 1), 0);
  const out = new Uint8Array(8 + size);
  out.set([0x52, 0x49, 0x46, 0x46, size & 255, (size >> 8) & 255, (size >> 16) & 255, size >>> 24]);
  out.set([0x57, 0x45, 0x42, 0x50], 8);
  let p = 12;
  for (const part of parts) {
    out.set(part, p);
    p += part.length + (part.length & 1);
  }
  return out;
}

interface FirstFrame {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  /** The frame as a still WebP file. */
  readonly file: Uint8Array;
}

/** An animation's first frame (the first ANMF chunk) as a still WebP and its place. */
function firstFrame(p: Parsed, name: string): FirstFrame {
  const anmf = p.chunks.find((c) => c.fourcc === "ANMF");
  if (anmf === undefined) throw corrupt(name, "animation without frames");
  const d = anmf.data;
  if (d.length < 16) throw corrupt(name, "ANMF chunk too short");
  const x = u24(d, 0) * 2, y = u24(d, 3) * 2;
  const width = u24(d, 6) + 1, height = u24(d, 9) + 1;
  if (x + width > p.width || y + height > p.height) {
    throw corrupt(name, `frame ${width}x${height} at (${x}, ${y}) outside the canvas`);
  }
  const sub = readChunks(d, 16, d.length, name, isImageFourcc);
  const image = sub.find(isImageChunk);
  if (image === undefined) throw corrupt(name, "first frame has no VP8 or VP8L image chunk");
  const bs = bitstreamInfo(image, name);
  if (bs.w !== width || bs.h !== height) {
    throw corrupt(name, `frame ${width}x${height} but its image is ${bs.w}x${bs.h}`);
  }
  const alph = sub.find((c) => c.fourcc === "ALPH");
  if (image.fourcc === "VP8L" || alph === undefined) {
    return { x, y, width, height, file: riff([image.raw]) };
  }
  // A lossy frame with alpha needs the extended header (alpha flag, frame size) before ALPH.
  const vp8x = new Uint8Array(18);
  vp8x.set([0x56, 0x50, 0x38, 0x58, 10, 0, 0, 0, 0x10]);
  vp8x.set([(width - 1) & 255, ((width - 1) >> 8) & 255, (width - 1) >> 16], 12);
  vp8x.set([(height - 1) & 255, ((height - 1) >> 8) & 255, (height - 1) >> 16], 15);
  return { x, y, width, height, file: riff([vp8x, alph.raw, image.raw]) };
}

/** A still WebP through libwebp, as RGBA, in a WebAssembly instance used for this file only. */
async function libwebpRGBA(file: Uint8Array, w: number, h: number, name: string) {
  const messages: string[] = [];
  const options = {
    noInitialRun: true,
    // The factory would otherwise look for the .wasm file beside its script.
    instantiateWasm: (
      imports: WebAssembly.Imports,
      ready: (instance: WebAssembly.Instance) => void,
    ) => {
      const instance = new WebAssembly.Instance(webpDecoderWasm, imports);
      ready(instance);
      return instance.exports;
    },
    // Emscripten's own reports (an abort's reason) go into the error, not to the console.
    print: (s: string) => messages.push(s),
    printErr: (s: string) => messages.push(s),
  };
  let out: ImageData | null;
  try {
    const codec = await webpDecoderFactory(options as Parameters<typeof webpDecoderFactory>[0]);
    out = codec.decode(file);
  } catch (e) {
    const why = [...messages, e instanceof Error ? e.message : String(e)].join("; ");
    throw corrupt(name, `libwebp stopped: ${why.replace(/\s+/g, " ").slice(0, 300)}`);
  }
  if (out === null) {
    // The WebAssembly build has at most 2 GiB of memory; a lossless decode needs about 8 bytes a
    // pixel, so a very large file may fail for room rather than damage.
    const room = w * h > 1 << 26 ? ", or it needs more than the decoder's 2 GiB of memory" : "";
    throw corrupt(name, `libwebp could not decode the ${w}x${h} image${room}`);
  }
  if (out.width !== w || out.height !== h) {
    throw corrupt(name, `libwebp decoded ${out.width}x${out.height}, the header says ${w}x${h}`);
  }
  return new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length);
}

/**
 * Decode a WebP held in memory to RGB, or RGBA when it has alpha (`info` from {@link webpInfo},
 * whose size the caller has checked). An animation gives its first frame.
 */
export async function decodeWebp(
  bytes: Uint8Array,
  name: string,
  info: WebpInfo,
): Promise<RasterImage> {
  const { width: w, height: h, hasAlpha } = info;
  let rgba: Uint8Array;
  if (info.animated) {
    const f = firstFrame(parse(bytes, name), name);
    const frame = await libwebpRGBA(f.file, f.width, f.height, name);
    rgba = new Uint8Array(w * h * 4);
    for (let y = 0; y < f.height; y++) {
      const row = frame.subarray(y * f.width * 4, (y + 1) * f.width * 4);
      rgba.set(row, ((f.y + y) * w + f.x) * 4);
    }
  } else {
    rgba = await libwebpRGBA(bytes, w, h, name);
  }
  const image: RasterImage = { width: w, height: h, channels: 4, data: rgba };
  return hasAlpha ? image : toRGB(image);
}
