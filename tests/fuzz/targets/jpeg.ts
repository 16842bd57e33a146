/**
 * JPEG: marker segments and their lengths, DQT, DHT, SOF (dimensions, components, sampling), DRI,
 * SOS and the entropy-coded scans (baseline, progressive, restarts), EXIF orientation, through
 * `decodeImage` with a pixel cap.
 *
 * @module
 */
import { encodeJpeg } from "../../../core/image/encode.ts";
import { makeImage } from "../../../core/image/image.ts";
import { repeatRange, writeField } from "../mutate_bytes.ts";
import type { Rng } from "../rng.ts";
import type { FuzzTarget, Seed } from "../target.ts";
import { decodeAndCheck, jpegLayout, MAX_PIXELS } from "./image_seeds.ts";
import { JPEG_SAMPLES } from "./jpeg_samples.ts";

const b64 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

/** An APP1 EXIF segment (orientation 6) inserted after SOI. */
function withExif(jpeg: Uint8Array): Uint8Array {
  const tiff = [0x49, 0x49, 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0];
  const payload = [0x45, 0x78, 0x69, 0x66, 0, 0, ...tiff, 0, 0, 0, 0];
  const seg = [0xff, 0xe1, (payload.length + 2) >> 8, (payload.length + 2) & 255, ...payload];
  const out = new Uint8Array(jpeg.length + seg.length);
  out.set(jpeg.subarray(0, 2));
  out.set(seg, 2);
  out.set(jpeg.subarray(2), 2 + seg.length);
  return out;
}

/**
 * The frame made as large as the pixel cap allows (or a 1-pixel-wide strip), and often one of its
 * scans repeated: every scan walks the whole frame, so scan count times frame size is the work.
 */
function bigFrame(seed: Seed, r: Rng): Uint8Array {
  const layout = seed.layout ?? jpegLayout(seed.bytes);
  let out: Uint8Array = seed.bytes.slice();
  const h = layout.fields.find((f) => f.name === "SOF height");
  const w = layout.fields.find((f) => f.name === "SOF width");
  if (h && w) {
    const sizes = [[256, 256], [128, 512], [65535, 1], [1, 65535], [4, 16383], [2047, 32]];
    const [hh, ww] = r.pick(sizes);
    writeField(out, h, hh);
    writeField(out, w, ww);
  }
  const scans = layout.chunks.filter(([s]) => out[s + 1] === 0xda);
  if (scans.length > 0 && r.chance(0.7)) out = repeatRange(out, r, r.pick(scans));
  return out;
}

export const target: FuzzTarget = {
  name: "jpeg",
  what: `decodeImage with maxPixels ${MAX_PIXELS} (our decoder, EXIF orientation applied)`,
  boundText: `4 x maxPixels (${MAX_PIXELS}) + 1 MiB per buffer, whatever the frame header says`,
  allocBound: () => 4 * MAX_PIXELS + (1 << 20),
  async seeds() {
    const rgb = makeImage(
      13,
      9,
      3,
      Uint8Array.from({ length: 13 * 9 * 3 }, (_, i) => (i * 29) & 255),
    );
    const files = [
      await encodeJpeg(rgb, 80),
      withExif(await encodeJpeg(rgb, 30)),
      ...JPEG_SAMPLES.map(([, , data]) => b64(data)),
    ];
    return files.map((bytes) => ({ bytes, layout: jpegLayout(bytes) }));
  },
  structural: [bigFrame],
  async run(input) {
    await decodeAndCheck(input, "fuzz.jpg");
  },
};
