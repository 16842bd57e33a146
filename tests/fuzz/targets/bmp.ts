/**
 * BMP: file and info headers (sizes, offsets, dimensions, depth, compression, bit masks, palette
 * count) and the rows, through `decodeImage` with a pixel cap.
 *
 * @module
 */
import type { FuzzTarget } from "../target.ts";
import { bmpLayout, bmpSeeds, decodeAndCheck, MAX_PIXELS } from "./image_seeds.ts";

export const target: FuzzTarget = {
  name: "bmp",
  what: `decodeImage with maxPixels ${MAX_PIXELS}`,
  boundText: `4 x maxPixels (${MAX_PIXELS}) + 1 MiB per buffer, whatever the header says`,
  allocBound: () => 4 * MAX_PIXELS + (1 << 20),
  seeds() {
    return Promise.resolve(bmpSeeds().map((bytes) => ({ bytes, layout: bmpLayout(bytes) })));
  },
  async run(input) {
    await decodeAndCheck(input, "fuzz.bmp");
  },
};
