/**
 * TensorBoard event files: read back with tests/tfevents_reader.ts (its own CRC32C, TFRecord
 * framing and protocol buffer decoding), kohya's tag names for each lr setup, and a short
 * train_network run with --logging_dir whose event file lies in kohya's folder and holds the
 * steps and values the run logged.
 */
import assert from "node:assert/strict";
import { initGpu } from "../gpu/mod.ts";
import { main as trainNetworkCli } from "../cli/train_network.ts";
import { EventFileWriter } from "../cli/tensorboard_log.ts";
import { tensorboardFolder } from "../core/train/tensorboard.ts";
import { epochScalars, kohyaLrGroups, stepScalars } from "../core/train/step_logs.ts";
import { parameterLearningRates } from "../core/lora/block_lr.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { checkTrainSupport } from "../core/kohya/train_support.ts";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import type { NetworkModuleName } from "../core/lora/modules.ts";
import type { LoraModuleSpec } from "../core/lora/modules.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData } from "./train_fixture_data.ts";
import {
  crc32cBitwise,
  type DecodedEvent,
  readEventFile,
  readRecords,
  scalarsOf,
} from "./tfevents_reader.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");
const NAME = /^events\.out\.tfevents\.(\d{10})\.(.+)\.(\d+)\.(\d+)$/;

Deno.test("tensorboard reader: CRC32C check values (RFC 3720 and the '123456789' check)", () => {
  const enc = new TextEncoder();
  assert.equal(crc32cBitwise(enc.encode("123456789")), 0xe3069283);
  assert.equal(crc32cBitwise(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32cBitwise(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32cBitwise(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
});

function only(dir: string): string {
  const names = [...Deno.readDirSync(dir)].map((e) => e.name);
  assert.equal(names.length, 1, names.join(", "));
  return names[0];
}

Deno.test("tensorboard: an event file reads back with its file version, tags, steps and values", async () => {
  const root = await Deno.makeTempDir({ prefix: "lorakit_tb_" });
  try {
    const dir = tensorboardFolder(`${root}/logs`, "p-", "20240102030405", null);
    assert.equal(dir, `${root}/logs/p-20240102030405/network_train`);
    const t0 = Date.now() / 1000;
    const w = EventFileWriter.open(dir);
    w.addScalars(1, { "loss/current": 0.123456789, "lr/unet plus": 1e-4 });
    w.addScalars(0, { "loss/average": -2.5 });
    w.addScalars(3_000_000_000, { "lr/unet_block4": 1 / 3 }, 1234.5);
    w.close();
    const t1 = Date.now() / 1000;
    const name = only(dir);
    const m = name.match(NAME);
    assert.ok(m, name);
    assert.ok(Math.abs(Number(m[1]) - t0) <= 1);
    assert.equal(m[2], Deno.hostname());
    assert.equal(Number(m[3]), Deno.pid);
    assert.equal(w.path, `${dir}/${name}`);
    const { events, truncated } = await readEventFile(w.path);
    assert.equal(truncated, false);
    assert.equal(events.length, 5);
    assert.equal(events[0].fileVersion, "brain.Event:2");
    assert.equal(events[0].values, null);
    assert.ok(events[0].wallTime >= t0 - 0.01 && events[0].wallTime <= t1 + 0.01);
    for (const e of events.slice(1, 4)) {
      assert.ok(e.wallTime >= t0 - 0.01 && e.wallTime <= t1 + 0.01);
      assert.equal(e.fileVersion, null);
      assert.equal(e.values?.length, 1);
    }
    assert.equal(events[4].wallTime, 1234.5);
    assert.deepEqual(scalarsOf(events), [
      { step: 1, tag: "loss/current", value: Math.fround(0.123456789) },
      { step: 1, tag: "lr/unet plus", value: Math.fround(1e-4) },
      { step: 0, tag: "loss/average", value: -2.5 },
      { step: 3_000_000_000, tag: "lr/unet_block4", value: Math.fround(1 / 3) },
    ]);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("tensorboard: a file cut short keeps every complete record; a flipped bit is caught", async () => {
  const root = await Deno.makeTempDir({ prefix: "lorakit_tb_" });
  try {
    const w = EventFileWriter.open(root);
    w.addScalars(1, { "loss/current": 1 });
    w.addScalars(2, { "loss/current": 2 });
    w.close();
    const bytes = await Deno.readFile(w.path);
    const whole = readRecords(bytes);
    assert.equal(whole.records.length, 3);
    const lastStart = bytes.length - (whole.records[2].length + 16);
    for (let cut = lastStart + 1; cut < bytes.length; cut++) {
      const r = readRecords(bytes.subarray(0, cut));
      assert.equal(r.truncated, true, `cut at ${cut}`);
      assert.equal(r.records.length, 2, `cut at ${cut}`);
    }
    for (const at of [3, 9, lastStart + 14, bytes.length - 2]) {
      const bad = bytes.slice();
      bad[at] ^= 0x10;
      assert.throws(() => readRecords(bad), /CRC does not match/, `bit flipped at ${at}`);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** Module specs with only what the lr grouping reads. */
function specs(parts: [LoraModuleSpec["part"], number][]): LoraModuleSpec[] {
  return parts.map(([part, block], i) => ({ prefix: `m${i}`, part, block }) as LoraModuleSpec);
}

const LR_ARGS = {
  learning_rate: 1e-3,
  unet_lr: null as number | null,
  text_encoder_lr: null as number[] | null,
  network_args: null as string[] | null,
  network_module: "networks.lora",
};

/** kohya's groups for lr flags given as kohya names them. */
function lrGroupsFor(modules: LoraModuleSpec[], a: typeof LR_ARGS) {
  const module = a.network_module as NetworkModuleName;
  return kohyaLrGroups(modules, { module, args: parseNetworkArgs(a.network_args ?? [], module) }, {
    learningRate: a.learning_rate,
    unetLr: a.unet_lr,
    textEncoderLr: a.text_encoder_lr?.[0] ?? null,
  });
}

Deno.test("tensorboard tags: kohya's names for networks.lora lr setups", () => {
  const both = specs([["text_encoder", -1], ["unet", 4], ["unet", 13]]);
  const tags = (groups: ReturnType<typeof kohyaLrGroups>, unetOnly = false) =>
    stepScalars(groups, { loss: 0.5, averageLoss: 0.25, lrScale: 0.5, unetOnly });
  assert.deepEqual(tags(lrGroupsFor(both, { ...LR_ARGS, unet_lr: 2e-3 })), {
    "loss/current": 0.5,
    "loss/average": 0.25,
    "lr/textencoder": 0.5e-3,
    "lr/unet": 1e-3,
  });
  // Only the U-Net trained: no text encoder modules, no text encoder group.
  assert.deepEqual(
    Object.keys(tags(lrGroupsFor(specs([["unet", 4]]), LR_ARGS), true)),
    ["loss/current", "loss/average", "lr/unet"],
  );
  // A text encoder lr of 0 drops its group.
  assert.deepEqual(
    Object.keys(tags(lrGroupsFor(both, { ...LR_ARGS, text_encoder_lr: [0] }))),
    ["loss/current", "loss/average", "lr/unet"],
  );
  // LoRA+: a " plus" group after each, at lr * ratio.
  assert.deepEqual(
    tags(lrGroupsFor(both, {
      ...LR_ARGS,
      network_args: ["loraplus_lr_ratio=4", "loraplus_unet_lr_ratio=8"],
    })),
    {
      "loss/current": 0.5,
      "loss/average": 0.25,
      "lr/textencoder": 0.5e-3,
      "lr/textencoder plus": 2e-3,
      "lr/unet": 0.5e-3,
      "lr/unet plus": 4e-3,
    },
  );
  // Block lr weights: one group per block, in the order blocks first appear; weight w[block].
  const blocks = specs([["unet", 4], ["unet", 12], ["unet", 4], ["unet", 15]]);
  const args = {
    ...LR_ARGS,
    network_args: ["down_lr_weight=1,1,1,1,0.25", "mid_lr_weight=0.5", "up_lr_weight=1,1,2"],
  };
  const groups = lrGroupsFor(blocks, args);
  assert.deepEqual(groups, [
    { description: "unet_block4", lr: 0.25e-3 },
    { description: "unet_block12", lr: 0.5e-3 },
    { description: "unet_block15", lr: 2e-3 },
  ]);
  // The same lrs as the optimizer gives those modules.
  const perParam = parameterLearningRates(blocks, {
    learningRate: 1e-3,
    blockLrWeight: [...Array(25)].map((_, b) => ({ 4: 0.25, 12: 0.5, 15: 2 })[b] ?? 1),
  });
  assert.equal(perParam.get("m0.lora_down.weight"), groups[0].lr);
  assert.equal(perParam.get("m1.lora_down.weight"), groups[1].lr);
  assert.equal(perParam.get("m3.lora_down.weight"), groups[2].lr);
  // --scale_weight_norms figures come between the losses and the lrs.
  assert.deepEqual(
    Object.keys(stepScalars(groups.slice(0, 1), {
      loss: 1,
      averageLoss: 1,
      lrScale: 1,
      unetOnly: true,
      norms: { keysScaled: 3, meanNorm: 0.5, maxNorm: 1 },
    })),
    [
      "loss/current",
      "loss/average",
      "max_norm/keys_scaled",
      "max_norm/max_key_norm",
      "norm/avg_key_norm",
      "lr/unet_block4",
    ],
  );
  assert.deepEqual(epochScalars(0.75), { "loss/epoch_average": 0.75 });
});

Deno.test("tensorboard tags: networks.dylora gets kohya's fallback names", () => {
  const dylora = { ...LR_ARGS, network_module: "networks.dylora", unet_lr: 2e-3 };
  const both = specs([["text_encoder", -1], ["unet", 4]]);
  const lrs = (groups: ReturnType<typeof kohyaLrGroups>, unetOnly: boolean) =>
    Object.entries(stepScalars(groups, { loss: 0, averageLoss: 0, lrScale: 1, unetOnly }))
      .filter(([k]) => k.startsWith("lr/"));
  // Two groups with the text encoder: both are named "unet"; the U-Net's lr is what remains.
  assert.deepEqual(lrs(lrGroupsFor(both, dylora), false), [["lr/unet", 2e-3]]);
  assert.deepEqual(lrs(lrGroupsFor(specs([["unet", 4]]), dylora), true), [["lr/unet", 2e-3]]);
  // More than two: group<i>, counted from 1 when the text encoder is trained.
  const plus = { ...dylora, network_args: ["loraplus_lr_ratio=2"] };
  assert.deepEqual(lrs(lrGroupsFor(both, plus), false), [
    ["lr/group1", 1e-3],
    ["lr/group2", 2e-3],
    ["lr/group3", 2e-3],
    ["lr/group4", 4e-3],
  ]);
});

/** The flags every run here shares. */
function common(toml: string, out: string): string[] {
  return [
    "--pretrained_model_name_or_path",
    MODEL!,
    "--dataset_config",
    toml,
    "--output_dir",
    out,
    "--network_module",
    "networks.lora",
    "--network_dim",
    "4",
    "--learning_rate",
    "1e-2",
    "--cache_latents",
    "--max_data_loader_n_workers",
    "0",
    "--seed",
    "7",
  ];
}

/** The events of one run, grouped as (step, tag) -> value. */
function byTag(events: DecodedEvent[]): Map<string, Map<number, number>> {
  const out = new Map<string, Map<number, number>>();
  for (const s of scalarsOf(events)) {
    if (!out.has(s.tag)) out.set(s.tag, new Map());
    assert.ok(!out.get(s.tag)!.has(s.step), `${s.tag} logged twice at step ${s.step}`);
    out.get(s.tag)!.set(s.step, s.value);
  }
  return out;
}

Deno.test({
  name: "train_network --logging_dir: an event file in kohya's folder with the run's scalars",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    await initGpu();
    const d = await makeTrainData();
    const logs = `${d.root}/logs`;
    // 3 batches per epoch: epoch 1 ends normally, the step limit ends epoch 2 early.
    const steps = 4;
    try {
      const t0 = Date.now() / 1000;
      const code = await trainNetworkCli([
        ...common(d.toml, `${d.root}/out`),
        "--unet_lr",
        "1e-2",
        "--text_encoder_lr",
        "5e-3",
        "--lr_scheduler",
        "linear",
        "--max_train_steps",
        String(steps),
        "--logging_dir",
        logs,
        "--log_prefix",
        "run-",
      ]);
      const t1 = Date.now() / 1000;
      assert.equal(code, 0);
      // kohya's layout: <logging_dir>/<log_prefix><time>/network_train/events.out.tfevents.*,
      // beside the JSONL log <logging_dir>/<log_prefix><time>.jsonl with the same time.
      const entries = [...Deno.readDirSync(logs)].map((e) => e.name).sort();
      assert.equal(entries.length, 2, entries.join(", "));
      const [folder, jsonl] = entries;
      assert.match(folder, /^run-\d{14}$/);
      assert.equal(jsonl, `${folder}.jsonl`);
      assert.deepEqual([...Deno.readDirSync(`${logs}/${folder}`)].map((e) => e.name), [
        "network_train",
      ]);
      const name = only(`${logs}/${folder}/network_train`);
      const m = name.match(NAME);
      assert.ok(m, name);
      assert.ok(Number(m[1]) >= Math.floor(t0) && Number(m[1]) <= t1, name);
      assert.equal(Number(m[3]), Deno.pid);

      const { events, truncated } = await readEventFile(`${logs}/${folder}/network_train/${name}`);
      assert.equal(truncated, false);
      assert.equal(events[0].fileVersion, "brain.Event:2");
      for (let i = 1; i < events.length; i++) {
        assert.ok(events[i].wallTime >= events[i - 1].wallTime, `wall time of event ${i}`);
        assert.ok(events[i].wallTime >= t0 && events[i].wallTime <= t1 + 0.01);
      }
      const records = Deno.readTextFileSync(`${logs}/${jsonl}`).trim().split("\n")
        .map((l) => JSON.parse(l));
      assert.equal(records.length, steps);
      const tags = byTag(events.slice(1));
      const stepTags = ["loss/current", "loss/average", "lr/textencoder", "lr/unet"];
      assert.deepEqual([...tags.keys()], [...stepTags, "loss/epoch_average"]);
      const f = Math.fround;
      for (const r of records) {
        const s = r.step as number;
        assert.equal(tags.get("loss/current")!.get(s), f(r["loss/current"]), `step ${s}`);
        assert.equal(tags.get("loss/average")!.get(s), f(r["loss/average"]), `step ${s}`);
        // kohya logs the scheduler's lr after its step: linear decay to 0 over the run.
        const next = (steps - s) / steps;
        assert.equal(tags.get("lr/unet")!.get(s), f(1e-2 * next), `step ${s}`);
        assert.equal(tags.get("lr/textencoder")!.get(s), f(5e-3 * next), `step ${s}`);
      }
      for (const t of stepTags) {
        assert.deepEqual([...tags.get(t)!.keys()], records.map((r) => r.step), t);
      }
      // loss/epoch_average at each epoch number: the average after the epoch's last step.
      const epochs = [...new Set(records.map((r) => r.epoch as number))];
      assert.deepEqual(epochs, [1, 2]);
      const epochAvg = tags.get("loss/epoch_average")!;
      assert.deepEqual([...epochAvg.keys()], epochs);
      for (const e of epochs) {
        const last = records.filter((r) => r.epoch === e).at(-1);
        assert.equal(epochAvg.get(e), f(last["loss/average"]), `epoch ${e}`);
      }
    } finally {
      await Deno.remove(d.root, { recursive: true });
    }
  },
});

Deno.test({
  name: "train_network --log_tracker_name names the run folder; --log_with wandb writes none",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    await initGpu();
    const d = await makeTrainData();
    try {
      const run = async (logs: string, extra: string[]) => {
        const argv = [...common(d.toml, `${d.root}/out`), "--max_train_steps", "1"];
        assert.equal(await trainNetworkCli([...argv, "--logging_dir", logs, ...extra]), 0);
        return [...Deno.readDirSync(logs)].map((e) => e.name).sort();
      };
      const named = `${d.root}/named`;
      const [folder, jsonl] = await run(named, ["--log_with", "all", "--log_tracker_name", "mine"]);
      assert.match(folder, /^\d{14}$/);
      assert.equal(jsonl, `${folder}.jsonl`);
      assert.deepEqual([...Deno.readDirSync(`${named}/${folder}`)].map((e) => e.name), ["mine"]);
      const file = `${named}/${folder}/mine/${only(`${named}/${folder}/mine`)}`;
      const { events } = await readEventFile(file);
      assert.deepEqual([...byTag(events).keys()], [
        "loss/current",
        "loss/average",
        "lr/textencoder",
        "lr/unet",
        "loss/epoch_average",
      ]);
      const wandb = await run(`${d.root}/wandb`, ["--log_with", "wandb"]);
      assert.equal(wandb.length, 1);
      assert.match(wandb[0], /^\d{14}\.jsonl$/);
    } finally {
      await Deno.remove(d.root, { recursive: true });
    }
  },
});

Deno.test("train_network --log_with tensorboard/all needs --logging_dir, as in kohya", async () => {
  for (const tool of ["tensorboard", "all"]) {
    const args = await parseTrainArgs([
      "--pretrained_model_name_or_path",
      "model.safetensors",
      "--output_dir",
      "out",
      "--network_module",
      "networks.lora",
      "--log_with",
      tool,
    ]);
    assert.throws(() => checkTrainSupport(args), /--log_with: .* needs --logging_dir/);
  }
});
