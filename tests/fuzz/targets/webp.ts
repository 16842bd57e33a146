/**
 * WEBP: the RIFF container (chunk sizes, VP8/VP8L/VP8X/ALPH/ANIM/ANMF) read before decoding and
 * libwebp behind `decodeImage`, with a pixel cap. Seeds are the lossy, lossless, alpha and
 * animated files of tests/data/webp.
 *
 * @module
 */
import type { Layout } from "../mutate_bytes.ts";
import type { FuzzTarget } from "../target.ts";
import { decodeAndCheck, MAX_PIXELS } from "./image_seeds.ts";

const FILES = ["lossy", "lossless", "lossy_alpha", "lossless_alpha", "animated"];

/** The RIFF size and every chunk's size field and body. */
function webpLayout(b: Uint8Array): Layout {
  const fields: Layout["fields"] = [{ at: 4, size: 4, little: true, name: "RIFF size" }];
  const chunks: Layout["chunks"] = [];
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  for (let at = 12; at + 8 <= b.length;) {
    const size = dv.getUint32(at + 4, true);
    const fourcc = String.fromCharCode(...b.subarray(at, at + 4));
    fields.push({ at: at + 4, size: 4, little: true, name: `${fourcc} size` });
    const end = Math.min(b.length, at + 8 + size + (size & 1));
    chunks.push([at, end]);
    at = end;
  }
  return { fields, chunks };
}

export const target: FuzzTarget = {
  name: "webp",
  what: `decodeImage (RIFF walk, libwebp) with maxPixels ${MAX_PIXELS}`,
  boundText: `4 x maxPixels (${MAX_PIXELS}) + 1 MiB per buffer on the JavaScript side`,
  allocBound: () => 4 * MAX_PIXELS + (1 << 20),
  async seeds() {
    const dir = new URL("../../data/webp/", import.meta.url);
    return await Promise.all(FILES.map(async (f) => {
      const bytes = await Deno.readFile(new URL(`${f}.webp`, dir));
      return { bytes, layout: webpLayout(bytes) };
    }));
  },
  async run(input) {
    await decodeAndCheck(input, "fuzz.webp");
  },
};
