/**
 * train_network's parts without a training run: bad input gives one clear message and writes
 * nothing; the latent disk cache is reused only while the image, bucket and flip setting are
 * unchanged (stub VAE); block lr weights reach the optimizer groups as parameterLearningRates
 * computes them; the data order and random streams are reproducible; progress text, loss
 * recorder and memory estimate.
 */
import assert from "node:assert/strict";
import { initGpu, Tensor } from "../gpu/mod.ts";
import { LorakitError } from "../core/errors.ts";
import { parameterLearningRates } from "../core/lora/block_lr.ts";
import { networkOptions } from "../core/lora/network_args.ts";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import { type TrainIo, trainNetwork } from "../core/train/loop.ts";
import { parseTrainArgs, type TrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { cacheLatents, latentCachePath } from "../core/train/latent_cache.ts";
import { planEpoch } from "../core/train/data_loader.ts";
import { prepareData } from "../core/train/train_setup.ts";
import { loadSessionModel, setupNetwork } from "../core/train/train_session.ts";
import { mixSeed } from "../core/train/train_rng.ts";
import { LossRecorder, progressLine, summaryText } from "../core/train/progress.ts";
import { estimateTrainingMemory, memoryAdvice } from "../core/train/memory_estimate.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData, writePng } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors") ?? "/nonexistent/model.safetensors";

const quietIo: TrainIo = { message: () => {}, remove: async () => {} };

async function argsFor(toml: string, out: string, extra: string[] = []): Promise<TrainArgs> {
  return await parseTrainArgs([
    "--pretrained_model_name_or_path",
    MODEL,
    "--dataset_config",
    toml,
    "--output_dir",
    out,
    "--network_module",
    "networks.lora",
    "--max_train_steps",
    "1",
    ...extra,
  ], { onNote: () => {} });
}

/** Expect a LorakitError whose message matches every pattern, and no output folder. */
async function rejects(run: () => Promise<unknown>, out: string, ...patterns: RegExp[]) {
  let err: unknown = null;
  try {
    await run();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof LorakitError, `expected a LorakitError, got ${err}`);
  for (const p of patterns) assert.match(err.message, p);
  assert.ok(!err.message.includes("\n    at "), "no stack trace in the message");
  await assert.rejects(Deno.stat(out), "nothing written");
}

Deno.test("train_network bad input: one clear message each, nothing written", async () => {
  const d = await makeTrainData();
  const out = `${d.root}/out`;
  // Missing image folder.
  const missing = d.toml.replace("dataset.toml", "missing.toml");
  await Deno.writeTextFile(
    missing,
    (await Deno.readTextFile(d.toml)).replace(d.regDir, `${d.root}/nope`),
  );
  await rejects(
    async () => trainNetwork(planTrainRun(await argsFor(missing, out)), quietIo),
    out,
    /nope: image folder not found/,
  );
  // A caption that is not UTF-8.
  await Deno.writeFile(`${d.trainDir}/a.txt`, new Uint8Array([0x73, 0xff, 0xfe, 0x6b]));
  await rejects(
    async () => trainNetwork(planTrainRun(await argsFor(d.toml, out)), quietIo),
    out,
    /a\.txt: expected UTF-8 text/,
  );
  await Deno.writeTextFile(`${d.trainDir}/a.txt`, "sks toy");
  // A TOML key with a typo.
  const typo = `${d.root}/typo.toml`;
  await Deno.writeTextFile(
    typo,
    (await Deno.readTextFile(d.toml)).replace("num_repeats = 1", "num_repeat = 1"),
  );
  await rejects(
    async () => trainNetwork(planTrainRun(await argsFor(typo, out)), quietIo),
    out,
    /typo\.toml/,
    /num_repeat/,
    /did you mean "num_repeats"/,
  );
  // A resolution not divisible by 64.
  const odd = `${d.root}/odd.toml`;
  await Deno.writeTextFile(
    odd,
    (await Deno.readTextFile(d.toml)).replace("resolution = [128, 64]", "resolution = [96, 96]")
      .replace("min_bucket_reso = 64", "min_bucket_reso = 64\nbucket_reso_steps = 64"),
  );
  await rejects(
    async () => trainNetwork(planTrainRun(await argsFor(odd, out)), quietIo),
    out,
    /odd\.toml: datasets\[0\]\.resolution/,
    /divisible by 64/,
    /96x96/,
  );
  // --network_dim 0.
  await rejects(() => argsFor(d.toml, out, ["--network_dim", "0"]), out, /--network_dim/, /0/);
  // An unknown optimizer.
  if (fixture("sd1-tiny/model.safetensors")) {
    await initGpu();
    await rejects(
      async () =>
        trainNetwork(
          planTrainRun(await argsFor(d.toml, out, ["--optimizer_type", "AdamQ"])),
          quietIo,
        ),
      out,
      /--optimizer_type AdamQ: unknown optimizer/,
      /AdamW, AdamW8bit, Lion, SGDNesterov, Adafactor/,
    );
    // Options the optimizer itself refuses (after the model is loaded) are user errors too.
    await rejects(
      async () =>
        trainNetwork(
          planTrainRun(
            await argsFor(d.toml, out, [
              "--optimizer_type",
              "SGDNesterov",
              "--optimizer_args",
              "momentum=0",
            ]),
          ),
          quietIo,
        ),
      out,
      /--optimizer_args: SGDNesterov: Nesterov momentum requires momentum > 0/,
    );
  }
  // Not implemented features are errors naming the flag.
  await rejects(
    async () =>
      trainNetwork(planTrainRun(await argsFor(d.toml, out, ["--loss_type", "huber"])), quietIo),
    out,
    /--loss_type/,
  );
  await Deno.remove(d.root, { recursive: true });
});

Deno.test("images that fail to decode are found before training, listed once, not counted", async () => {
  await initGpu();
  const d = await makeTrainData();
  // A PNG whose header is fine but whose pixel data is garbage.
  const bytes = await Deno.readFile(`${d.trainDir}/b.png`);
  bytes.fill(0x5a, 60, bytes.length - 12);
  await Deno.writeFile(`${d.trainDir}/b.png`, bytes);
  // And a file with an image extension that is no image at all.
  await Deno.writeTextFile(`${d.trainDir}/c.png`, "not an image");
  const args = await argsFor(d.toml, `${d.root}/out`);
  const data = await prepareData(planTrainRun(args).data);
  assert.deepEqual(
    data.skipped.map((s) => s.path).sort(),
    [`${d.trainDir}/b.png`, `${d.trainDir}/c.png`],
  );
  assert.match(data.skipped.find((s) => s.path.endsWith("b.png"))!.reason, /b\.png: corrupt/);
  const summary = data.messages.filter((m) => m.startsWith("left out "));
  assert.equal(summary.length, 1, data.messages.join("\n"));
  assert.match(summary[0], /^left out 2 of 4 images that cannot be used/);
  assert.match(summary[0], /\n {2}.*b\.png: /);
  assert.match(summary[0], /\n {2}.*c\.png: /);
  // The counts and buckets hold only the two good images.
  assert.equal(data.datasets[0].scan.images.length, 2);
  const inBuckets = data.datasets[0].buckets.manager.buckets.flat();
  assert.ok(inBuckets.every((k) => !k.endsWith("b.png") && !k.endsWith("c.png")));
  const vae = stubVae();
  const r = await cacheLatents(vae, data, {
    seed: 1,
    vaeBatchSize: 2,
    toDisk: false,
    skipCheck: false,
    vaeId: "stub",
  });
  assert.deepEqual(r.failed, []);
  assert.equal(r.computed, 2);
  await Deno.remove(d.root, { recursive: true });
});

function stubVae() {
  return {
    dtype: "f32" as const,
    calls: 0,
    encode(images: Tensor) {
      this.calls++;
      const [n, , h, w] = images.shape;
      return {
        mean: Tensor.zeros([n, 4, h / 8, w / 8]),
        logvar: Tensor.full([n, 4, h / 8, w / 8], -4),
      };
    },
  };
}

Deno.test("latent disk cache: reused only while image, bucket and flip are unchanged", async () => {
  await initGpu();
  const d = await makeTrainData();
  const opts = { seed: 3, vaeBatchSize: 1, toDisk: true, skipCheck: false, vaeId: "stub" };
  const run = async (toml = d.toml) => {
    const data = await prepareData(planTrainRun(await argsFor(toml, `${d.root}/out`)).data);
    return await cacheLatents(stubVae(), data, opts);
  };
  const first = await run();
  assert.deepEqual([first.computed, first.reused], [3, 0]);
  await Deno.stat(latentCachePath(`${d.trainDir}/a.png`));
  const second = await run();
  assert.deepEqual([second.computed, second.reused], [0, 3]);
  for (const [k, v] of first.cache) assert.deepEqual(second.cache.get(k)!.latents, v.latents);
  // A changed image is recomputed, the others are reused.
  await writePng(`${d.trainDir}/a.png`, 64, 64, 9);
  const third = await run();
  assert.deepEqual([third.computed, third.reused], [1, 2]);
  // A new resolution changes the buckets: the bucket-changed images are recomputed.
  const big = `${d.root}/big.toml`;
  await Deno.writeTextFile(
    big,
    (await Deno.readTextFile(d.toml)).replace("resolution = [128, 64]", "resolution = [128, 128]"),
  );
  const fourth = await run(big);
  assert.ok(fourth.computed >= 1, `computed ${fourth.computed}`);
  // flip_aug on: every file lacks the flipped latents, so all are recomputed.
  const flip = `${d.root}/flip.toml`;
  await Deno.writeTextFile(
    flip,
    (await Deno.readTextFile(d.toml)).replace("[general]", "[general]\nflip_aug = true"),
  );
  const fifth = await run(flip);
  assert.deepEqual([fifth.computed, fifth.reused], [3, 0]);
  assert.ok([...fifth.cache.values()].every((c) => c.flipped !== null));
  await Deno.remove(d.root, { recursive: true });
});

Deno.test("block lr weights reach the optimizer groups as parameterLearningRates gives them", async () => {
  const model = fixture("sd1-tiny/model.safetensors");
  if (!model) return;
  await initGpu();
  const d = await makeTrainData();
  const netArgs = [
    "down_lr_weight=sine+.5",
    "mid_lr_weight=2.0",
    "up_lr_weight=0,1,1,1,1,1,1,1,1,1,1,1",
    "loraplus_lr_ratio=4",
  ];
  const args = await argsFor(d.toml, `${d.root}/out`, [
    "--network_dim",
    "4",
    "--unet_lr",
    "1e-3",
    "--text_encoder_lr",
    "5e-5",
    "--network_args",
    ...netArgs,
  ]);
  const plan = planTrainRun(args);
  const m = await loadSessionModel(plan, () => {});
  const s = await setupNetwork(m, plan, 1, () => {});
  const parsed = parseNetworkArgs(netArgs);
  const want = parameterLearningRates(s.net.modules.map((x) => x.spec), {
    textEncoderLr: 5e-5,
    unetLr: 1e-3,
    learningRate: args.learning_rate,
    blockLrWeight: networkOptions(parsed).blockLrWeight,
    loraplusLrRatio: 4,
  });
  const got = new Map<string, number>();
  for (const g of s.optimizer.groups) {
    for (const p of g.params) got.set(s.groups.names.get(p)!, g.lr);
  }
  let checked = 0;
  for (const [name, lr] of want) {
    if (lr === null) assert.ok(!got.has(name), `${name} is frozen`);
    else {
      assert.equal(got.get(name), lr, name);
      checked++;
    }
  }
  assert.ok(checked > 0 && new Set(got.values()).size >= 4, "several distinct group lrs");
  s.dispose();
  m.dispose();
  await Deno.remove(d.root, { recursive: true });
});

Deno.test("data order and random streams are reproducible", async () => {
  const d = await makeTrainData();
  const args = await argsFor(d.toml, `${d.root}/out`, ["--seed", "5"]);
  const order = async () => {
    const data = await prepareData(planTrainRun(args).data);
    return [1, 2, 3].map((e) => planEpoch(data, 5, e).map((b) => b.keys.join("|")));
  };
  assert.deepEqual(await order(), await order());
  assert.equal(mixSeed(1, 2, 3), mixSeed(1, 2, 3));
  assert.notEqual(mixSeed(1, 2, 3), mixSeed(1, 3, 2));
  await Deno.remove(d.root, { recursive: true });
});

Deno.test("progress, loss recorder, summary and memory estimate", () => {
  const r = new LossRecorder();
  r.add(0, 0, 1);
  r.add(0, 1, 3);
  r.add(1, 0, 5);
  assert.equal(r.average, 4);
  const line = progressLine({
    step: 5,
    totalSteps: 10,
    epoch: 1,
    totalEpochs: 2,
    loss: 0.1234,
    averageLoss: 0.2,
    lr: 1e-4,
    elapsed: 10,
    stepsTimed: 5,
    liveBytes: 3 << 20,
    peakBytes: 5 << 20,
  });
  assert.match(line, /5\/10 epoch 1\/2 loss 0\.1234 avg 0\.2000 lr 1\.00e-4 2\.00 s\/it ETA 0:10/);
  assert.match(line, /gpu 3\.0 MiB \(peak 5\.0 MiB\)/);
  assert.match(
    summaryText({
      seconds: 61,
      steps: 9,
      epochs: 3,
      finalLoss: 0.5,
      averageLoss: 0.6,
      skippedSteps: 0,
      peakBytes: 1 << 20,
      files: ["x.safetensors"],
    }),
    /1:01: 9 steps, 3 epochs[\s\S]*x\.safetensors/,
  );
  const config = {
    unet: {
      blockOutChannels: [320, 640, 1280, 1280],
      layersPerBlock: 2,
      downBlockTypes: [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
      ],
    },
    textEncoder: { numLayers: 12, hiddenSize: 768 },
    vae: { blockOutChannels: [128, 256, 512, 512] },
  } as unknown as Parameters<typeof estimateTrainingMemory>[0]["config"];
  const base = {
    config,
    weightBytes: 2e9,
    loraElements: 3e6,
    loraBytesPerElement: 4,
    optimizerStateFactor: 2,
    activationBytes: 2,
    batchSize: 1,
    maxBucket: [512, 512] as [number, number],
    tokens: 77,
    cacheLatents: true,
    vaeBatchSize: 1,
    gradientCheckpointing: false,
    trainTextEncoder: true,
  };
  const e = estimateTrainingMemory(base);
  const ck = estimateTrainingMemory({ ...base, gradientCheckpointing: true });
  assert.ok(ck.activations < e.activations / 2, "checkpointing keeps far fewer activations");
  assert.ok(e.total > 2e9 && e.total < 8e9, `SD1 512px fp16 estimate ${e.total}`);
  const limits = { maxBufferSize: 2 ** 31, maxStorageBufferBindingSize: 2 ** 27 };
  const big = estimateTrainingMemory({ ...base, maxBucket: [2048, 2048], batchSize: 4 });
  assert.match(
    memoryAdvice(big, limits, { batchSize: 4, maxBucket: [2048, 2048], cacheLatents: true })!,
    /train_batch_size/,
  );
  assert.equal(
    memoryAdvice(e, limits, { batchSize: 1, maxBucket: [512, 512], cacheLatents: true }),
    null,
  );
});
