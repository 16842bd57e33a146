/**
 * One test per fault the fuzzing campaign (tests/fuzz/) found in a parser, each with the input
 * that showed it, reduced by hand. Each must end in a result or a one-line LorakitError, fast and
 * without an allocation the input does not justify.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { decodeImage } from "../core/image/decode.ts";
import { openCkptFile } from "../core/io/ckpt.ts";
import { unpickle } from "../core/io/pickle.ts";
import { parseSafetensorsBytes, serializeSafetensors } from "../core/io/safetensors.ts";
import { loraFileFromSource } from "../core/lora/lora_file.ts";
import { hasDynamicPrompt, planGeneration } from "../core/sample/gen_plan.ts";
import { loraTags, parseInfotext } from "../core/sample/infotext.ts";
import { parseDatasetConfig } from "../core/kohya/dataset_config.ts";
import { readConfigFile } from "../core/kohya/train_args.ts";
import { openZip } from "../core/io/zip.ts";
import { ckptPickle, legacyCkpt, memFile, type Pk, zipBytes } from "./ckpt_build.ts";
import { sharedBomb } from "./fuzz/pickle_mutate.ts";
import { SEED_TENSORS, seedStorages } from "./fuzz/targets/ckpt_seeds.ts";
import { jpegLayout } from "./fuzz/targets/image_seeds.ts";
import { JPEG_SAMPLES } from "./fuzz/targets/jpeg_samples.ts";

/** Assert `f` rejects with a one-line LorakitError matching `pattern`. */
async function rejects(f: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(f, (e) => {
    assert.ok(e instanceof LorakitError, `expected a LorakitError, got ${e}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"), `one line: ${e.message}`);
    return true;
  });
}

Deno.test("zip: a DEFLATE member declaring 4 GiB uncompressed is refused before inflating", async () => {
  // Found as ckpt_zip seed 1 case 13: inflate allocated the declared size (new Uint8Array(2^32-1)).
  const zip = await zipBytes([{
    name: "archive/data.pkl",
    data: new Uint8Array(100),
    deflate: true,
  }]);
  const v = new DataView(zip.buffer);
  const cd = v.getUint32(zip.length - 22 + 16, true);
  v.setUint32(cd + 24, 0xffffffff, true);
  await rejects(
    () => openZip(memFile(zip, "bomb.ckpt")),
    /^bomb\.ckpt: .*entry 'archive\/data\.pkl' declares 4294967295 bytes from \d+ compressed; DEFLATE expands at most 1032:1/,
  );
  // A member that really expands that much is still read.
  const zeros = await zipBytes([{ name: "z", data: new Uint8Array(1 << 20), deflate: true }]);
  const a = await openZip(memFile(zeros));
  assert.equal((await a.readEntry(a.entries[0])).length, 1 << 20);
});

Deno.test("pickle: LONG4 of hundreds of kilobytes decodes in linear time", () => {
  // Found as pickle seed 1 case 182: the value was built a byte at a time (quadratic), so a
  // 150 KB LONG4 ran for seconds and a 1 MB one for minutes.
  const n = 1 << 20;
  const b = new Uint8Array(5 + n + 1);
  b[0] = 0x8b;
  new DataView(b.buffer).setUint32(1, n, true);
  b.fill(0x61, 5, 5 + n);
  b[5 + n] = 0x2e;
  const t0 = performance.now();
  const { value } = unpickle(b, { source: "long.pkl" });
  assert.ok(performance.now() - t0 < 2000, `${performance.now() - t0} ms`);
  assert.equal(typeof value, "bigint");
  assert.equal((value as bigint) % 256n, 0x61n);
  // Sign and small values are unchanged.
  const long4 = (bytes: number[]) =>
    unpickle(new Uint8Array([0x8b, bytes.length, 0, 0, 0, ...bytes, 0x2e]), { source: "x" }).value;
  assert.equal(long4([]), 0);
  assert.equal(long4([0xff]), -1);
  assert.equal(long4([0x00, 0x80]), -32768);
  assert.equal(long4([1, 0, 0, 0, 0, 0, 0, 0, 0x80]), -(2n ** 71n) + 1n);
});

/** A cjpeg sample with its frame resized to `w`x`h` and its last scan repeated `times` times. */
function stretchedJpeg(sample: string, w: number, h: number, times: number): Uint8Array {
  const b = Uint8Array.from(
    atob(JPEG_SAMPLES.find(([n]) => n === sample)![2]),
    (c) => c.charCodeAt(0),
  );
  const layout = jpegLayout(b);
  const v = new DataView(b.buffer);
  v.setUint16(layout.fields.find((f) => f.name === "SOF height")!.at, h);
  v.setUint16(layout.fields.find((f) => f.name === "SOF width")!.at, w);
  const [s, e] = layout.chunks.filter(([at]) => b[at + 1] === 0xda).at(-1)!;
  const parts = [b.subarray(0, e), ...Array(times).fill(b.subarray(s, e)), b.subarray(e)];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

Deno.test("jpeg: repeated scans over a large frame are refused in bounded time", async () => {
  // Found as jpeg seed 1 case 1: every scan walks the whole frame, so a 130 KB file of ~400
  // repeated scan headers over a 1x65535 frame decoded for seconds (minutes at full size).
  for (const sample of ["prog_h2v2", "rgb", "gray_prog"]) {
    const t0 = performance.now();
    await assert.rejects(
      () => decodeImage(stretchedJpeg(sample, 256, 256, 1000), "scans.jpg", { maxPixels: 1 << 16 }),
      (e) => {
        assert.ok(e instanceof LorakitError, String(e));
        assert.match(
          e.message,
          /^scans\.jpg: corrupt JPEG \(its \d+ scans decode the frame more than 64 times over/,
        );
        return true;
      },
    );
    assert.ok(performance.now() - t0 < 1000, `${sample}: ${performance.now() - t0} ms`);
  }
  // A normal progressive file (10 scans) still decodes.
  const ok = await decodeImage(stretchedJpeg("prog_h2v2", 29, 21, 0), "ok.jpg");
  assert.equal(ok.width, 29);
});

Deno.test("jpeg: the pixel cap counts the MCU padding that is allocated and decoded", async () => {
  // Found with the case above: a 1x65535 frame in 4:2:0 is 65535 pixels but 16x65536 stored.
  await assert.rejects(
    () => decodeImage(stretchedJpeg("prog_h2v2", 1, 65535, 0), "strip.jpg", { maxPixels: 1 << 18 }),
    /^LorakitError: strip\.jpg: image is 1x65535, stored in whole 16x16 blocks as 16x65536 \(1048576 pixels\), more than the 262144 allowed$/,
  );
});

Deno.test("config keys: a 150 KB unknown key is reported at once, with no suggestion", async () => {
  // Found as train_config seed 1 case 58: the did-you-mean search computed the edit distance of
  // the key to each of ~190 flag names, length x length steps each: 2.4 s for 196 KB.
  const key = "networ" + "wor".repeat(50_000);
  const t0 = performance.now();
  await rejects(
    () => readConfigFile("big.toml", () => Promise.resolve(`[a]\n${key} = 1\n`)),
    /^big\.toml: \[a\] networ(wor)+: unknown key; it is not a train_network flag$/,
  );
  assert.throws(
    () => parseDatasetConfig(`[general]\n${key} = 1\n`, "d.toml"),
    /unknown key .* in general; kohya's schema/,
  );
  assert.ok(performance.now() - t0 < 1000, `${performance.now() - t0} ms`);
  // Typos are still suggested.
  await rejects(
    () => readConfigFile("t.toml", () => Promise.resolve("network_dimm = 4\n")),
    /network_dimm: unknown key; it is not a train_network flag \(did you mean network_dim\?\)/,
  );
});

// A1111's regexes, which parseInfotext and loraTags must agree with.
const RE_PARAM = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;
const RE_LORA = /<lora:([^:>]+)(?::([^:>]+))?[^>]*>/g;

Deno.test("infotext: long lines parse in linear time, with the regexes' results", () => {
  // Found as infotext seed 1 case 72: the regexes re-scan the rest of the line from every
  // position, so a 96 KB line without a colon (or an unclosed <lora: tag) took seconds.
  const t0 = performance.now();
  parseInfotext("p\n" + "a a ".repeat(50_000));
  parseInfotext("p\n" + 'k: "' + "x".repeat(200_000));
  assert.deepEqual(loraTags("<lora:a".repeat(30_000)), []);
  assert.equal(loraTags("<lora::".repeat(30_000) + "<lora:x:2>").length, 1);
  assert.ok(performance.now() - t0 < 1000, `${performance.now() - t0} ms`);
  // Same pairs and tags as the regexes on random lines from a small alphabet.
  const alphabet = ["a", " ", ":", ",", '"', "\\", "-", "/", "\r", "1", "<lora:", ">", "\u2028"];
  let x = 7;
  const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let n = 0; n < 20_000; n++) {
    let line = "";
    for (let i = Math.floor(next() * 40); i > 0; i--) line += alphabet[Math.floor(next() * 13)];
    const last = ("p\n" + line).trim().split("\n").pop()!;
    const pairs = [...last.matchAll(RE_PARAM)];
    const got = parseInfotext("p\n" + line);
    if (pairs.length >= 3) {
      // Later keys win; quoted values are JSON-decoded, WxH values split, as A1111 does.
      const want: Record<string, string> = {};
      for (const [, k, raw] of pairs) {
        let v = raw;
        if (v.length > 1 && v[0] === '"' && v.endsWith('"')) {
          try {
            const j = JSON.parse(v);
            if (typeof j === "string") v = j;
          } catch {
            // kept as written
          }
        }
        const size = /^(\d+)x(\d+)$/.exec(v);
        if (size) [want[`${k}-1`], want[`${k}-2`]] = [size[1], size[2]];
        else want[k] = v;
      }
      for (const k of Object.keys(want)) assert.equal(got[k], want[k], JSON.stringify(line));
    } else assert.equal(Object.keys(got).length, 2, JSON.stringify(line));
    const tags = [...line.matchAll(RE_LORA)].map((m) => ({
      name: m[1],
      multiplier: m[2] === undefined ? 1 : Number(m[2]),
    }));
    assert.deepEqual(loraTags(line), tags, JSON.stringify(line));
  }
});

Deno.test("LoRA metadata: a DyLoRA unit that is not a positive integer is an error", async () => {
  // Found as lora_metadata seed 1 case 505: ss_network_args {"unit": 0} (or "x", -4, 2.5) gave a
  // unit of 0 or NaN, which extract_lora_from_dylora then used as its rank step.
  const file = (args: string) =>
    serializeSafetensors([
      {
        name: "lora_unet_a.lora_down.weight",
        dtype: "F16",
        shape: [2, 4],
        data: new Float32Array(8),
      },
      {
        name: "lora_unet_a.lora_up.weight",
        dtype: "F16",
        shape: [4, 2],
        data: new Float32Array(8),
      },
    ], { ss_network_module: "networks.dylora", ss_network_args: args });
  const open = async (args: string) =>
    loraFileFromSource(parseSafetensorsBytes(await file(args), "d.safetensors"));
  for (
    const bad of ['{"unit": 0}', '{"unit": "x"}', '{"unit": -4}', '{"unit": 2.5}', '{"unit": [4]}']
  ) {
    await rejects(
      () => open(bad),
      /^d\.safetensors: metadata ss_network_args: expected "unit" to be a positive integer, found /,
    );
  }
  assert.equal((await open('{"unit": "4"}')).dyloraUnit, 4);
  assert.equal((await open("{}")).dyloraUnit, 1);
});

/** A zip checkpoint of the seed tensors whose state dict also holds `extra` (raw pickle opcodes). */
async function ckptWith(extra: (pk: Pk) => void): Promise<Uint8Array> {
  const storages = seedStorages();
  return await zipBytes([
    { name: "archive/data.pkl", data: ckptPickle(SEED_TENSORS, storages, { extra }) },
    ...Object.entries(storages).map(([k, st]) => ({ name: `archive/data/${k}`, data: st.data })),
  ]);
}

Deno.test("ckpt: values shared through the memo, level on level, are not walked as trees", async () => {
  const t0 = performance.now();
  // Found as ckpt_zip seed 1 case 286: a dict holding the dict below it twice, 24 levels deep
  // (a few hundred bytes), was walked as 2^24 entries (2^32 at the nesting limit).
  const dicts = await ckptWith((pk) => pk.str("bomb").raw(sharedBomb("dict", 30, 2)));
  await rejects(
    async () => await openCkptFile(memFile(dicts, "dag.ckpt")),
    /^dag\.ckpt: the checkpoint's dicts reach more entries than its \d+-byte pickle holds/,
  );
  // Found as ckpt_legacy seed 1 cases 76 and 2520: a value that holds the one below 8 times, 12
  // levels deep (here a tensor's size, there the legacy magic number), was written out in full
  // in the error message: RangeError (Invalid string length) after 37 s.
  const sized = await ckptWith((pk) =>
    pk.str("t").global("torch._utils", "_rebuild_tensor_v2").op(0x28)
      .op(0x28).str("storage").global("torch", "FloatStorage").str("0").str("cpu").int(12)
      .op(0x74, 0x51).int(0).raw(sharedBomb("tuple", 12, 8)).tuple([1]).op(0x89)
      .orderedDict().op(0x74, 0x52)
  );
  await rejects(
    async () => await openCkptFile(memFile(sized, "size.ckpt")),
    /^size\.ckpt: tensor 't' is malformed: size \(\(a sequence of 8 items, .*\) is not a tuple/,
  );
  const legacy = legacyCkpt(SEED_TENSORS, seedStorages());
  const magicEnd = legacy.indexOf(0x2e) + 1;
  const bombed = new Uint8Array([
    0x80,
    0x02,
    ...sharedBomb("list", 30, 2),
    0x2e,
    ...legacy.subarray(magicEnd),
  ]);
  await rejects(
    async () => await openCkptFile(memFile(bombed, "legacy.ckpt")),
    /^legacy\.ckpt: not a PyTorch checkpoint; expected the legacy torch\.save magic number and protocol 1001, found \(\(a sequence of 2 items/,
  );
  assert.ok(performance.now() - t0 < 2000, `${performance.now() - t0} ms`);
});

Deno.test("prompt files: kohya's dynamic-prompt check runs in linear time, with the regex's answers", () => {
  // Found as prompt_file seed 1 case 682: testing kohya's RE_DYNAMIC_PROMPT backtracks
  // exponentially over a brace that never closes ("{a|a|a|..." of 60 characters took seconds).
  const plan = {
    width: 512,
    height: 512,
    steps: 20,
    scale: 7.5,
    negativeScale: null,
    strength: 0.8,
    imagesPerPrompt: 1,
    nIter: 1,
    batchSize: 1,
    seed: 1,
    iterSameSeed: false,
    networks: 0,
    initImageSizes: null,
    highresFix: false,
  };
  const t0 = performance.now();
  planGeneration([{ text: "{" + "a|".repeat(50_000), where: "p.txt line 1" }], plan);
  planGeneration([{ text: "{a".repeat(50_000), where: "p.txt line 1" }], plan);
  assert.ok(performance.now() - t0 < 1000, `${performance.now() - t0} ms`);
  assert.throws(
    () => planGeneration([{ text: "a {red|blue} car", where: "p.txt line 2" }], plan),
    /^LorakitError: p\.txt line 2: dynamic prompt variants/,
  );
  const re = /\{((e|E)\$\$)?(([\d-]+)\$\$)?(([^|}]+?)\$\$)?(.+?((\|).+?)*?)\}/;
  const alphabet = ["{", "}", "|", "$", "$$", "a", "\n", "\u2028", "e", "1", "-"];
  let x = 3;
  const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let n = 0; n < 50_000; n++) {
    let s = "";
    for (let i = Math.floor(next() * 14); i > 0; i--) s += alphabet[Math.floor(next() * 11)];
    assert.equal(hasDynamicPrompt(s), re.test(s), JSON.stringify(s));
  }
});
