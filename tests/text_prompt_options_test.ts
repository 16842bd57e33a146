/** kohya gen_img's per-prompt options (`--n --w --h --d --l --s --am ...`). */
import assert from "node:assert/strict";
import { padNetworkMultipliers, parsePromptOptions } from "../core/text/prompt_options.ts";

Deno.test("prompt options: kohya's options parsed in its order", () => {
  const o = parsePromptOptions(
    "  a cat (in a hat) --n lowres, bad --W 768 --h 512 --d 1,2,3 --l 5.5 --s 2000 --am 0.5,1 " +
      "--nl none --t 0.6 --f out.png --c clip text  ",
  );
  assert.equal(o.prompt, "a cat (in a hat)");
  assert.equal(o.negativePrompt, "lowres, bad");
  assert.equal(o.width, 768);
  assert.equal(o.height, 512);
  assert.deepEqual(o.seeds, [1, 2, 3]);
  assert.equal(o.scale, 5.5);
  assert.equal(o.steps, 1000);
  assert.deepEqual(o.networkMultipliers, [0.5, 1]);
  assert.equal(o.negativeScale, null);
  assert.equal(o.strength, 0.6);
  assert.equal(o.fileName, "out.png");
  assert.equal(o.clipPrompt, "clip text");
  assert.deepEqual(o.errors, []);
});

Deno.test("prompt options: nl before n, SDXL and Deep Shrink options, unknowns ignored", () => {
  const o = parsePromptOptions("p --nl 3 --ow 1024 --cl 8 --dsd1 3 --glsn 0.5 --zz 1 --n x");
  assert.equal(o.negativeScale, 3);
  assert.equal(o.originalWidth, 1024);
  assert.equal(o.cropLeft, 8);
  assert.equal(o.deepShrink?.depth1, 3);
  assert.equal(o.gradualLatent?.sNoise, 0.5);
  assert.equal(o.negativePrompt, "x");
  assert.equal(o.prompt, "p");
});

Deno.test("prompt options: values Python cannot convert are reported, not applied", () => {
  const o = parsePromptOptions("p --l 1.2.3 --d 1,,2 --s 0");
  assert.equal(o.scale, undefined);
  assert.equal(o.seeds, undefined);
  assert.equal(o.steps, 1);
  assert.equal(o.errors.length, 2);
  // "--" without a space before it is part of the prompt, as in kohya.
  assert.equal(parsePromptOptions("a--n b").prompt, "a--n b");
});

Deno.test("prompt options: --am pads with its last value", () => {
  assert.deepEqual(padNetworkMultipliers([0.5], 3), [0.5, 0.5, 0.5]);
  assert.deepEqual(padNetworkMultipliers([0.5, 1, 2], 2), [0.5, 1, 2]);
});
