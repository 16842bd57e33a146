/**
 * train_network end to end on sd1-tiny: a kohya dataset TOML with a regularization subset and two
 * aspect-ratio buckets, latents cached to disk, 3 epochs with epoch saves and states; the saved
 * files load and carry kohya's keys and metadata; the LoRA lowers the loss on a fixed batch;
 * `--resume` from the epoch-1 state reproduces the uninterrupted run's losses; fp16 with block
 * dims and block lr weights, and DyLoRA, train; a kill -9 during a save leaves the old file intact.
 */
import assert from "node:assert/strict";
import { initGpu, noGrad, rt, scope, Tensor } from "../gpu/mod.ts";
import { getGpu } from "../gpu/device.ts";
import { openLoraFile } from "../core/lora/lora_file.ts";
import { createNetworkFromWeights } from "../core/lora/network.ts";
import { loadStableDiffusion } from "../core/models/mod.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { DdpmSchedule } from "../core/train/noise_schedule.ts";
import { sdStepModel, trainStepForward } from "../core/train/step.ts";
import { type TrainIo, trainNetwork, type TrainResult } from "../core/train/loop.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { latentCachePath } from "../core/train/latent_cache.ts";
import { GaussianGenerator } from "../core/sample/noise.ts";
import { windowIds } from "../core/text/token_windows.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");

/** Run trainNetwork in-process with a recording io. */
async function train(
  argv: string[],
): Promise<{ result: TrainResult; messages: string[]; logs: string[] }> {
  const messages: string[] = [], logs: string[] = [];
  const io: TrainIo = {
    message: (m) => messages.push(m),
    log: (l) => logs.push(l),
    remove: (p) => Deno.remove(p, { recursive: true }).catch(() => {}),
  };
  const args = await parseTrainArgs(argv, { onNote: (n) => messages.push(n) });
  const result = await trainNetwork(planTrainRun(args), io);
  return { result, messages, logs };
}

function baseArgs(model: string, toml: string, out: string): string[] {
  return [
    "--pretrained_model_name_or_path",
    model,
    "--dataset_config",
    toml,
    "--output_dir",
    out,
    "--output_name",
    "t",
    "--network_module",
    "networks.lora",
    "--network_dim",
    "4",
    "--network_alpha",
    "4",
    "--learning_rate",
    "1e-2",
    "--seed",
    "42",
  ];
}

/** Loss of the model (with or without a LoRA file) on a fixed batch of the cached latents. */
async function fixedBatchLoss(model: string, latentFiles: string[], lora: string | null) {
  const sd = await loadStableDiffusion(model);
  const net = lora ? await createNetworkFromWeights(1, lora, sd) : null;
  net?.applyTo(sd);
  const lat: number[] = [];
  for (const f of latentFiles) {
    const s = await openSafetensors(f);
    lat.push(...(await s.readF32("latents")).data);
    s.close();
  }
  const n = latentFiles.length;
  const noise = new GaussianGenerator(7).gaussian(lat.length);
  const ids = windowIds(sd.tokenizer, ["sks toy, red, round", "toy", "toy"].slice(0, n));
  const loss = await noGrad(() =>
    scope(() => {
      const out = trainStepForward(sdStepModel(sd), new DdpmSchedule(), {
        latents: Tensor.fromArray(Float32Array.from(lat), [n, 4, 8, 8]),
        noise: Tensor.fromArray(noise, [n, 4, 8, 8]),
        timesteps: [200, 500, 800].slice(0, n),
        inputIds: ids.ids,
        lossWeights: new Array(n).fill(1),
      }, {});
      return out.loss;
    })
  ).item();
  net?.dispose();
  sd.dispose();
  await rt().sync();
  return loss;
}

Deno.test({
  name: "train_network: buckets, reg images, disk cache, epoch saves, metadata, resume",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    await initGpu();
    const d = await makeTrainData();
    const out = `${d.root}/out`;
    const argv = [
      ...baseArgs(MODEL, d.toml, out),
      "--max_train_epochs",
      "3",
      "--cache_latents_to_disk",
      "--save_every_n_epochs",
      "1",
      "--save_state",
    ];
    const run1 = await train(argv);
    const losses1 = run1.result.losses;
    assert.equal(losses1.length, 9, "3 epochs of 3 batches (bucket 64x64: 3 keys, 128x64: 1)");
    assert.ok(run1.messages.some((m) => m.includes("3 computed, 0 reused")), run1.messages.join());
    for (const im of ["a", "b"]) await Deno.stat(latentCachePath(`${d.trainDir}/${im}.png`));
    assert.equal(run1.logs.length, 9);
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.deepEqual(names, [
      "t-000001-state",
      "t-000001.safetensors",
      "t-000002-state",
      "t-000002.safetensors",
      "t-state",
      "t.safetensors",
    ]);
    const sd = await loadStableDiffusion(MODEL);
    for (const f of ["t-000001", "t-000002", "t"]) {
      const path = `${out}/${f}.safetensors`;
      const file = await openLoraFile(path);
      const md = file.metadata;
      assert.equal(md.ss_network_module, "networks.lora");
      assert.equal(md.ss_network_dim, "4");
      assert.equal(md.ss_network_alpha, "4.0");
      assert.equal(md.ss_num_reg_images, "1"); // before balancing, as kohya counts
      assert.equal(md.ss_epoch, f === "t" ? "3" : f.slice(-1));
      assert.match(md.sshs_model_hash, /^[0-9a-f]{64}$/);
      const datasets = JSON.parse(md.ss_datasets);
      assert.equal(datasets[0].subsets.length, 2);
      assert.equal(datasets[0].subsets[1].is_reg, true);
      assert.ok(JSON.parse(md.ss_tag_frequency).img["sks toy"] === 2);
      assert.ok(file.modules.some((m) => m.prefix.startsWith("lora_unet_")));
      assert.ok(file.modules.some((m) => m.prefix.startsWith("lora_te_")));
      file.close();
      const raw = await openSafetensors(path);
      const keys = raw.header.tensors.map((t) => t.name);
      assert.ok(keys.every((k) => /\.(lora_down\.weight|lora_up\.weight|alpha)$/.test(k)));
      raw.close();
      (await createNetworkFromWeights(1, path, sd)).dispose();
    }
    sd.dispose();

    // The LoRA fits the data: lower loss on a fixed batch (fixed noise and timesteps).
    const latentFiles = ["a", "b", "r"].map((s) =>
      latentCachePath(`${s === "r" ? d.regDir : d.trainDir}/${s}.png`)
    ).filter((_, i) => i !== 1); // 64x64 ones
    const before = await fixedBatchLoss(MODEL, latentFiles, null);
    const after = await fixedBatchLoss(MODEL, latentFiles, `${out}/t.safetensors`);
    assert.ok(after < before * 0.97, `fixed-batch loss ${before} -> ${after}`);

    // Resume from the epoch-1 state: the same per-step losses as the uninterrupted run.
    const out2 = `${d.root}/out2`;
    const argv2 = argv.map((a) => (a === out ? out2 : a));
    const run2 = await train([...argv2, "--resume", `${out}/t-000001-state`]);
    assert.ok(run2.messages.some((m) => m.includes("0 computed, 3 reused")), run2.messages.join());
    assert.deepEqual(run2.result.losses.map((l) => l.step), [4, 5, 6, 7, 8, 9]);
    for (const [i, l] of run2.result.losses.entries()) {
      const want = losses1[i + 3].loss;
      assert.ok(Math.abs(l.loss - want) <= 1e-6, `step ${l.step}: ${l.loss} vs ${want}`);
    }
    await Deno.remove(d.root, { recursive: true });
  },
});

Deno.test({
  name: "train_network: fp16 with block dims and block lr weights, DyLoRA",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    await initGpu();
    const d = await makeTrainData();
    const fp16 = (await getGpu()).hasF16;
    const blocks = Array.from({ length: 25 }, (_, i) => String(2 + (i % 3) * 2)).join(",");
    const a = await train([
      ...baseArgs(MODEL, d.toml, `${d.root}/blk`),
      "--max_train_steps",
      "2",
      "--cache_latents",
      ...(fp16 ? ["--mixed_precision", "fp16"] : []),
      "--network_args",
      `block_dims=${blocks}`,
      `block_alphas=${blocks}`,
      "down_lr_weight=sine+.5",
      "mid_lr_weight=2.0",
    ]);
    assert.equal(a.result.losses.length, 2);
    assert.ok(a.result.losses.every((l) => Number.isFinite(l.loss)));
    const f = await openLoraFile(`${d.root}/blk/t.safetensors`);
    assert.ok(new Set(f.modules.map((m) => m.rank)).size >= 2, "several block dims");
    assert.match(f.metadata.ss_network_args, /block_dims/);
    assert.equal(f.metadata.ss_mixed_precision, fp16 ? "fp16" : "no");
    f.close();

    const b = await train([
      ...baseArgs(MODEL, d.toml, `${d.root}/dy`).map((x) =>
        x === "networks.lora" ? "networks.dylora" : x
      ),
      "--max_train_steps",
      "2",
      "--cache_latents",
      "--network_args",
      "unit=2",
    ]);
    assert.equal(b.result.losses.length, 2);
    const g = await openLoraFile(`${d.root}/dy/t.safetensors`);
    assert.equal(g.metadata.ss_network_module, "networks.dylora");
    assert.ok(g.modules.every((m) => m.rank === 4));
    g.close();
    await Deno.remove(d.root, { recursive: true });
  },
});

Deno.test({
  name: "train_network: kill -9 during a save leaves the previous file intact",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    const d = await makeTrainData();
    const out = `${d.root}/out`;
    await Deno.mkdir(out);
    const deno = Deno.execPath();
    const cmd = new Deno.Command(deno, {
      args: [
        "run",
        "-A",
        "--no-check",
        new URL("../cli/main.ts", import.meta.url).pathname,
        "train_network",
        ...baseArgs(MODEL, d.toml, out),
        "--max_train_steps",
        "6",
        "--cache_latents",
        "--save_every_n_steps",
        "1",
        "--output_name",
        "k",
      ],
      stdout: "null",
      stderr: "null",
    });
    const child = cmd.spawn();
    const watcher = Deno.watchFs(out);
    let saves = 0;
    let killedDuring: string | null = null;
    for await (const ev of watcher) {
      const tmp = ev.paths.find((p) => p.endsWith(".tmp"));
      if (ev.kind === "create" && tmp) {
        // The first step's file is complete; kill while the second one is being written.
        if (++saves === 2) {
          child.kill("SIGKILL");
          killedDuring = tmp;
          break;
        }
      }
    }
    watcher.close();
    await child.status;
    assert.ok(killedDuring !== null);
    const files = [...Deno.readDirSync(out)].map((e) => e.name);
    const loras = files.filter((n) => n.endsWith(".safetensors"));
    assert.ok(loras.includes("k-step00000001.safetensors"), files.join());
    assert.ok(files.filter((n) => !n.endsWith(".safetensors")).every((n) => n.endsWith(".tmp")));
    await initGpu();
    const sd = await loadStableDiffusion(MODEL);
    for (const n of loras) (await createNetworkFromWeights(1, `${out}/${n}`, sd)).dispose();
    sd.dispose();
    await Deno.remove(d.root, { recursive: true });
  },
});
