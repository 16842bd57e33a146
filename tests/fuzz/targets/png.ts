/**
 * PNG: the chunk walker (lengths, types, CRCs), IHDR, the decoder behind `decodeImage` with a
 * pixel cap, and the tEXt/iTXt reader. Half of the mutated files get their CRCs repaired, so the
 * mutations reach the decoder and not only the CRC check.
 *
 * @module
 */
import { readTextChunks } from "../../../core/image/png_chunks.ts";
import type { FuzzTarget } from "../target.ts";
import { decodeAndCheck, fixPngCrcs, MAX_PIXELS, pngLayout, pngSeeds } from "./image_seeds.ts";

export const target: FuzzTarget = {
  name: "png",
  what: `readTextChunks, then decodeImage with maxPixels ${MAX_PIXELS}`,
  boundText: `4 x maxPixels (${MAX_PIXELS}) + 1 MiB per buffer, whatever the declared size`,
  allocBound: () => 4 * MAX_PIXELS + (1 << 20),
  async seeds() {
    return (await pngSeeds()).map((bytes) => ({ bytes, layout: pngLayout(bytes) }));
  },
  fixup: fixPngCrcs,
  async run(input) {
    const text = readTextChunks(input, "fuzz.png");
    for (const [k, v] of Object.entries(text)) {
      if (typeof v !== "string") throw new Error(`text chunk '${k}' read as ${typeof v}`);
    }
    await decodeAndCheck(input, "fuzz.png");
  },
};
