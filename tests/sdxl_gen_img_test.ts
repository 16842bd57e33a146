/**
 * `lorakit sdxl_gen_img` on sdxl-tiny at 64x64 with 2-3 steps: the first denoising step's U-Net
 * inputs (context, pooled text embedding and time ids inside `y`) against the diffusers / kohya
 * references in forward.safetensors, the size conditioning rules (defaults, negatives, the
 * highres fix's first pass), a kohya SDXL LoRA applied (conditioning against kohya's, x0 is the
 * base image, merged equals applied), the PNG info, determinism for a seed, `gen_img` on an SDXL
 * model (SDXL, with --clip_skip), and bad input (one-line error, non-zero exit, nothing written).
 */
import assert from "node:assert/strict";
import { initGpu, type Tensor } from "../gpu/mod.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { readTextChunks } from "../core/image/png_chunks.ts";
import { readImage } from "../core/image/decode.ts";
import { loadStableDiffusionXL, sdxlVector, type StableDiffusionXL } from "../core/models/mod.ts";
import { generateBatch, type GenLoopOptions, type GenModels } from "../core/sample/gen_loop.ts";
import { type GenJob, planGeneration, type PlanOptions } from "../core/sample/gen_plan.ts";
import { parseInfotext } from "../core/sample/infotext.ts";
import { createNetworkFromWeights } from "../core/lora/network.ts";
import {
  DEFAULT_SIZE_CONDITIONING,
  sdxlConditioner,
  type SdxlConditionerOptions,
  sdxlTimeIds,
} from "../core/sample/sdxl_conditioner.ts";
import { main as sdxlGenImg } from "../cli/sdxl_gen_img.ts";
import { main as genImg } from "../cli/gen_img.ts";
import { fixture } from "./fixtures.ts";
import { pngs, runCli } from "./cli_capture.ts";
import { relErr } from "./op_check.ts";

const model = fixture("sdxl-tiny/model.safetensors");
const forward = fixture("sdxl-tiny/forward.safetensors");
const sd1 = fixture("sd1-tiny/model.safetensors");
const sdLora = fixture("kohya/lierla_a.safetensors");
const noFixtures = model === null;

const gpuTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: noFixtures, sanitizeResources: false, sanitizeOps: false, fn });

let cached: StableDiffusionXL | null = null;
async function tiny(): Promise<StableDiffusionXL> {
  if (!cached) {
    await initGpu();
    cached = await loadStableDiffusionXL(model!);
  }
  return cached;
}

const PLAN: PlanOptions = {
  width: 1024,
  height: 1024,
  steps: 2,
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
  sdxlSize: DEFAULT_SIZE_CONDITIONING,
};

const LOOP: GenLoopOptions = {
  sampler: "euler",
  vPrediction: false,
  maxEmbeddingsMultiples: 1,
  clipSkip: 1,
  embNormalizeMode: "original",
  vaeBatchSize: null,
  highres: null,
  networks: [],
  networkDefaultMuls: [],
  initImages: null,
};

/** What the U-Net was given at the first step. */
interface FirstStep {
  sample: number[];
  timestep: number;
  context: Float32Array;
  y: Float32Array;
  contextShape: number[];
  yShape: number[];
}

class Stop extends Error {}

/** Run generation up to the first U-Net call and return its inputs (nothing is denoised). */
async function firstStep(
  sd: StableDiffusionXL,
  jobs: GenJob[],
  c: SdxlConditionerOptions = {},
): Promise<FirstStep> {
  let seen: { sample: number[]; t: number; c: Tensor; y: Tensor } | null = null;
  const models: GenModels = {
    conditioner: sdxlConditioner({
      tokenizer: sd.tokenizer,
      tokenizer2: sd.tokenizer2,
      textEncoder: sd.textEncoder,
      textEncoder2: sd.textEncoder2,
      addEmbedding: sd.config.unet.addEmbedding!,
    }, c),
    unet: {
      forward(sample, timesteps, context, y) {
        seen = { sample: sample.shape, t: timesteps[0], c: context.retain(), y: y!.retain() };
        throw new Stop();
      },
    },
    vae: sd.vae,
    latentScale: sd.config.vae.scalingFactor,
  };
  await assert.rejects(() => generateBatch(models, jobs, LOOP), Stop);
  const s = seen! as { sample: number[]; t: number; c: Tensor; y: Tensor };
  const out: FirstStep = {
    sample: s.sample,
    timestep: s.t,
    context: await s.c.toArray(),
    y: await s.y.toArray(),
    contextShape: s.c.shape,
    yShape: s.y.shape,
  };
  s.c.dispose();
  s.y.dispose();
  return out;
}

const line = (text: string) => ({ text, where: "test" });

/** Escape kohya's weighting brackets so a prompt is encoded as plain text. */
const plain = (p: string) => p.replace(/[()[\]]/g, (c) => `\\${c}`);

gpuTest("sdxl gen: the first step's U-Net inputs match diffusers' SDXL pipeline", async () => {
  const sd = await tiny();
  const f = await openSafetensors(forward!);
  const prompts: string[] = JSON.parse(f.metadata.prompts);
  const ref = async (k: string) => (await f.readF32(k)).data;
  const context = await ref("context"), y = await ref("unet_y"), te = await ref("unet_text_embeds");
  const timeIds = await ref("unet_time_ids");
  f.close();
  // Row 0: the defaults at 1024x1024; row 1: (768, 1344), crop (32, 16), target 896x1152.
  const options = ["", " --oh 768 --ow 1344 --ct 32 --cl 16 --w 1152 --h 896"];
  for (const [i, opt] of options.entries()) {
    const [jobs] = planGeneration([line(plain(prompts[i]) + opt)], PLAN);
    const got = await firstStep(sd, jobs);
    // [negative (empty); prompt] for classifier-free guidance.
    assert.deepEqual(got.contextShape, [2, 77, 16]);
    assert.deepEqual(got.yShape, [2, 56]);
    const h = i === 0 ? 1024 : 896, w = i === 0 ? 1024 : 1152;
    assert.deepEqual(got.sample, [2, 4, h / 8, w / 8]);
    const ctx = got.context.subarray(77 * 16),
      want = context.subarray(i * 77 * 16, (i + 1) * 77 * 16);
    assert.ok(relErr(ctx, want) <= 1e-4, `context rel err ${relErr(ctx, want)}`);
    const yRow = got.y.subarray(56);
    const yErr = relErr(yRow, y.subarray(i * 56, (i + 1) * 56));
    assert.ok(yErr <= 1e-4, `y rel err ${yErr}`);
    const teErr = relErr(yRow.subarray(0, 8), te.subarray(i * 8, (i + 1) * 8));
    assert.ok(teErr <= 1e-4, `text_embeds rel err ${teErr}`);
    assert.deepEqual(
      sdxlTimeIds(jobs[0].settings.sizeConditioning, { width: w, height: h, sizeScale: null }).cond,
      Array.from(timeIds.subarray(i * 6, (i + 1) * 6)),
    );
    // The negative row: the empty prompt encoded as text, with the same time ids.
    const empty = sd.encodePrompts([""]);
    const negCtx = await empty.context.toArray();
    const negY = sdxlVector(
      empty.pooled,
      [Array.from(timeIds.subarray(i * 6, (i + 1) * 6))],
      sd.config.unet.addEmbedding!,
    );
    const negYWant = await negY.toArray();
    empty.context.dispose();
    empty.pooled.dispose();
    negY.dispose();
    assert.ok(relErr(got.context.subarray(0, 77 * 16), negCtx) <= 1e-4, "negative context");
    assert.ok(relErr(got.y.subarray(0, 56), negYWant) <= 1e-4, "negative y");
  }
});

gpuTest("sdxl gen: a long prompt in two windows, pooled from the first (kohya)", async () => {
  const sd = await tiny();
  const f = await openSafetensors(forward!);
  const prompt = plain(JSON.parse(f.metadata.prompts)[1]);
  const context = (await f.readF32("context")).data.subarray(77 * 16);
  const te = (await f.readF32("unet_text_embeds")).data.subarray(8);
  f.close();
  const [jobs] = planGeneration([line(prompt)], PLAN);
  const got = await firstStep(sd, jobs, { maxEmbeddingsMultiples: 2 });
  assert.deepEqual(got.contextShape, [2, 154, 16]);
  // The first window is the fixture's truncated prompt (BOS, 75 tokens, EOS).
  const row = got.context.subarray(154 * 16, 154 * 16 + 77 * 16);
  assert.ok(relErr(row, context) <= 1e-4, `first window rel err ${relErr(row, context)}`);
  const pooled = got.y.subarray(56, 64);
  assert.ok(relErr(pooled, te) <= 1e-4, `pooled rel err ${relErr(pooled, te)}`);
});

gpuTest("sdxl gen: a kohya SDXL LoRA (x0.7) conditions the prompt as kohya's network", async () => {
  const sd = await tiny();
  const f = await openSafetensors(forward!);
  const prompts: string[] = JSON.parse(f.metadata.prompts);
  f.close();
  const l = await openSafetensors(fixture("sdxl-tiny/kohya/lora_forward.safetensors")!);
  const want = (await l.readF32("lierla_context")).data;
  l.close();
  const net = await createNetworkFromWeights(
    0.7,
    fixture("sdxl-tiny/kohya/lierla.safetensors")!,
    sd,
  );
  net.applyTo(sd);
  try {
    for (const [i, p] of prompts.entries()) {
      const [jobs] = planGeneration([line(plain(p))], PLAN);
      const got = await firstStep(sd, jobs);
      const row = want.subarray(i * 77 * 16, (i + 1) * 77 * 16);
      const err = relErr(got.context.subarray(77 * 16), row);
      assert.ok(err <= 1e-4, `prompt ${i}: context rel err ${err}`);
    }
  } finally {
    net.dispose();
  }
});

Deno.test("sdxl gen: kohya's size conditioning defaults, negatives and highres first pass", () => {
  const stage = { width: 1152, height: 896, sizeScale: null };
  assert.deepEqual(sdxlTimeIds(undefined, stage), {
    cond: [896, 1152, 0, 0, 896, 1152],
    uncond: [896, 1152, 0, 0, 896, 1152],
  });
  const given = {
    ...DEFAULT_SIZE_CONDITIONING,
    originalHeight: 2048,
    originalWidth: 1000,
    originalWidthNegative: 512,
    cropTop: 31,
  };
  assert.deepEqual(sdxlTimeIds(given, stage), {
    cond: [2048, 1000, 31, 0, 896, 1152],
    uncond: [2048, 512, 31, 0, 896, 1152],
  });
  // kohya's first pass: given values x scale rounded (int(x * s + 0.5)), the rest from its size.
  assert.deepEqual(sdxlTimeIds(given, { width: 576, height: 448, sizeScale: 0.5 }), {
    cond: [1024, 500, 16, 0, 448, 576],
    uncond: [1024, 256, 16, 0, 448, 576],
  });
  // Prompt options override the run's flags and split batches.
  const b = planGeneration([line("a --oh 512 --d 1"), line("b --d 2"), line("c --d 3")], {
    ...PLAN,
    batchSize: 3,
    sdxlSize: { ...DEFAULT_SIZE_CONDITIONING, originalHeight: 640, cropLeft: 8 },
  });
  assert.deepEqual(b.map((x) => x.length), [1, 2]);
  assert.equal(b[0][0].settings.sizeConditioning!.originalHeight, 512);
  assert.equal(b[1][0].settings.sizeConditioning!.originalHeight, 640);
  assert.equal(b[1][0].settings.sizeConditioning!.cropLeft, 8);
  // kohya's SDXL pipeline has no negative scale.
  assert.throws(
    () => planGeneration([line("a --nl 2")], PLAN),
    /test: --nl: not supported for SDXL/,
  );
  assert.throws(
    () => planGeneration([line("a")], { ...PLAN, negativeScale: 3 }),
    /--negative_scale: not supported for SDXL/,
  );
});

/** Run a CLI, capturing what it prints to stderr. */
const cli = runCli;

const COMMON = ["--ckpt", model ?? "", "--W", "64", "--H", "64", "--steps", "2"];

gpuTest("sdxl_gen_img CLI: PNG info, size keys, and one image per seed", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const prompts = `${dir}/prompts.txt`;
    await Deno.writeTextFile(
      prompts,
      "a (red:1.2) cat --n blurry, dark --d 7 --oh 512 --nw 256 --ct 4\nsecond --d 9 --h 96\n",
    );
    const run = async (out: string, extra: string[]) =>
      await cli(sdxlGenImg, [
        ...COMMON,
        "--from_file",
        prompts,
        "--outdir",
        out,
        "--sampler",
        "k_euler_a",
        "--sequential_file_name",
        "--original_width",
        "2048",
        ...extra,
      ]);
    const r = await run(`${dir}/a`, []);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(await pngs(`${dir}/a`), ["im_000001.png", "im_000002.png"]);
    const text = readTextChunks(await Deno.readFile(`${dir}/a/im_000001.png`));
    const p = parseInfotext(text.parameters);
    assert.equal(p["Prompt"], "a (red:1.2) cat");
    assert.equal(p["Negative prompt"], "blurry, dark");
    assert.equal(p["Steps"], "2");
    assert.equal(p["Sampler"], "Euler a");
    assert.equal(p["CFG scale"], "7.5");
    assert.equal(p["Seed"], "7");
    assert.deepEqual([p["Size-1"], p["Size-2"]], ["64", "64"]);
    assert.equal(p["Model"], "model");
    assert.equal(text["original-height"], "512");
    assert.equal(text["original-width"], "2048");
    assert.equal(text["original-height-negative"], "512");
    assert.equal(text["original-width-negative"], "256");
    assert.equal(text["crop-top"], "4");
    assert.equal(text["crop-left"], "0");
    const second = readTextChunks(await Deno.readFile(`${dir}/a/im_000002.png`));
    assert.equal(second["original-height"], "96");
    const img2 = await readImage(`${dir}/a/im_000002.png`);
    assert.deepEqual([img2.width, img2.height], [64, 96]);
    // The same seeds give the same images, in f32 and again at another batch size.
    const again = await run(`${dir}/b`, ["--batch_size", "2"]);
    assert.equal(again.code, 0, again.err);
    for (const name of ["im_000001.png", "im_000002.png"]) {
      const a = await readImage(`${dir}/a/${name}`), b = await readImage(`${dir}/b/${name}`);
      let diff = 0;
      for (let i = 0; i < a.data.length; i++) {
        diff = Math.max(diff, Math.abs(a.data[i] - b.data[i]));
      }
      assert.ok(diff <= 1, `${name}: max diff ${diff}`);
    }
    // A LoRA at x0 gives the base image; merged gives what applied gives.
    const lora = fixture("sdxl-tiny/kohya/c3lier.safetensors")!;
    const withLora = async (out: string, mul: string, extra: string[] = []) => {
      const r = await cli(sdxlGenImg, [
        ...COMMON,
        "--prompt",
        "a (red:1.2) cat --n blurry --d 7",
        "--outdir",
        out,
        "--sequential_file_name",
        "--network_module",
        "networks.lora",
        "--network_weights",
        lora,
        "--network_mul",
        mul,
        ...extra,
      ]);
      assert.equal(r.code, 0, r.err);
      return await readImage(`${out}/im_000001.png`);
    };
    const base = await cli(sdxlGenImg, [
      ...COMMON,
      "--prompt",
      "a (red:1.2) cat --n blurry --d 7",
      "--outdir",
      `${dir}/base`,
      "--sequential_file_name",
    ]);
    assert.equal(base.code, 0, base.err);
    const baseImg = await readImage(`${dir}/base/im_000001.png`);
    const maxDiff = (a: { data: ArrayLike<number> }, b: { data: ArrayLike<number> }) => {
      let m = 0;
      for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i] - b.data[i]));
      return m;
    };
    assert.equal(maxDiff(await withLora(`${dir}/l0`, "0"), baseImg), 0);
    const applied = await withLora(`${dir}/l1`, "0.7");
    assert.ok(maxDiff(applied, baseImg) > 2, "the LoRA changes the image");
    const merged = await withLora(`${dir}/l2`, "0.7", ["--network_merge"]);
    assert.ok(maxDiff(applied, merged) <= 2, `merged vs applied ${maxDiff(applied, merged)}`);
    const info = parseInfotext(
      readTextChunks(await Deno.readFile(`${dir}/l1/im_000001.png`)).parameters,
    );
    assert.match(info["Prompt"], /<lora:c3lier:0.7>/);
    // gen_img on an SDXL model generates with SDXL (kohya's gen_img.py detects it, or --sdxl),
    // with --clip_skip used (default 2: sdxl_gen_img's penultimate layers).
    const cat = ["--prompt", "a cat", "--seed", "3", "--sequential_file_name"];
    const viaSdxl = await cli(sdxlGenImg, [...COMMON, ...cat, "--outdir", `${dir}/c1`]);
    const viaGenImg = await cli(genImg, [...COMMON, ...cat, "--outdir", `${dir}/c2`]);
    const skip1 = await cli(genImg, [
      ...COMMON,
      ...cat,
      "--sdxl",
      "--clip_skip",
      "1",
      "--outdir",
      `${dir}/c3`,
    ]);
    for (const r of [viaSdxl, viaGenImg, skip1]) assert.equal(r.code, 0, r.err);
    const c = await Promise.all(
      ["c1", "c2", "c3"].map((d) => readImage(`${dir}/${d}/im_000001.png`)),
    );
    assert.equal(maxDiff(c[0], c[1]), 0);
    assert.ok(maxDiff(c[0], c[2]) > 0, "--clip_skip 1 takes the last layers");
    // --fp16 (the VAE stays f32: force_upcast) and --vae (the model's own VAE) match f32.
    const half = await cli(sdxlGenImg, [...COMMON, ...cat, "--fp16", "--outdir", `${dir}/c4`]);
    const ownVae = await cli(sdxlGenImg, [
      ...COMMON,
      ...cat,
      "--vae",
      model!,
      "--outdir",
      `${dir}/c5`,
    ]);
    for (const r of [half, ownVae]) assert.equal(r.code, 0, r.err);
    const h = await readImage(`${dir}/c4/im_000001.png`);
    assert.ok(maxDiff(c[0], h) <= 8, `fp16 vs f32: max diff ${maxDiff(c[0], h)}`);
    assert.equal(maxDiff(c[0], await readImage(`${dir}/c5/im_000001.png`)), 0);
    const t = readTextChunks(await Deno.readFile(`${dir}/c2/im_000001.png`));
    assert.equal(t["original-height"], "64");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

gpuTest(
  "sdxl_gen_img CLI: bad input is a one-line error, a non-zero exit and no output",
  async () => {
    const dir = await Deno.makeTempDir();
    const out = `${dir}/out`;
    const cases: [(a: string[]) => Promise<number>, string[], RegExp][] = [
      [
        sdxlGenImg,
        [...COMMON, "--prompt", "x", "--negative_scale", "3"],
        /--negative_scale: not supported for SDXL/,
      ],
      [
        sdxlGenImg,
        [...COMMON, "--prompt", "x", "--crop_top", "-4"],
        /--crop_top: expected a non-negative integer, found -4/,
      ],
      [sdxlGenImg, [...COMMON, "--prompt", "x", "--v2"], /--v2/],
      [sdxlGenImg, [...COMMON, "--prompt", "x", "--W", "100"], /multiples of 8, found 100x64/],
      [
        sdxlGenImg,
        [...COMMON, "--prompt", "x", "--ds_depth_1", "3"],
        /--ds_depth_1: .*not supported/,
      ],
      [
        sdxlGenImg,
        [
          ...COMMON,
          "--prompt",
          "x",
          "--network_module",
          "networks.lora",
          "--network_weights",
          sdLora ?? "",
        ],
        /lierla_a\.safetensors/,
      ],
      [genImg, [...COMMON, "--prompt", "x", "--v2"], /--v2: '.*' is an SDXL model, not SD 2.x/],
      [genImg, [...COMMON, "--prompt", "x", "--clip_skip", "9"], /--clip_skip: expected 1 to 3/],
    ];
    if (sd1 !== null) {
      cases.push([sdxlGenImg, ["--ckpt", sd1, "--prompt", "x"], /is not an SDXL model/]);
    }
    try {
      for (const [main, args, re] of cases) {
        const r = await cli(main, [...args, "--outdir", out]);
        assert.notEqual(r.code, 0, args.join(" "));
        assert.match(r.err, re);
        const errors = r.err.split("\n").filter((l) => l.startsWith("error:"));
        assert.ok(errors.length <= 1, r.err);
        assert.equal(await Deno.stat(out).then(() => true, () => false), false, "no output folder");
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

globalThis.addEventListener("unload", () => cached?.dispose());
