/** A1111 "parameters" infotext: written by us, read back by A1111's parser rules. */
import assert from "node:assert/strict";
import {
  formatInfotext,
  loraTags,
  parseInfotext,
  samplerFromLabel,
} from "../core/sample/infotext.ts";
import { encodePng } from "../core/image/encode.ts";
import { readTextChunks } from "../core/image/png_chunks.ts";
import { makeImage } from "../core/image/image.ts";

const params = {
  prompt: "a cat in a hat, (watercolor:1.2)\nsecond line",
  negativePrompt: "lowres, bad: anatomy",
  steps: 8,
  sampler: "k_euler_a",
  cfgScale: 7,
  seed: 4294967295,
  width: 512,
  height: 768,
  model: "sd1-tiny",
  modelHash: "0123456789",
  clipSkip: 2,
  negativeScale: 1.5,
  loras: [{ name: "style", multiplier: 0.8, hash: "abcdef012345" }, { name: "b", multiplier: 1 }],
  version: "lorakit 0.1.0",
};

Deno.test("infotext: A1111 layout", () => {
  const text = formatInfotext(params);
  const lines = text.split("\n");
  assert.equal(lines[0], "a cat in a hat, (watercolor:1.2)");
  assert.equal(lines[1], "second line <lora:style:0.8> <lora:b:1>");
  assert.equal(lines[2], "Negative prompt: lowres, bad: anatomy");
  assert.equal(
    lines[3],
    "Steps: 8, Sampler: Euler a, CFG scale: 7.0, Seed: 4294967295, Size: 512x768, " +
      "Model hash: 0123456789, Model: sd1-tiny, Clip skip: 2, Negative scale: 1.5, " +
      'Lora hashes: "style: abcdef012345", Version: lorakit 0.1.0',
  );
});

Deno.test("infotext: round-trips through A1111's parse_generation_parameters", () => {
  const r = parseInfotext(formatInfotext(params));
  assert.equal(
    r["Prompt"],
    "a cat in a hat, (watercolor:1.2)\nsecond line <lora:style:0.8> <lora:b:1>",
  );
  assert.equal(r["Negative prompt"], "lowres, bad: anatomy");
  assert.equal(r["Steps"], "8");
  assert.equal(samplerFromLabel(r["Sampler"]), "euler_a");
  assert.equal(r["CFG scale"], "7.0");
  assert.equal(r["Seed"], "4294967295");
  assert.equal(r["Size-1"], "512");
  assert.equal(r["Size-2"], "768");
  assert.equal(r["Model"], "sd1-tiny");
  assert.equal(r["Clip skip"], "2");
  assert.equal(r["Lora hashes"], "style: abcdef012345");
  assert.equal(r["Version"], "lorakit 0.1.0");
  assert.deepEqual(loraTags(r["Prompt"]), [{ name: "style", multiplier: 0.8 }, {
    name: "b",
    multiplier: 1,
  }]);
});

Deno.test("infotext: no negative prompt, short last line stays prompt", () => {
  const text = formatInfotext({ ...params, negativePrompt: "", loras: [], prompt: "x" });
  assert.equal(parseInfotext(text)["Negative prompt"], "");
  const r = parseInfotext("just a prompt\nwith: two lines");
  assert.equal(r["Prompt"], "just a prompt\nwith: two lines");
  for (const s of ["ddim", "pndm", "lms", "heun", "dpm_2", "dpm_2_a", "dpmsolver++", "dpmsolver"]) {
    const label = parseInfotext(formatInfotext({ ...params, sampler: s }))["Sampler"];
    assert.equal(samplerFromLabel(label), s);
  }
});

Deno.test("infotext: stored in a PNG 'parameters' text chunk", async () => {
  const text = formatInfotext(params);
  const png = await encodePng(makeImage(2, 2, 3), { text: { parameters: text } });
  assert.equal(readTextChunks(png)["parameters"], text);
});
