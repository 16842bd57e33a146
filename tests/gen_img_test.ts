/**
 * `lorakit gen_img` on sd1-tiny at 64x64 with few steps: planning rules (seeds, batches, names),
 * conditioning end to end, batch-size invariance, LoRA at 0 / merged / two at once, the PNG's
 * A1111 infotext, per-prompt options from a file, img2img with the highres fix, `--vae`, and
 * bad input (clear message, non-zero exit, nothing written).
 */
import assert from "node:assert/strict";
import { initGpu, scope, Tensor } from "../gpu/mod.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { loadStableDiffusion, type StableDiffusion } from "../core/models/mod.ts";
import { createNetworkFromWeights } from "../core/lora/network.ts";
import { readImage } from "../core/image/decode.ts";
import { readTextChunks } from "../core/image/png_chunks.ts";
import type { RasterImage } from "../core/image/image.ts";
import { encodeConditioning } from "../core/sample/conditioning.ts";
import { firstAvailableFileName, outputFileName } from "../core/sample/file_naming.ts";
import { generateBatch, type GenLoopOptions, highresFirstSize } from "../core/sample/gen_loop.ts";
import { type GenJob, planGeneration, type PlanOptions } from "../core/sample/gen_plan.ts";
import { loraTags, parseInfotext } from "../core/sample/infotext.ts";
import { loadVaeFile } from "../core/sample/vae_file.ts";
import { main as genImg } from "../cli/gen_img.ts";
import { fixture } from "./fixtures.ts";
import { pngs, runCli } from "./cli_capture.ts";
import { randn, relErr } from "./op_check.ts";

const model = fixture("sd1-tiny/model.safetensors");
const loraA = fixture("kohya/lierla_a.safetensors");
const loraB = fixture("kohya/lierla_b.safetensors");
const sd2 = fixture("sd2-tiny/model.safetensors");
const noFixtures = model === null;

const PLAN: PlanOptions = {
  width: 64,
  height: 64,
  steps: 3,
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

const line = (text: string) => ({ text, where: "test" });

Deno.test("gen plan: kohya's seeds, batches, iterations and per-prompt options", () => {
  // One prompt, one image: --seed is the image's seed.
  assert.equal(planGeneration([line("a")], PLAN)[0][0].seed, 1);
  // --d seeds in order, the last one repeating; options split batches.
  const b = planGeneration([line("a --d 5,6 --s 4"), line("b --w 128 --l 3 --n no")], {
    ...PLAN,
    imagesPerPrompt: 3,
    batchSize: 4,
  });
  assert.deepEqual(b.map((x) => x.map((j) => j.seed).slice(0, 3)), [
    [5, 6, 6],
    b[1].map((j) => j.seed),
  ]);
  assert.deepEqual(b[0].map((j) => j.settings.steps), [4, 4, 4]);
  assert.deepEqual([b[1][0].settings.width, b[1][0].settings.scale, b[1][0].negativePrompt], [
    128,
    3,
    "no",
  ]);
  // Same seeds for the same --seed; --iter_same_seed: one seed per iteration.
  const s1 = planGeneration([line("a"), line("b")], { ...PLAN, nIter: 2 }).flat();
  const s2 = planGeneration([line("a"), line("b")], { ...PLAN, nIter: 2 }).flat();
  assert.deepEqual(s1.map((j) => j.seed), s2.map((j) => j.seed));
  const same = planGeneration([line("a"), line("b")], { ...PLAN, nIter: 2, iterSameSeed: true })
    .flat().map((j) => j.seed);
  assert.equal(same[0], same[1]);
  assert.equal(same[2], same[3]);
  assert.notEqual(same[0], same[2]);
  // Bad input: sizes, seeds, dynamic prompts, Deep Shrink, --f names.
  assert.throws(() => planGeneration([line("a --w 100")], PLAN), /multiples of 8, found 100x64/);
  assert.throws(() => planGeneration([line("a")], { ...PLAN, seed: -3 }), /--seed/);
  assert.throws(() => planGeneration([line("{a|b}")], PLAN), /dynamic prompt/);
  assert.throws(() => planGeneration([line("a --dsd1 3")], PLAN), /Deep Shrink/);
  assert.throws(() => planGeneration([line("a --f ../x.png")], PLAN), /plain file name/);
});

Deno.test("gen file names: kohya's three schemes and first_available_filename", async () => {
  const base = {
    promptFileName: null,
    originalFileName: null,
    sequential: false,
    timestamp: "20240102030405",
    highresPrefix: "" as const,
    indexInBatch: 2,
    sequenceNumber: 7,
    seed: 42,
  };
  assert.equal(outputFileName(base), "im_20240102030405_002_42.png");
  assert.equal(outputFileName({ ...base, sequential: true, highresPrefix: "1" }), "im_1000007.png");
  assert.equal(outputFileName({ ...base, originalFileName: "/x/src.jpg" }), "src.png");
  const taken = new Set(["a.png", "a_1.png", "a_2.png"]);
  assert.equal(
    await firstAvailableFileName("a.png", (n) => Promise.resolve(taken.has(n))),
    "a_3.png",
  );
  assert.equal(highresFirstSize(512, 0.5), 256);
  assert.equal(highresFirstSize(200, 0.6), 96);
});

let cached: StableDiffusion | null = null;
async function tiny(): Promise<StableDiffusion> {
  if (!cached) {
    await initGpu();
    cached = await loadStableDiffusion(model!);
  }
  return cached;
}

function loopOptions(extra: Partial<GenLoopOptions> = {}): GenLoopOptions {
  return {
    sampler: "euler_a",
    vPrediction: false,
    maxEmbeddingsMultiples: 1,
    clipSkip: 1,
    embNormalizeMode: "original",
    vaeBatchSize: null,
    highres: null,
    networks: [],
    networkDefaultMuls: [],
    initImages: null,
    ...extra,
  };
}

function jobs(prompts: string[], seeds: number[]): GenJob[] {
  return planGeneration(prompts.map((p, i) => line(`${p} --d ${seeds[i]}`)), {
    ...PLAN,
    batchSize: prompts.length,
  })[0];
}

async function image(sd: StableDiffusion, j: GenJob[], o = loopOptions()): Promise<RasterImage[]> {
  return (await generateBatch(sd, j, o)).map((g) => g.image);
}

function maxDiff(a: RasterImage, b: RasterImage): number {
  assert.equal(a.data.length, b.data.length);
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i] - b.data[i]));
  return m;
}

const gpuTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: noFixtures, sanitizeResources: false, sanitizeOps: false, fn });

gpuTest("gen conditioning: an unweighted prompt is the text encoder's output", async () => {
  const sd = await tiny();
  const f = await openSafetensors(fixture("sd1-tiny/forward.safetensors")!);
  const prompt = JSON.parse(f.metadata.prompts)[0];
  const want = (await f.readF32("te_last")).data.subarray(0, 77 * 32);
  f.close();
  const { context } = encodeConditioning(sd.tokenizer, sd.textEncoder, [prompt], [], {
    guidanceScale: 1,
  });
  assert.deepEqual(context.shape, [1, 77, 32]);
  const err = relErr(await context.toArray(), want);
  context.dispose();
  assert.ok(err <= 1e-4, `rel err ${err}`);
});

gpuTest("gen: a seed gives the same image at batch size 1 and 2 (ancestral sampler)", async () => {
  const sd = await tiny();
  const [alone] = await image(sd, jobs(["a red cat"], [11]));
  const pair = await image(sd, jobs(["a blue dog", "a red cat"], [12, 11]));
  assert.ok(maxDiff(alone, pair[1]) <= 1, `max diff ${maxDiff(alone, pair[1])}`);
  assert.ok(maxDiff(alone, pair[0]) > 10, "different seeds give different images");
});

gpuTest("gen LoRA: multiplier 0 is the base image; merging equals applying", async () => {
  const sd = await tiny();
  const j = jobs(["a cat"], [3]);
  const [base] = await image(sd, j);
  const net = await createNetworkFromWeights(0, loraA!, sd);
  net.applyTo(sd);
  const [zero] = await image(sd, j, loopOptions({ networks: [net], networkDefaultMuls: [0] }));
  assert.deepEqual(zero.data, base.data);
  const [applied] = await image(sd, j, loopOptions({ networks: [net], networkDefaultMuls: [0.8] }));
  assert.ok(maxDiff(applied, base) > 0, "the LoRA changes the image");
  net.dispose();
  const other = await loadStableDiffusion(model!);
  try {
    const m = await createNetworkFromWeights(0.8, loraA!, other);
    m.mergeTo(other);
    m.dispose();
    const [merged] = await image(other, j);
    assert.ok(maxDiff(merged, applied) <= 1, `merged vs applied: ${maxDiff(merged, applied)}`);
  } finally {
    other.dispose();
  }
});

gpuTest("gen LoRA: two networks at once add their deltas (layer outputs)", async () => {
  const sd = await tiny();
  const a = await createNetworkFromWeights(0.7, loraA!, sd);
  const b = await createNetworkFromWeights(-0.4, loraB!, sd);
  const layer = sd.unet.modules().find((m) => m.name.endsWith("attn1.to_q"))!;
  const inF = layer.weight.shape[1];
  const x = Tensor.fromArray(randn(2 * 5 * inF, 9), [2, 5, inF]);
  const out = async () => {
    const y = scope(() => layer.forward(x));
    const v = await y.toArray();
    y.dispose();
    return v;
  };
  try {
    const base = await out();
    a.applyTo(sd);
    const ya = await out();
    b.applyTo(sd);
    const yab = await out();
    a.restore();
    const yb = await out();
    const sum = base.map((v, i) => v + (ya[i] - v) + (yb[i] - v));
    assert.ok(relErr(ya, base) > 1e-3, "network A changes the layer");
    assert.ok(relErr(yab, sum) <= 1e-5, `A+B vs sum of deltas: ${relErr(yab, sum)}`);
  } finally {
    x.dispose();
    a.dispose();
    b.dispose();
  }
});

gpuTest(
  "gen --vae: a VAE from a whole checkpoint or a diffusers folder equals the model's",
  async () => {
    const sd = await tiny();
    const lat = Tensor.fromArray(randn(4 * 8 * 8, 5), [1, 4, 8, 8]);
    const want = scope(() => sd.vae.decode(lat));
    const w = await want.toArray();
    want.dispose();
    for (const path of [model!, fixture("sd1-tiny/diffusers")!]) {
      const vae = await loadVaeFile(path, sd.config);
      const got = scope(() => vae.decode(lat));
      assert.deepEqual(await got.toArray(), w, path);
      got.dispose();
      vae.dispose();
    }
    lat.dispose();
  },
);

/** Run the CLI, capturing what it prints to stderr. */
const cli = (args: string[]) => runCli(genImg, args);

const COMMON = ["--ckpt", model ?? "", "--W", "64", "--H", "64", "--steps", "3"];

gpuTest("gen_img CLI: PNG info (A1111) and per-prompt options from a file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const prompts = `${dir}/prompts.txt`;
    await Deno.writeTextFile(
      prompts,
      "a (red:1.2) cat --n blurry, dark --w 128 --d 7 --s 2 --l 5 --f first.png\n" +
        "# a comment line\n\nsecond prompt --d 9 --am 0,0.25\n",
    );
    const out = `${dir}/out`;
    const r = await cli([
      ...COMMON,
      "--from_file",
      prompts,
      "--outdir",
      out,
      "--sampler",
      "k_euler",
      "--sequential_file_name",
      "--network_module",
      "networks.lora",
      "networks.lora",
      "--network_weights",
      loraA!,
      loraB!,
      "--network_mul",
      "0.5",
      "-0.3",
    ]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await pngs(out), ["first.png", "im_000002.png"]);
    const first = await readImage(`${out}/first.png`);
    assert.deepEqual([first.width, first.height], [128, 64]);
    const t1 = readTextChunks(await Deno.readFile(`${out}/first.png`));
    const p1 = parseInfotext(t1.parameters);
    assert.equal(p1["Negative prompt"], "blurry, dark");
    assert.equal(p1["Steps"], "2");
    assert.equal(p1["Sampler"], "Euler");
    assert.equal(p1["CFG scale"], "5.0");
    assert.equal(p1["Seed"], "7");
    assert.deepEqual([p1["Size-1"], p1["Size-2"]], ["128", "64"]);
    assert.equal(p1["Model"], "model");
    assert.deepEqual(loraTags(p1["Prompt"]), [
      { name: "lierla_a", multiplier: 0.5 },
      { name: "lierla_b", multiplier: -0.3 },
    ]);
    assert.ok(p1["Prompt"].startsWith("a (red:1.2) cat"));
    assert.equal(t1.prompt, "a (red:1.2) cat");
    const p2 = parseInfotext(
      readTextChunks(await Deno.readFile(`${out}/im_000002.png`)).parameters,
    );
    assert.equal(p2["Seed"], "9");
    assert.equal(p2["Steps"], "3");
    assert.equal(p2["CFG scale"], "7.5");
    assert.deepEqual(loraTags(p2["Prompt"]).map((l) => l.multiplier), [0, 0.25]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("gen_img CLI: img2img from a PNG's own prompt, with the highres fix", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const r1 = await cli([
      ...COMMON,
      "--prompt",
      "a house --n fog",
      "--seed",
      "4",
      "--outdir",
      dir,
    ]);
    assert.equal(r1.code, 0, r1.err);
    const [src] = await pngs(dir);
    const out = `${dir}/i2i`;
    const r2 = await cli([
      "--ckpt",
      model!,
      "--image_path",
      `${dir}/${src}`,
      "--W",
      "128",
      "--H",
      "128",
      "--steps",
      "2",
      "--strength",
      "0.5",
      "--highres_fix_scale",
      "0.5",
      "--highres_fix_steps",
      "2",
      "--use_original_file_name",
      "--outdir",
      out,
    ]);
    assert.equal(r2.code, 0, r2.err);
    assert.deepEqual(await pngs(out), [src]);
    const img = await readImage(`${out}/${src}`);
    assert.deepEqual([img.width, img.height], [128, 128]);
    const p = parseInfotext(readTextChunks(await Deno.readFile(`${out}/${src}`)).parameters);
    assert.equal(p["Prompt"], "a house");
    assert.equal(p["Negative prompt"], "fog");
    assert.equal(p["Denoising strength"], "0.5");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest("gen_img CLI: bad input is a clear error, a non-zero exit and no output", async () => {
  const dir = await Deno.makeTempDir();
  const out = `${dir}/out`;
  const cases: [string[], RegExp][] = [
    [[...COMMON, "--prompt", "x", "--sampler", "k_foo"], /invalid choice: 'k_foo'|k_foo/],
    [[...COMMON, "--prompt", "x", "--W", "100"], /multiples of 8, found 100x64/],
    [
      ["--ckpt", `${dir}/missing.safetensors`, "--prompt", "x"],
      /--ckpt: '.*missing.safetensors' not found/,
    ],
    [[
      ...COMMON,
      "--prompt",
      "x",
      "--network_module",
      "networks.lora",
      "--network_weights",
      `${dir}/no.safetensors`,
    ], /--network_weights: .* not found/],
    [[...COMMON, "--prompt", "x", "--ds_depth_1", "3"], /--ds_depth_1: .*not supported/],
  ];
  if (sd2 !== null && loraA !== null) {
    cases.push([[
      "--ckpt",
      sd2,
      "--prompt",
      "x",
      "--W",
      "64",
      "--H",
      "64",
      "--network_module",
      "networks.lora",
      "--network_weights",
      loraA,
    ], /lierla_a/]);
  }
  try {
    for (const [args, re] of cases) {
      const r = await cli([...args, "--outdir", out]);
      assert.notEqual(r.code, 0, args.join(" "));
      assert.match(r.err, re);
      assert.equal(r.err.split("\n").filter((l) => l.startsWith("error:")).length <= 1, true);
      assert.equal(await Deno.stat(out).then(() => true, () => false), false, "no output folder");
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

globalThis.addEventListener("unload", () => cached?.dispose());
