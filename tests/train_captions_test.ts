import assert from "node:assert/strict";
import { seededRandom } from "../core/train/buckets.ts";
import {
  type CaptionSettings,
  countTagFrequency,
  expandWildcards,
  processCaption,
} from "../core/train/captions.ts";

const base: CaptionSettings = {
  shuffle_caption: false,
  caption_separator: ",",
  keep_tokens: 0,
  keep_tokens_separator: "",
  secondary_separator: null,
  enable_wildcard: false,
  caption_prefix: null,
  caption_suffix: null,
  caption_dropout_rate: 0,
  caption_dropout_every_n_epochs: 0,
  caption_tag_dropout_rate: 0,
  token_warmup_min: 1,
  token_warmup_step: 0,
};
const state = { epoch: 1, step: 0, maxTrainSteps: 100 };
const fixed = (v: number) => () => v;

Deno.test("plain captions: first line only, prefix and suffix", () => {
  const s = { ...base, caption_prefix: "pre", caption_suffix: "post" };
  assert.equal(processCaption(s, "a, b\nsecond line", state, fixed(0.5)), "pre a, b");
  // The suffix is added before the first line is taken, as kohya does it.
  assert.equal(processCaption(s, "a, b", state, fixed(0.5)), "pre a, b post");
});

Deno.test("shuffle keeps the first keep_tokens tags and the multiset; joins with ', '", () => {
  const s = { ...base, shuffle_caption: true, keep_tokens: 2 };
  const cap = "sks, dog,  red,blue , green, yellow";
  for (let seed = 0; seed < 20; seed++) {
    const out = processCaption(s, cap, state, seededRandom(seed)).split(", ");
    assert.deepEqual(out.slice(0, 2), ["sks", "dog"]);
    assert.deepEqual(out.slice(2).sort(), ["blue", "green", "red", "yellow"]);
  }
});

Deno.test("keep_tokens_separator: fixed prefix, shuffled middle, fixed suffix", () => {
  const s = { ...base, shuffle_caption: true, keep_tokens_separator: "|||" };
  const out = processCaption(s, "a, b ||| c, d, e ||| f, g", state, seededRandom(3));
  const parts = out.split(", ");
  assert.deepEqual(parts.slice(0, 2), ["a", "b"]);
  assert.deepEqual(parts.slice(2, 5).sort(), ["c", "d", "e"]);
  assert.deepEqual(parts.slice(5), ["f", "g"]);
});

Deno.test("dropout: by rate, every n epochs, tag dropout spares kept tokens", () => {
  assert.equal(
    processCaption({ ...base, caption_dropout_rate: 0.5 }, "a, b", state, fixed(0.2)),
    "",
  );
  assert.equal(
    processCaption({ ...base, caption_dropout_rate: 0.5 }, "a, b", state, fixed(0.7)),
    "a, b",
  );
  const every = { ...base, caption_dropout_every_n_epochs: 2 };
  assert.equal(processCaption(every, "a", { ...state, epoch: 2 }, fixed(0.9)), "");
  assert.equal(processCaption(every, "a", { ...state, epoch: 3 }, fixed(0.9)), "a");
  const tag = { ...base, keep_tokens: 1, caption_tag_dropout_rate: 0.5 };
  assert.equal(processCaption(tag, "a, b, c", state, fixed(0.1)), "a");
  assert.equal(processCaption(tag, "a, b, c", state, fixed(0.6)), "a, b, c");
});

Deno.test("wildcards pick options and lines; {{ }} stay literal", () => {
  assert.equal(expandWildcards("a {cat|dog} {{x}}", fixed(0)), "a cat {x}");
  assert.equal(expandWildcards("a {cat|dog} {{x}}", fixed(0.99)), "a dog {x}");
  assert.equal(expandWildcards("one\ntwo", fixed(0.99)), "two");
  const s = { ...base, enable_wildcard: true };
  assert.equal(processCaption(s, "{red|blue} car", state, fixed(0.6)), "blue car");
});

Deno.test("token warmup and the secondary separator", () => {
  const s = { ...base, keep_tokens: 1, token_warmup_step: 10, token_warmup_min: 1 };
  assert.equal(processCaption(s, "k, a, b, c, d", { ...state, step: 0 }, fixed(0.5)), "k, a");
  assert.equal(processCaption(s, "k, a, b, c, d", { ...state, step: 5 }, fixed(0.5)), "k, a, b");
  assert.equal(
    processCaption(s, "k, a, b, c, d", { ...state, step: 10 }, fixed(0.5)),
    "k, a, b, c, d",
  );
  // A fraction means that share of max_train_steps (0.1 * 100 = 10 here).
  const frac = { ...s, token_warmup_step: 0.1 };
  assert.equal(processCaption(frac, "k, a, b, c, d", { ...state, step: 5 }, fixed(0.5)), "k, a, b");
  const sec = { ...base, secondary_separator: ";;;", shuffle_caption: true };
  assert.equal(processCaption(sec, "a;;;b", state, fixed(0.5)), "a,b");
});

Deno.test("tag frequency counts comma tags, lower-cased", () => {
  const f = countTagFrequency(["Dog, red", "dog,  , constructor"]);
  assert.deepEqual({ ...f }, { dog: 2, red: 1, constructor: 1 });
});
