/**
 * Decoding and encoding: PNG (8/16-bit, gray, palette with transparency, alpha), JPEG (baseline
 * round trip, progressive, EXIF orientation), BMP; PNG text chunks; corrupt or truncated files
 * become LorakitErrors naming the file. Test images are made here, not read from disk.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { decodeImage } from "../core/image/decode.ts";
import { encodeJpeg, encodePng } from "../core/image/encode.ts";
import { applyOrientation, jpegOrientation } from "../core/image/exif.ts";
import { compositeOnWhite, makeImage, type RasterImage, toRGB } from "../core/image/image.ts";
import {
  crc32,
  insertTextChunks,
  makeChunk,
  PNG_SIGNATURE,
  readTextChunks,
} from "../core/image/png_chunks.ts";

function gradient(w: number, h: number, c: 1 | 3 | 4): RasterImage {
  const data = new Uint8Array(w * h * c);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) data[(y * w + x) * c + k] = (x * 9 + y * 5 + k * 60) & 255;
    }
  }
  return makeImage(w, h, c, data);
}

async function zlib(data: Uint8Array): Promise<Uint8Array> {
  const s = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
    new CompressionStream("deflate"),
  );
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** A PNG assembled by hand from raw (already filtered) scanlines. */
async function handPng(
  w: number,
  h: number,
  depth: number,
  colorType: number,
  scanlines: Uint8Array,
  extra: Uint8Array[] = [],
): Promise<Uint8Array> {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, w);
  v.setUint32(4, h);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  const parts = [
    PNG_SIGNATURE,
    makeChunk("IHDR", ihdr),
    ...extra,
    makeChunk("IDAT", await zlib(scanlines)),
    makeChunk("IEND", new Uint8Array()),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let p = 0;
  for (const part of parts) (out.set(part, p)), (p += part.length);
  return out;
}

async function rejects(p: Promise<unknown>, name: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof LorakitError && e.message.includes(name));
}

Deno.test("CRC-32 matches PNG's known IEND CRC", () => {
  assert.equal(crc32(new TextEncoder().encode("IEND")), 0xae426082);
});

Deno.test("PNG encode/decode round trip for gray, RGB and RGBA", async () => {
  for (const c of [1, 3, 4] as const) {
    const img = gradient(37, 23, c);
    const dec = await decodeImage(await encodePng(img), "rt.png");
    assert.equal(dec.format, "png");
    assert.equal(dec.hasAlpha, c === 4);
    const expect = c === 4 ? img : toRGB(img);
    assert.deepEqual([dec.width, dec.height, dec.channels], [37, 23, c === 4 ? 4 : 3]);
    assert.deepEqual(dec.data, expect.data);
  }
});

Deno.test("16-bit RGB and gray PNGs decode to their high bytes", async () => {
  const w = 3, h = 2;
  const rgb16 = new Uint8Array(h * (1 + w * 6));
  const gray16 = new Uint8Array(h * (1 + w * 2));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < 3; k++) {
        const v = (y * 3 + x) * 7000 + k * 9000 + 255;
        rgb16.set([v >> 8, v & 255], y * (1 + w * 6) + 1 + (x * 3 + k) * 2);
      }
      const g = (y * 3 + x) * 10000 + 128;
      gray16.set([g >> 8, g & 255], y * (1 + w * 2) + 1 + x * 2);
    }
  }
  const a = await decodeImage(await handPng(w, h, 16, 2, rgb16), "rgb16.png");
  assert.deepEqual([a.width, a.height, a.channels], [3, 2, 3]);
  for (let i = 0; i < w * h; i++) {
    for (let k = 0; k < 3; k++) assert.equal(a.data[i * 3 + k], (i * 7000 + k * 9000 + 255) >> 8);
  }
  const g = await decodeImage(await handPng(w, h, 16, 0, gray16), "gray16.png");
  for (let i = 0; i < w * h; i++) {
    const v = (i * 10000 + 128) >> 8;
    assert.deepEqual(Array.from(g.data.subarray(i * 3, i * 3 + 3)), [v, v, v]);
  }
});

Deno.test("palette PNG with tRNS keeps its transparency; composite on white", async () => {
  const plte = makeChunk("PLTE", new Uint8Array([255, 0, 0, 0, 0, 255]));
  const trns = makeChunk("tRNS", new Uint8Array([0, 255]));
  const rows = new Uint8Array([0, 0b00010000]); // one row, filter 0, indices 0 and 1 (2-bit)
  const png = await handPng(2, 1, 2, 3, rows, [plte, trns]);
  const d = await decodeImage(png, "pal.png");
  assert.equal(d.hasAlpha, true);
  assert.deepEqual(Array.from(d.data), [255, 0, 0, 0, 0, 0, 255, 255]);
  assert.deepEqual(Array.from(compositeOnWhite(d).data), [255, 255, 255, 0, 0, 255]);
  assert.deepEqual(Array.from(toRGB(d).data), [255, 0, 0, 0, 0, 255]); // kohya drops alpha
});

Deno.test("PNG text chunks: tEXt and UTF-8 iTXt round trip, CRCs valid", async () => {
  const params = "a photo of sks dog\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a";
  const png = await encodePng(gradient(4, 4, 3), { text: { parameters: params } });
  assert.deepEqual(readTextChunks(png, "p.png"), { parameters: params });
  const more = insertTextChunks(png, { Comment: "café ✓ 日本" }, "p.png");
  assert.deepEqual(readTextChunks(more, "p.png"), { parameters: params, Comment: "café ✓ 日本" });
  const dec = await decodeImage(more, "p.png"); // readChunks inside checks every CRC
  assert.deepEqual(dec.data, gradient(4, 4, 3).data);
});

Deno.test("JPEG round trip at quality 100 stays close", async () => {
  const img = gradient(40, 24, 3);
  const jpg = await encodeJpeg(img, 100);
  const d = await decodeImage(jpg, "q100.jpg");
  assert.deepEqual([d.width, d.height, d.channels, d.format], [40, 24, 3, "jpeg"]);
  let max = 0;
  for (let i = 0; i < d.data.length; i++) max = Math.max(max, Math.abs(d.data[i] - img.data[i]));
  assert.ok(max <= 12, `max diff ${max}`);
  await assert.rejects(encodeJpeg(img, 0), LorakitError);
});

// A 16x8 progressive JPEG written by OpenCV 4.6 (libjpeg-turbo), quality 95.
const PROGRESSIVE =
  "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAIBAQEBAQIBAQECAgICAgQDAgICAgUEBAMEBgUGBgYFBgYGBwkIBgcJBwYGCAsICQoKCgoKBggLDAsKDAkKCgr/2wBDAQICAgICAgUDAwUKBwYHCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgr/wgARCAAIABADASIAAhEBAxEB/8QAFgABAQEAAAAAAAAAAAAAAAAAAAYH/8QAFQEBAQAAAAAAAAAAAAAAAAAABQb/2gAMAwEAAhADEAAAAYHTAyc//8QAFhAAAwAAAAAAAAAAAAAAAAAAAAUH/9oACAEBAAEFAlUqFUqP/8QAGREAAQUAAAAAAAAAAAAAAAAAAAUGByIj/9oACAEDAQE/AY2eK9TQ/8QAGBEAAgMAAAAAAAAAAAAAAAAAAAUGISL/2gAIAQIBAT8BcSZvez//xAAXEAADAQAAAAAAAAAAAAAAAAAAASSh/9oACAEBAAY/AlNgpsP/xAAUEAEAAAAAAAAAAAAAAAAAAAAQ/9oACAEBAAE/ITGP/9oADAMBAAIAAwAAABB7/8QAFxEAAwEAAAAAAAAAAAAAAAAAAFFhkf/aAAgBAwEBPxDAuU//xAAWEQADAAAAAAAAAAAAAAAAAAAA0fH/2gAIAQIBAT8QvWf/xAAYEAACAwAAAAAAAAAAAAAAAAAAATFRof/aAAgBAQABPxCKqHKP/9k=";

Deno.test("progressive JPEG decodes (values near libjpeg's)", async () => {
  const bytes = Uint8Array.from(atob(PROGRESSIVE), (c) => c.charCodeAt(0));
  const d = await decodeImage(bytes, "prog.jpg");
  assert.deepEqual([d.width, d.height, d.channels], [16, 8, 3]);
  const libjpeg = [[0, [0, 4, 115]], [3, [40, 6, 119]], [127, [245, 220, 140]]] as const;
  for (const [i, rgb] of libjpeg) {
    for (let k = 0; k < 3; k++) {
      assert.ok(Math.abs(d.data[i * 3 + k] - rgb[k]) <= 6, `pixel ${i}: ${d.data[i * 3 + k]}`);
    }
  }
});

/** A JPEG with an APP1 EXIF segment (big-endian TIFF, one IFD0 entry) inserted after SOI. */
function withOrientation(jpg: Uint8Array, orientation: number): Uint8Array {
  const tiff = [
    0x4d,
    0x4d,
    0,
    42,
    0,
    0,
    0,
    8,
    0,
    1,
    0x01,
    0x12,
    0,
    3,
    0,
    0,
    0,
    1,
    0,
    orientation,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ];
  const payload = [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiff];
  const seg = [0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 255, ...payload];
  const out = new Uint8Array(jpg.length + seg.length);
  out.set(jpg.subarray(0, 2));
  out.set(seg, 2);
  out.set(jpg.subarray(2), 2 + seg.length);
  return out;
}

Deno.test("EXIF orientation is read from APP1 and applied", async () => {
  // Left half black, right half white, 32x16: after orientation 6 (rotate 90 CW) it is 16x32
  // with the top half black.
  const img = makeImage(32, 16, 3);
  for (let y = 0; y < 16; y++) img.data.fill(255, (y * 32 + 16) * 3, (y * 32 + 32) * 3);
  const jpg = withOrientation(await encodeJpeg(img, 95), 6);
  assert.equal(jpegOrientation(jpg), 6);
  const d = await decodeImage(jpg, "rot.jpg");
  assert.deepEqual([d.width, d.height, d.orientation], [16, 32, 6]);
  assert.ok(d.data[(4 * 16 + 8) * 3] < 30 && d.data[(28 * 16 + 8) * 3] > 225);
  const raw = await decodeImage(jpg, "rot.jpg", { applyOrientation: false });
  assert.deepEqual([raw.width, raw.height], [32, 16]);
  // The eight orientations, checked on a 3x2 image of distinct values.
  const src = makeImage(3, 2, 1, new Uint8Array([1, 2, 3, 4, 5, 6]));
  const expect: Record<number, number[]> = {
    1: [1, 2, 3, 4, 5, 6],
    2: [3, 2, 1, 6, 5, 4],
    3: [6, 5, 4, 3, 2, 1],
    4: [4, 5, 6, 1, 2, 3],
    5: [1, 4, 2, 5, 3, 6],
    6: [4, 1, 5, 2, 6, 3],
    7: [6, 3, 5, 2, 4, 1],
    8: [3, 6, 2, 5, 1, 4],
  };
  for (const [o, v] of Object.entries(expect)) {
    assert.deepEqual(Array.from(applyOrientation(src, Number(o)).data), v, `orientation ${o}`);
  }
});

Deno.test("BMP 24-bit bottom-up decodes", async () => {
  const w = 2, h = 2, stride = 8;
  const b = new Uint8Array(54 + stride * h);
  const v = new DataView(b.buffer);
  b.set([0x42, 0x4d]);
  v.setUint32(2, b.length, true);
  v.setUint32(10, 54, true);
  v.setUint32(14, 40, true);
  v.setInt32(18, w, true);
  v.setInt32(22, h, true);
  v.setUint16(26, 1, true);
  v.setUint16(28, 24, true);
  b.set([255, 0, 0, 0, 255, 0], 54); // bottom row: blue, green (BGR)
  b.set([0, 0, 255, 255, 255, 255], 54 + stride); // top row: red, white
  const d = await decodeImage(b, "x.bmp");
  assert.deepEqual(Array.from(d.data), [255, 0, 0, 255, 255, 255, 0, 0, 255, 0, 255, 0]);
});

Deno.test("truncated, corrupt and unsupported files are LorakitErrors naming the file", async () => {
  const png = await encodePng(gradient(20, 20, 3));
  await rejects(decodeImage(png.subarray(0, png.length - 20), "cut.png"), "cut.png");
  await rejects(decodeImage(png.subarray(0, 40), "cut2.png"), "cut2.png");
  const bad = png.slice();
  bad[50] ^= 0xff; // inside IDAT: the CRC no longer matches
  await rejects(decodeImage(bad, "crc.png"), "crc.png");
  const jpg = await encodeJpeg(gradient(64, 64, 3), 90);
  await rejects(decodeImage(jpg.subarray(0, jpg.length >> 1), "half.jpg"), "half.jpg");
  await rejects(decodeImage(jpg.subarray(0, 100), "head.jpg"), "head.jpg");
  const webp = new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8 ");
  await rejects(decodeImage(webp, "a.webp"), "a.webp");
  await rejects(decodeImage(new TextEncoder().encode("hello"), "notes.png"), "notes.png");
  await rejects(decodeImage(png, "big.png", { maxPixels: 100 }), "big.png");
});
