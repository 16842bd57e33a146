/**
 * kohya's lpw prompt weighting: the attention syntax (its doctest cases), BREAK, tokens and
 * weights per 77-token chunk, and the mean-restoring rescale of the embeddings on the GPU.
 */
import assert from "node:assert/strict";
import { initGpu, Tensor } from "../gpu/mod.ts";
import { ClipTokenizer } from "../core/text/clip_tokenizer.ts";
import {
  applyPromptWeights,
  parsePromptAttention,
  promptTokens,
  weightedTokens,
} from "../core/text/prompt_weighting.ts";

const close = (a: number, b: number): boolean => Math.abs(a - b) < 1e-12;

function assertRuns(got: [string, number][], want: [string, number][]): void {
  assert.equal(got.length, want.length, JSON.stringify(got));
  got.forEach(([t, w], i) => {
    assert.equal(t, want[i][0]);
    assert.ok(close(w, want[i][1]), `${t}: ${w} vs ${want[i][1]}`);
  });
}

Deno.test("prompt attention: kohya's doctest cases", () => {
  assertRuns(parsePromptAttention("normal text"), [["normal text", 1]]);
  assertRuns(parsePromptAttention("an (important) word"), [
    ["an ", 1],
    ["important", 1.1],
    [" word", 1],
  ]);
  assertRuns(parsePromptAttention("(unbalanced"), [["unbalanced", 1.1]]);
  assertRuns(parsePromptAttention("\\(literal\\]"), [["(literal]", 1]]);
  assertRuns(parsePromptAttention("(unnecessary)(parens)"), [["unnecessaryparens", 1.1]]);
  assertRuns(parsePromptAttention("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky)))."), [
    ["a ", 1],
    ["house", 1.5730000000000004],
    [" ", 1.1],
    ["on", 1],
    [" a ", 1.1],
    ["hill", 0.55],
    [", sun, ", 1.1],
    ["sky", 1.4641000000000006],
    [".", 1.1],
  ]);
});

Deno.test("prompt attention: nesting, square brackets, escapes, colons, empty", () => {
  assertRuns(parsePromptAttention("[[dim]]"), [["dim", 1 / 1.1 / 1.1]]);
  assertRuns(parsePromptAttention("((a)[b])"), [["a", 1.1 * 1.1], ["b", 1.1 / 1.1]]);
  assertRuns(parsePromptAttention("\\\\x"), [["\\x", 1]]);
  assertRuns(parsePromptAttention("a: b"), [["a: b", 1]]);
  assertRuns(parsePromptAttention("(a:-0.5)"), [["a", -0.5]]);
  assertRuns(parsePromptAttention(""), [["", 1]]);
  assertRuns(parsePromptAttention("x)"), [["x)", 1]]);
});

Deno.test("prompt attention: BREAK stays its own run", () => {
  assertRuns(parsePromptAttention("a BREAK b"), [["a ", 1], ["BREAK", 1], [" b", 1]]);
});

Deno.test("prompt tokens: weights per token, BREAK pads to 77, truncation", async () => {
  const tok = await ClipTokenizer.load();
  const plain = tok.encode("a cat");
  const p = promptTokens(tok, "a (cat:1.5)", 75);
  assert.deepEqual(p.tokens, plain);
  assert.deepEqual(p.weights, [1, 1.5]);
  const b = promptTokens(tok, "a BREAK cat", 300);
  // "a " is one token, then padding to 77, then "cat".
  assert.equal(b.tokens.length, 78);
  assert.equal(b.tokens[1], tok.padToken);
  assert.equal(b.tokens[77], tok.encode("cat")[0]);
  const long = promptTokens(tok, "cat ".repeat(100), 75);
  assert.equal(long.tokens.length, 75);
  assert.ok(long.truncated);
});

Deno.test("weighted tokens: one window matches the plain tokenizer", async () => {
  const tok = await ClipTokenizer.load();
  const w = weightedTokens(tok, ["", "a cat in a hat, watercolor"], 3);
  assert.equal(w.chunks, 1);
  assert.deepEqual(Array.from(w.ids.subarray(0, 77)), Array.from(tok.tokenize("")));
  assert.deepEqual(
    Array.from(w.ids.subarray(77)),
    Array.from(tok.tokenize("a cat in a hat, watercolor")),
  );
  assert.ok(w.weights.every((x) => x === 1));
});

Deno.test("weighted tokens: long prompts are chunked into 77-token windows", async () => {
  const tok = await ClipTokenizer.load();
  const cat = tok.encode("cat")[0];
  const text = "(cat:2) ".repeat(100);
  const w = weightedTokens(tok, [text, ""], 3);
  assert.equal(w.chunks, 2);
  assert.equal(w.ids.length, 2 * 2 * 77);
  // window 0: BOS, 75 cats, EOS (SD1: the last position takes the sequence's last id = EOS)
  assert.equal(w.ids[0], tok.bos);
  assert.equal(w.ids[1], cat);
  assert.equal(w.ids[76], tok.eos);
  // window 1: BOS, 25 cats, EOS, padding
  assert.equal(w.ids[77], tok.bos);
  assert.equal(w.ids[77 + 25], cat);
  assert.equal(w.ids[77 + 26], tok.eos);
  assert.equal(w.weights[0], 1);
  assert.equal(w.weights[1], 2);
  assert.equal(w.weights[75], 2);
  assert.equal(w.weights[76], 1);
  assert.equal(w.weights[77], 1);
  assert.equal(w.weights[78], 2);
  assert.equal(w.weights[77 + 25], 2);
  assert.equal(w.weights[77 + 26], 1);
  // The empty negative gets two windows too, all weights 1; its window 1 starts BOS, EOS.
  assert.equal(w.ids[154 + 77 + 1], tok.eos);
  assert.ok(w.weights.subarray(154).every((x) => x === 1));
  // max_embeddings_multiples 1 cuts at 75 tokens.
  const one = weightedTokens(tok, [text], 1);
  assert.equal(one.chunks, 1);
  assert.ok(one.truncated);
});

Deno.test("weighted tokens: SD 2.x windows end in EOS when cut, start with EOS when empty", async () => {
  const tok = (await ClipTokenizer.load()).withPadding("zero");
  const w = weightedTokens(tok, ["cat ".repeat(80), ""], 2);
  assert.equal(w.ids[76], tok.eos);
  assert.equal(w.ids[77 + 5 + 1], tok.eos);
  assert.equal(w.ids[77 + 5 + 2], 0);
  assert.equal(w.ids[154 + 77 + 1], tok.eos);
});

Deno.test("applyPromptWeights: weights per position and the mean restored per prompt", async () => {
  await initGpu();
  const b = 2, t = 3, c = 4;
  const data = Float32Array.from({ length: b * t * c }, (_, i) => Math.sin(i + 1) + 0.3);
  const weights = Float32Array.from([1, 1.5, 0.5, 2, 1, 1]);
  const x = Tensor.fromArray(data, [b, t, c]);
  for (const mode of ["original", "abs", "none"] as const) {
    const y = applyPromptWeights(x, weights, mode);
    const got = await y.toArray();
    y.dispose();
    for (let i = 0; i < b; i++) {
      const row = data.subarray(i * t * c, (i + 1) * t * c);
      const wrow = Array.from(row, (v, j) => v * weights[i * t + Math.floor(j / c)]);
      const level = (v: ArrayLike<number>): number =>
        Array.from(v).reduce((s, a) => s + (mode === "abs" ? Math.abs(a) : a), 0) / v.length;
      const k = mode === "none" ? 1 : level(row) / level(wrow);
      wrow.forEach((v, j) => {
        assert.ok(Math.abs(got[i * t * c + j] - v * k) < 1e-5, `${mode} [${i},${j}]`);
      });
    }
  }
  x.dispose();
});
