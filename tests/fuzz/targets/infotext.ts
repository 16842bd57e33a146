/**
 * A1111 infotext as gen_img's img2img sources carry it: a PNG's `parameters` text chunk read with
 * `readTextChunks`, then parsed with `parseInfotext` and `loraTags`. Inputs are PNGs (mutated as
 * bytes, their CRCs often repaired) or infotext (mutated as text, then written into a PNG chunk,
 * tEXt when Latin-1 else iTXt, which must read back unchanged as far as UTF-8 can hold it).
 *
 * @module
 */
import { encodePng } from "../../../core/image/encode.ts";
import { makeImage } from "../../../core/image/image.ts";
import { insertTextChunks, isPng, readTextChunks } from "../../../core/image/png_chunks.ts";
import { formatInfotext, loraTags, parseInfotext } from "../../../core/sample/infotext.ts";
import type { FuzzTarget } from "../target.ts";
import { fixPngCrcs, pngLayout } from "./image_seeds.ts";
import { inputText, TEXT_BOUND_TEXT, textBound, textSeeds } from "./text_input.ts";

const WRITTEN = formatInfotext({
  prompt: "a photo of sks dog, (masterpiece:1.2) <lora:dog:0.8>",
  negativePrompt: "lowres, bad hands",
  steps: 20,
  sampler: "euler_a",
  cfgScale: 7.5,
  seed: 1234,
  width: 512,
  height: 768,
  model: "sd15",
  modelHash: "abcdef1234",
  clipSkip: 2,
  loras: [{ name: "dog", multiplier: 0.8, hash: "0123456789ab" }],
  version: "lorakit 0.1",
});

const A1111 = `masterpiece, best quality, 1girl, <lora:style_v2:0.6>, <lora:char>
Negative prompt: (worst quality:1.4), easynegative
Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3210, Size: 512x768, Model hash: 7f96a1a9ca, Model: anything-v5, Denoising strength: 0.5, Clip skip: 2, Hires upscale: 2, Hires upscaler: Latent, Lora hashes: "style_v2: 1a2b3c4d5e6f, char: 6f5e4d3c2b1a", TI hashes: "easynegative: c74b4e810b03", Version: v1.6.0`;

const TOKENS = [
  "\nNegative prompt: ",
  "Steps: 20, ",
  "Size: 512x512, ",
  "Size: 99999999999999999999x1, ",
  'Lora hashes: "a: 1, b: 2", ',
  '"unterminated',
  '"\\u00e9\\ud800"',
  "<lora:",
  "<lora:a:b:c>",
  "<lora:x:NaN>",
  "<lora:x:1e999>",
  ":",
  ",",
  " ",
  "a a ",
  "Key: value, ",
  "\\",
];

let base: Uint8Array | null = null;

export const target: FuzzTarget = {
  name: "infotext",
  what: "a PNG parameters chunk through readTextChunks, then parseInfotext and loraTags",
  boundText: TEXT_BOUND_TEXT,
  allocBound: textBound,
  seeds: async () => {
    base ??= await encodePng(makeImage(1, 1, 3, new Uint8Array(3)));
    const pngs = [WRITTEN, A1111].map((t) => insertTextChunks(base!, { parameters: t }));
    return [
      ...await textSeeds([WRITTEN, A1111]),
      ...pngs.map((bytes) => ({ bytes, layout: pngLayout(bytes) })),
    ];
  },
  fixup: (b) => (isPng(b) ? fixPngCrcs(b) : b),
  text: { tokens: TOKENS, nesting: [["(", ")"], ["<lora:", ">"], ['"', '"']] },
  run(input) {
    let back: string;
    if (isPng(input)) back = readTextChunks(input, "fuzz.png").parameters ?? "";
    else {
      const text = inputText(input);
      const png = insertTextChunks(base!, { parameters: text });
      back = readTextChunks(png, "fuzz.png").parameters;
      const expected = new TextDecoder().decode(new TextEncoder().encode(text));
      if (back !== expected) throw new Error("the parameters text did not come back unchanged");
    }
    const params = parseInfotext(back);
    if (typeof params.Prompt !== "string") throw new Error("no Prompt key");
    for (const t of loraTags(params.Prompt)) {
      if (typeof t.name !== "string" || typeof t.multiplier !== "number") {
        throw new Error(`bad lora tag ${JSON.stringify(t)}`);
      }
    }
    return Promise.resolve();
  },
};
