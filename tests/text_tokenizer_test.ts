/**
 * The CLIP tokenizer and kohya's long-prompt windows: golden ids from the sd1-tiny, sd2-tiny and
 * gen fixtures, the vocabulary derivation against vocab.json, every vocabulary source, tricky
 * strings against an independent reference, and the window layout and stitch rows.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { cleanText, ClipTokenizer, preTokens } from "../core/text/clip_tokenizer.ts";
import {
  stitchRows,
  stitchWindowStates,
  windowCountFor,
  windowIds,
  windowIdsFromTokens,
} from "../core/text/token_windows.ts";
import { deriveClipVocab, parseMerges } from "../core/text/vocab_bpe.ts";
import { builtinBpeModel, unpackBuiltinMerges } from "../core/text/vocab_builtin.ts";
import { loadVocabulary } from "../core/text/vocab_files.ts";
import { fixture } from "./fixtures.ts";

/** Int32 tensor and metadata of a small safetensors file (8-byte length, JSON header, data). */
async function readI32(
  path: string,
  key: string,
): Promise<{ ids: Int32Array; meta: Record<string, string> }> {
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const entry = header[key];
  assert.equal(entry.dtype, "I32");
  const [start, end] = entry.data_offsets as [number, number];
  const data = bytes.slice(8 + n + start, 8 + n + end);
  return { ids: new Int32Array(data.buffer), meta: header.__metadata__ ?? {} };
}

/** The shared CLIP tokenizer files (`../shared/tokenizers/clip`), or null when absent. */
function clipFiles(): string | null {
  const fx = fixture("sd1-tiny");
  return fx === null ? null : `${fx}/../../tokenizers/clip`;
}

const rows = (ids: Int32Array, width = 77): number[][] =>
  Array.from(
    { length: ids.length / width },
    (_, r) => [...ids.subarray(r * width, (r + 1) * width)],
  );

Deno.test("sd1-tiny te_ids: both prompts, EOS padding, EOS kept last when truncating", async () => {
  const path = fixture("sd1-tiny/forward.safetensors");
  if (path === null) return;
  const { ids, meta } = await readI32(path, "te_ids");
  const prompts: string[] = JSON.parse(meta.prompts);
  const tok = await ClipTokenizer.load();
  assert.equal(tok.padToken, 49407);
  assert.deepEqual(rows(ids), prompts.map((p) => [...tok.tokenize(p)]));
  assert.ok(tok.encode(prompts[1]).length > 75, "the second prompt is truncated");
});

Deno.test("sd2-tiny te_ids: padding with ! (id 0) after EOS", async () => {
  const path = fixture("sd2-tiny/forward.safetensors");
  if (path === null) return;
  const { ids, meta } = await readI32(path, "te_ids");
  const prompts: string[] = JSON.parse(meta.prompts);
  const tok = await ClipTokenizer.load(null, { padWith: "zero" });
  assert.equal(tok.padToken, 0);
  assert.deepEqual(rows(ids), prompts.map((p) => [...tok.tokenize(p)]));
});

Deno.test("gen fixture input_ids: empty negative prompt and the prompt", async () => {
  const path = fixture("gen/samplers.safetensors");
  if (path === null) return;
  const { ids, meta } = await readI32(path, "input_ids");
  const tok = await ClipTokenizer.load();
  const expected = [meta.negative_prompt, meta.prompt].map((p) => [...tok.tokenize(p)]);
  assert.deepEqual(rows(ids), expected);
});

Deno.test("vocabulary derived from the merges equals vocab.json; built-in equals both", async () => {
  const dir = clipFiles();
  if (dir === null) return;
  const merges = parseMerges(await Deno.readTextFile(`${dir}/merges.txt`), "merges.txt");
  assert.equal(merges.length, 48894);
  const vocabJson: Record<string, number> = JSON.parse(
    await Deno.readTextFile(`${dir}/vocab.json`),
  );
  const derived = deriveClipVocab(merges);
  assert.equal(derived.length, Object.keys(vocabJson).length);
  assert.deepEqual(Object.fromEntries(derived.map((t, i) => [t, i])), vocabJson);
  // The packed built-in merges are the same merges, as ids of their two parts.
  const { first, second } = await unpackBuiltinMerges();
  for (let r = 0; r < merges.length; r++) {
    assert.equal(derived[first[r]], merges[r][0]);
    assert.equal(derived[second[r]], merges[r][1]);
  }
  assert.deepEqual((await builtinBpeModel()).tokenText(), derived);
});

Deno.test("a diffusers tokenizer folder gives the built-in tables and ids", async () => {
  const root = fixture("sd1-tiny/diffusers");
  if (root === null) return;
  const fromFiles = await loadVocabulary(root);
  assert.equal(fromFiles.source, `${root}/tokenizer`);
  const builtin = await builtinBpeModel();
  assert.deepEqual([...fromFiles.pairRank], [...builtin.pairRank]);
  assert.deepEqual(fromFiles.mergeResult, builtin.mergeResult);
  assert.deepEqual(fromFiles.symbolId, builtin.symbolId);
  assert.deepEqual(
    [fromFiles.bos, fromFiles.eos, fromFiles.vocabSize],
    [builtin.bos, builtin.eos, builtin.vocabSize],
  );
  const a = await ClipTokenizer.load(root);
  const b = await ClipTokenizer.load();
  assert.equal(a.padToken, 49407); // the folder's pad_token is <|endoftext|>
  for (const [text] of TRICKY) assert.deepEqual(a.encode(text), b.encode(text));
});

// Expected ids from an independent Python transcription of openai/CLIP's simple_tokenizer
// (merges.txt + vocab.json, whitespace folding + strip + lower, no ftfy) whose pre-tokenizer is
// written with unicodedata categories instead of the `regex` module.
// "n*k" repeats id n k times.
const TRICKY: [string, string][] = [
  ["", ""],
  ["   ", ""],
  ["Hello, World!!!", "3306 267 1002 995"],
  ["HELLO wOrLd", "3306 1002"],
  ["a  b\t\tc\n\nd  ", "320 321 322 323"],
  [
    "it's don't we're they've i'm you'll he'd",
    "585 568 847 713 649 982 889 1200 328 880 592 1342 797 1896",
  ],
  ["I'M HERE", "328 880 763"],
  ["'s's", "568 568"],
  ["rock'n'roll", "2172 262 333 262 3341"],
  [
    "12345 3.14159 1,000,000",
    "272 273 274 275 276 274 269 272 275 272 276 280 272 267 271 271 271 267 271 271 271",
  ],
  ["\u00b2\u00b3 \u00bd \u0663\u0664 \u216b", "41175 126 367 33613 149 352 149 353 158 227 375"],
  ["caf\u00e9 na\u00efve r\u00e9sum\u00e9", "15304 1097 35689 563 29106 7054 4166"],
  ["cafe\u0301", "4979 136 479"],
  ["Stra\u00dfe \u00c4\u00d6\u00dc", "1894 127 253 324 10896 7255 47177"],
  ["\u0130stanbul", "328 16384 11231"],
  [
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3",
    "138 123 138 112 139 227 139 225 139 225 138 113 139 227 139 480",
  ],
  [
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "39121 44353 34002 252 21575 2429 228 47121 32421 486",
  ],
  ["\u4e2d\u6587\u63d0\u793a\u8bcd", "19759 255 29032 229 162 237 238 163 97 118 164 107 491"],
  ["\ud55c\uad6d\uc5b4", "15197 250 31871 255 31625 368"],
  [
    "emoji \ud83d\udc31\u200d\ud83d\udc64 \ud83d\udc4d\ud83c\udffd \u2764\ufe0f \ud83c\uddef\ud83c\uddf5",
    "16327 35710 4244 964 353 43722 1752 26527",
  ],
  ["...!!!???", "3002 11194 3824"],
  [
    "(((masterpiece))), [[best quality]], {detailed}",
    "33287 12066 13720 2361 58 314 949 3027 60 34067 346 12609 348",
  ],
  [
    "<lora:foo_v2:0.8> <hypernet:x>",
    "283 2179 320 281 23435 318 341 273 281 271 269 279 285 283 7997 2315 281 343 285",
  ],
  [
    "1girl, solo, long_hair, looking_at_viewer",
    "272 1611 267 5797 267 1538 318 2225 267 1312 318 536 318 15061",
  ],
  ["a<|endoftext|>b <|startoftext|>", "320 49407 321 49406"],
  ["x\u00a0y\u3000z\ufeffw", "343 344 345 171 119 379 342"],
  ["tab\u000bvt\u001cfs\u0085nel", "14724 10291 3854 2693"],
  ["\ufb01ne \ufb02ow", "171 105 223 1422 171 105 224 2250"],
  [
    "\uff26\uff35\uff2c\uff2c\uff37\uff29\uff24\uff34\uff28",
    "171 121 228 171 121 243 171 121 234 171 121 234 171 121 245 171 121 231 171 121 226 171 121 242 171 121 486",
  ],
  ["a\u200db", "320 728 491 321"],
  [
    "ma\u00f1ana\u2014\u201cquotes\u201d \u2018single\u2019 \u2026",
    "39354 6718 728 506 5808 728 507 728 502 2688 728 503 959",
  ],
  ["supercalifragilisticexpialidocious", "1642 2857 13093 2076 5868 26850 835 639 38466"],
  [
    "#hashtag @user $100 50% a&b ~tilde~ `code`",
    "258 9238 287 7031 259 272 271 271 276 271 260 320 261 321 349 6124 654 349 319 3217 319",
  ],
  ["x".repeat(300), "32035*74 22819"],
  ["!", "256"],
  ["!!", "748"],
  ["hello!?", "3306 6004"],
  ["\ud83d\ude00\ud83d\ude00\ud83d\ude00 ok", "12832 34503 2481"],
];

/** Ids of a TRICKY expectation. */
function expectedIds(spec: string): number[] {
  return spec.split(" ").filter((t) => t !== "").flatMap((t) => {
    const [id, times] = t.split("*").map(Number);
    return Array<number>(times ?? 1).fill(id);
  });
}

Deno.test("tricky strings match the reference ids", async () => {
  const tok = await ClipTokenizer.load();
  for (const [text, spec] of TRICKY) {
    assert.deepEqual(tok.encode(text), expectedIds(spec), JSON.stringify(text));
  }
});

Deno.test("decode(encode(x)) gives back the cleaned pre-tokens (byte-level BPE is lossless)", async () => {
  const tok = await ClipTokenizer.load();
  const check = (text: string): void => {
    const expected = preTokens(cleanText(text)).map((t) => `${t} `).join("");
    assert.equal(tok.decode(tok.encode(text)), expected, JSON.stringify(text));
  };
  for (const [text] of TRICKY) if (!text.includes("<|")) check(text);
  // Random strings from a pool of letters, digits, marks, punctuation, spaces, CJK and emoji.
  const pool = [..."aZé9٣ ̇ .,!?'s'LL\t\n—“日本🐱👍🏽İΣ_-()<>:xyzq"];
  let seed = 12345;
  const rand = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let i = 0; i < 300; i++) {
    let s = "";
    for (let k = rand(40); k > 0; k--) s += pool[rand(pool.length)];
    check(s);
  }
});

Deno.test("pad and tokenize: BOS, ids, EOS, padding; truncation keeps EOS last", async () => {
  const sd1 = await ClipTokenizer.load();
  const sd2 = sd1.withPadding("zero");
  assert.deepEqual(sd1.pad([5, 6], 6), [49406, 5, 6, 49407, 49407, 49407]);
  assert.deepEqual(sd2.pad([5, 6], 6), [49406, 5, 6, 49407, 0, 0]);
  assert.deepEqual(sd1.pad([1, 2, 3, 4, 5], 5), [49406, 1, 2, 3, 49407]);
  assert.deepEqual(sd2.pad([], 2), [49406, 49407]);
  const long = sd1.tokenize("a ".repeat(100));
  assert.equal(long.length, 77);
  assert.deepEqual([long[0], long[1], long[75], long[76]], [49406, 320, 320, 49407]);
  assert.deepEqual([...sd1.tokenize("hi", 4)], [49406, 1883, 49407, 49407]);
  assert.throws(() => sd1.pad([1], 1), LorakitError);
  assert.throws(() => sd1.decode([49408]), LorakitError);
  assert.equal(sd1.vocabSize, 49408);
  assert.deepEqual([sd1.bos, sd1.eos, sd2.padToken], [49406, 49407, 0]);
});

/** A folder of links to the shared tokenizer files, plus extra files, in a temp dir. */
async function linkedFolder(dir: string, extra: Record<string, string> = {}): Promise<void> {
  const src = clipFiles()!;
  await Deno.mkdir(dir, { recursive: true });
  for (const f of ["merges.txt", "vocab.json"]) await Deno.symlink(`${src}/${f}`, `${dir}/${f}`);
  for (const [name, text] of Object.entries(extra)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
}

Deno.test("vocabulary sources: hub cache repo id, cache entry, merges.txt path, pad config", async () => {
  if (clipFiles() === null) return;
  const tmp = await Deno.makeTempDir({ prefix: "lorakit_tok_" });
  try {
    const entry = `${tmp}/hub/models--openai--clip-vit-large-patch14`;
    await linkedFolder(`${entry}/snapshots/0123abc`);
    await Deno.mkdir(`${entry}/snapshots/fff000`, { recursive: true }); // an empty older one
    await Deno.mkdir(`${entry}/refs`);
    await Deno.writeTextFile(`${entry}/refs/main`, "0123abc\n");
    const hfHubDir = `${tmp}/hub`;
    const byId = await ClipTokenizer.load("openai/clip-vit-large-patch14", { hfHubDir });
    assert.equal(byId.source, `${entry}/snapshots/0123abc`);
    assert.equal((await ClipTokenizer.load(entry)).source, `${entry}/snapshots/0123abc`);
    const viaFile = await ClipTokenizer.load(`${entry}/snapshots/0123abc/merges.txt`);
    assert.deepEqual(viaFile.encode("a red sofa"), [320, 736, 15723]);

    // An SD2 diffusers tokenizer names "!" as pad_token (string or AddedToken object).
    await linkedFolder(`${tmp}/sd2a/tokenizer`, {
      "special_tokens_map.json": JSON.stringify({ pad_token: "!" }),
    });
    await linkedFolder(`${tmp}/sd2b`, {
      "tokenizer_config.json": JSON.stringify({ pad_token: { content: "!", lstrip: false } }),
    });
    assert.equal((await ClipTokenizer.load(`${tmp}/sd2a`)).padToken, 0);
    assert.equal((await ClipTokenizer.load(`${tmp}/sd2b`)).padToken, 0);
    assert.equal((await ClipTokenizer.load(`${tmp}/sd2b`, { padWith: "eos" })).padToken, 49407);

    // Only merges.txt: the vocabulary is derived.
    await Deno.mkdir(`${tmp}/merges_only`);
    await Deno.symlink(`${clipFiles()}/merges.txt`, `${tmp}/merges_only/merges.txt`);
    assert.deepEqual((await ClipTokenizer.load(`${tmp}/merges_only`)).encode("a cat"), [320, 2368]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("no vocabulary at a named place: LorakitError listing the places searched", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lorakit_tok_" });
  try {
    const msg = async (source: string, hfHubDir?: string): Promise<string> => {
      const e = await ClipTokenizer.load(source, { hfHubDir }).then(() => null, (x) => x);
      assert.ok(e instanceof LorakitError, `${source}: ${e}`);
      return e.message;
    };
    const empty = await msg(tmp);
    assert.match(empty, new RegExp(`searched: ${tmp}, ${tmp}/tokenizer\\.`));
    assert.match(await msg(`${tmp}/nope`), /no such file or folder/);
    const id = await msg("someone/some-model", `${tmp}/hub`);
    assert.match(id, /models--someone--some-model\/tokenizer/);
    await Deno.writeTextFile(`${tmp}/notes.txt`, "x");
    assert.match(await msg(`${tmp}/notes.txt`), /not merges\.txt or vocab\.json/);
    await Deno.writeTextFile(`${tmp}/merges.txt`, "#version: 0.2\ni n\n");
    await Deno.writeTextFile(`${tmp}/vocab.json`, "{ not json");
    assert.match(await msg(tmp), /vocab\.json: expected a JSON object/);
    await Deno.writeTextFile(`${tmp}/merges.txt`, "#version: 0.2\ni n x\n");
    assert.match(await msg(tmp), /merges\.txt: line 2 should hold two BPE symbols/);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

const A = 320; // "a</w>"
const BOS = 49406, EOS = 49407;

Deno.test("windows: counts for --max_token_length and bad values", () => {
  assert.deepEqual([null, undefined, 75, 150, 225].map(windowCountFor), [1, 1, 1, 2, 3]);
  assert.throws(() => windowCountFor(100), LorakitError);
});

Deno.test("SD1 windows (kohya v1): BOS + 75 tokens + EOS each, EOS padding inside", async () => {
  const tok = await ClipTokenizer.load();
  const w = (n: number, max: number): number[][] =>
    rows(windowIdsFromTokens(tok, Array(n).fill(A), max));
  const short = w(10, 225);
  assert.equal(short.length, 3);
  assert.deepEqual(short[0], [BOS, ...Array(10).fill(A), ...Array(66).fill(EOS)]);
  assert.deepEqual(short[1], [BOS, ...Array(76).fill(EOS)]);
  assert.deepEqual(short[2], [BOS, ...Array(76).fill(EOS)]);
  const mid = w(100, 150);
  assert.deepEqual(mid[0], [BOS, ...Array(75).fill(A), EOS]);
  assert.deepEqual(mid[1], [BOS, ...Array(25).fill(A), ...Array(51).fill(EOS)]);
  const over = w(400, 225); // truncated to 225 tokens
  for (const r of over) assert.deepEqual(r, [BOS, ...Array(75).fill(A), EOS]);
  assert.deepEqual(w(400, 75), [[...tok.tokenize("a ".repeat(400))]]);
});

Deno.test("SD2 windows (kohya v2): ! padding, EOS patched in, empty windows BOS EOS 0...", async () => {
  const tok = await ClipTokenizer.load(null, { padWith: "zero" });
  const w = (n: number, max: number): number[][] =>
    rows(windowIdsFromTokens(tok, Array(n).fill(A), max));
  const short = w(10, 225);
  assert.deepEqual(short[0], [BOS, ...Array(10).fill(A), EOS, ...Array(65).fill(0)]);
  assert.deepEqual(short[1], [BOS, EOS, ...Array(75).fill(0)]);
  assert.deepEqual(short[2], [BOS, EOS, ...Array(75).fill(0)]);
  const mid = w(100, 225);
  assert.deepEqual(mid[0], [BOS, ...Array(75).fill(A), EOS]); // last was padding, patched
  assert.deepEqual(mid[1], [BOS, ...Array(25).fill(A), EOS, ...Array(50).fill(0)]);
  assert.deepEqual(mid[2], [BOS, EOS, ...Array(75).fill(0)]);
  const edge = w(75, 150); // the EOS falls on window 1's first token
  assert.deepEqual(edge[0], [BOS, ...Array(75).fill(A), EOS]);
  assert.deepEqual(edge[1], [BOS, EOS, ...Array(75).fill(0)]);
  const full = w(150, 150);
  assert.deepEqual(full, [[BOS, ...Array(75).fill(A), EOS], [BOS, ...Array(75).fill(A), EOS]]);
  // One window is plain tokenize, without kohya's patches.
  assert.deepEqual(w(0, 75), [[BOS, EOS, ...Array(75).fill(0)]]);
});

Deno.test("windowIds batches captions as [batch, windows, 77]", async () => {
  const tok = await ClipTokenizer.load();
  const out = windowIds(tok, ["a cat", "a red sofa"], 150);
  assert.deepEqual([out.batch, out.windows, out.ids.length], [2, 2, 2 * 2 * 77]);
  assert.deepEqual(rows(out.ids)[2].slice(0, 5), [BOS, 320, 736, 15723, EOS]);
});

Deno.test("stitch rows: 0, rows 1..75 of each window, the last row; states gathered", () => {
  assert.deepEqual([...stitchRows(1)], Array.from({ length: 77 }, (_, i) => i));
  const r3 = stitchRows(3);
  assert.equal(r3.length, 227);
  assert.deepEqual([r3[0], r3[1], r3[75], r3[76], r3[150], r3[151], r3[225], r3[226]], [
    0,
    1,
    75,
    78,
    152,
    155,
    229,
    230,
  ]);
  // State value encodes (caption, window row, channel) so the gather can be checked exactly.
  const batch = 2, windows = 2, ch = 3;
  const states = new Float32Array(batch * windows * 77 * ch);
  for (let b = 0; b < batch; b++) {
    for (let r = 0; r < windows * 77; r++) {
      for (let c = 0; c < ch; c++) states[(b * windows * 77 + r) * ch + c] = b * 1e4 + r * 10 + c;
    }
  }
  const out = stitchWindowStates(states, batch, windows, ch);
  assert.equal(out.length, batch * 152 * ch);
  const rows2 = stitchRows(2);
  for (let b = 0; b < batch; b++) {
    for (let k = 0; k < 152; k++) {
      for (let c = 0; c < ch; c++) {
        assert.equal(out[(b * 152 + k) * ch + c], b * 1e4 + rows2[k] * 10 + c);
      }
    }
  }
  assert.throws(() => stitchWindowStates(states, 3, windows, ch), LorakitError);
});
