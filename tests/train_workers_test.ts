/**
 * `--max_data_loader_n_workers` / `--persistent_data_loader_workers`: batches decoded by the Web
 * Worker pool carry the same pixels, bit for bit, as the main-thread path (random crops and flips
 * included); a corrupt image is reported and skipped with the same message; workers stop after
 * each epoch unless persistent, and always on close; jobs in flight when the pool stops reject;
 * and a training run with workers (ended normally, or by Ctrl-C) leaves no worker behind (the
 * resource and op sanitizers of these tests are on).
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { initGpu } from "../gpu/mod.ts";
import { BatchLoader, type HostBatch, planEpoch } from "../core/train/data_loader.ts";
import { type ImageJob, runImageJob } from "../core/train/image_job.ts";
import { type TrainIo, trainNetwork } from "../core/train/loop.ts";
import { parseTrainArgs, type TrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { prepareData, type PreparedData } from "../core/train/train_setup.ts";
import type { WindowTokenizer } from "../core/text/token_windows.ts";
import { DecodePool } from "../core/train/worker_pool.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData, type TrainData, writePng } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");

/** Captions as character codes: enough for the loader, no tokenizer files needed. */
const tokenizer: WindowTokenizer = {
  bos: 1,
  eos: 2,
  padToken: 0,
  encode: (text) => [...text].map((c) => c.charCodeAt(0) % 1000),
  pad: (ids, length) => [1, ...ids, 2, ...new Array(length).fill(0)].slice(0, length),
};

async function argsFor(d: TrainData, extra: string[] = []): Promise<TrainArgs> {
  return await parseTrainArgs([
    "--pretrained_model_name_or_path",
    MODEL ?? "/nonexistent/model.safetensors",
    "--dataset_config",
    d.toml,
    "--output_dir",
    `${d.root}/out`,
    "--network_module",
    "networks.lora",
    "--seed",
    "7",
    ...extra,
  ], { onNote: () => {} });
}

/** Training data with random crops, flips and images that need resizing. */
async function augmentedData(): Promise<TrainData> {
  const d = await makeTrainData("flip_aug = true\nrandom_crop = true\n");
  await writePng(`${d.trainDir}/c.png`, 90, 70, 4);
  await Deno.writeTextFile(`${d.trainDir}/c.txt`, "sks toy, odd size");
  await writePng(`${d.trainDir}/e.png`, 50, 110, 5);
  await Deno.writeTextFile(`${d.trainDir}/e.txt`, "sks toy, tall");
  return d;
}

function loaderFor(data: PreparedData, workers: number, persistent = false): BatchLoader {
  return new BatchLoader(data, {
    seed: 7,
    tokenizer,
    maxTokenLength: null,
    resizeInterpolation: null,
    cache: null,
    workers,
    persistentWorkers: persistent,
  });
}

/** Every batch of `epochs` epochs, loaded by `loader`, the next one requested before each wait. */
async function loadAll(data: PreparedData, loader: BatchLoader, epochs: number) {
  const out: HostBatch[] = [];
  for (let epoch = 1; epoch <= epochs; epoch++) {
    const plan = planEpoch(data, 7, epoch);
    const ctx = (bi: number) => ({
      epoch,
      step: bi,
      maxTrainSteps: 100,
      micro: (epoch - 1) * plan.length + bi,
    });
    const loads = plan.map((p, bi) => loader.load(p, ctx(bi)));
    for (const l of loads) out.push(await l);
    loader.endEpoch();
  }
  return out;
}

Deno.test("workers give the main thread's batches, bit for bit", async () => {
  const d = await augmentedData();
  const args = await argsFor(d);
  const inProcess = loaderFor(await prepareData(planTrainRun(args).data), 0);
  const pooled = loaderFor(await prepareData(planTrainRun(args).data), 8);
  try {
    assert.equal(inProcess.workerCount, 0);
    assert.equal(pooled.workerCount, Math.min(8, navigator.hardwareConcurrency, 5));
    assert.ok(pooled.workerCount >= 1);
    const a = await loadAll(await prepareData(planTrainRun(args).data), inProcess, 3);
    const b = await loadAll(await prepareData(planTrainRun(args).data), pooled, 3);
    assert.equal(a.length, b.length);
    assert.ok(a.some((x) => x.images!.length > 0));
    for (let i = 0; i < a.length; i++) {
      assert.deepEqual(b[i].keys, a[i].keys);
      assert.deepEqual(b[i].captions, a[i].captions);
      assert.deepEqual(b[i].failed, []);
      assert.deepEqual(b[i].images, a[i].images, `batch ${i}: identical pixels`);
    }
  } finally {
    inProcess.close();
    pooled.close();
    await Deno.remove(d.root, { recursive: true });
  }
});

Deno.test("a pool of several workers returns each job's own pixels, in order", async () => {
  const d = await augmentedData();
  const pool = new DecodePool(3);
  try {
    const jobs: ImageJob[] = [];
    for (const [name, bucket] of [["a", [64, 64]], ["b", [64, 64]], ["c", [64, 64]]] as const) {
      const path = `${d.trainDir}/${name}.png`;
      for (let k = 0; k < 3; k++) {
        jobs.push({
          path,
          resized: name === "b" ? [128, 64] : name === "c" ? [82, 64] : [64, 64],
          bucket: [bucket[0], bucket[1]],
          interpolation: k === 2 ? "cubic" : null,
          cropStream: k > 0 ? [7, k, 0, 1] : null,
          flip: k === 1,
        });
      }
    }
    const pooled = await Promise.all(jobs.map((j) => pool.run(j)));
    for (const [i, j] of jobs.entries()) {
      assert.deepEqual(pooled[i], await runImageJob(j), `job ${i}`);
    }
  } finally {
    pool.terminate();
    await Deno.remove(d.root, { recursive: true });
  }
});

Deno.test("an image that goes bad after the scan is reported and skipped as in-process", async () => {
  const d = await makeTrainData();
  const args = await argsFor(d);
  // The scan decodes every image, so the file is damaged after it (replaced mid-run).
  const [dataA, dataB, planA, planB] = [
    await prepareData(planTrainRun(args).data),
    await prepareData(planTrainRun(args).data),
    await prepareData(planTrainRun(args).data),
    await prepareData(planTrainRun(args).data),
  ];
  const bytes = await Deno.readFile(`${d.trainDir}/b.png`);
  bytes.fill(0x5a, 60, bytes.length - 12);
  await Deno.writeFile(`${d.trainDir}/b.png`, bytes);
  const inProcess = loaderFor(dataA, 0);
  const pooled = loaderFor(dataB, 2);
  try {
    const a = await loadAll(planA, inProcess, 1);
    const b = await loadAll(planB, pooled, 1);
    const failed = b.flatMap((x) => x.failed);
    assert.deepEqual(failed.map((f) => f.key), [`${d.trainDir}/b.png`]);
    assert.match(failed[0].reason, /b\.png/);
    assert.deepEqual(failed, a.flatMap((x) => x.failed));
    assert.deepEqual(b.map((x) => x.images), a.map((x) => x.images));
    // A job on a missing file rejects with the LorakitError naming it.
    const pool = new DecodePool(1);
    try {
      await assert.rejects(
        () =>
          pool.run({
            path: `${d.root}/gone.png`,
            resized: [64, 64],
            bucket: [64, 64],
            interpolation: null,
            cropStream: null,
            flip: false,
          }),
        (e) => e instanceof LorakitError && /gone\.png: file not found/.test(e.message),
      );
    } finally {
      pool.terminate();
    }
  } finally {
    inProcess.close();
    pooled.close();
    await Deno.remove(d.root, { recursive: true });
  }
});

Deno.test("workers stop each epoch unless persistent, always on close", async () => {
  const d = await makeTrainData();
  const args = await argsFor(d);
  const data = await prepareData(planTrainRun(args).data);
  const plan = planEpoch(data, 7, 1);
  const ctx = { epoch: 1, step: 0, maxTrainSteps: 10, micro: 0 };
  for (const persistent of [false, true]) {
    const loader = loaderFor(data, 2, persistent);
    try {
      assert.equal(loader.workersRunning, false, "started on the first load");
      await loader.load(plan[0], ctx);
      assert.equal(loader.workersRunning, true);
      loader.endEpoch();
      assert.equal(loader.workersRunning, persistent);
      await loader.load(plan[0], ctx);
      assert.equal(loader.workersRunning, true, "restarted by the next epoch's load");
    } finally {
      loader.close();
    }
    assert.equal(loader.workersRunning, false);
  }
  // Jobs in flight when the pool stops reject; a stopped pool takes no more jobs.
  const pool = new DecodePool(2);
  const job: ImageJob = {
    path: `${d.trainDir}/b.png`,
    resized: [128, 64],
    bucket: [64, 64],
    interpolation: null,
    cropStream: null,
    flip: false,
  };
  const inFlight = [pool.run(job), pool.run(job)];
  pool.terminate();
  for (const p of inFlight) await assert.rejects(p, /data loader workers were stopped/);
  await assert.rejects(pool.run(job), /already stopped/);
  await Deno.remove(d.root, { recursive: true });
});

Deno.test({
  name: "training with workers (per epoch, persistent, interrupted) leaves none running",
  ignore: MODEL === null,
  async fn() {
    await initGpu();
    const d = await makeTrainData();
    try {
      const base = ["--max_train_epochs", "2", "--max_data_loader_n_workers", "2"];
      const io: TrainIo = { message: () => {}, remove: async () => {} };
      const r1 = await trainNetwork(planTrainRun(await argsFor(d, base)), io);
      assert.equal(r1.interrupted, false);
      assert.ok(r1.losses.length >= 2 && r1.losses.every((l) => Number.isFinite(l.loss)));
      const r2 = await trainNetwork(
        planTrainRun(await argsFor(d, [...base, "--persistent_data_loader_workers"])),
        {
          ...io,
          interrupted: () => true,
        },
      );
      assert.equal(r2.interrupted, true);
      assert.equal(r2.losses.length, 1, "stopped after the first step");
      assert.equal(r2.losses[0].loss, r1.losses[0].loss, "the same first step");
    } finally {
      await Deno.remove(d.root, { recursive: true });
    }
  },
});
