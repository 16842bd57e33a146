import assert from "node:assert/strict";
import { HelpRequested, parseTrainArgs, trainHelpText } from "../core/kohya/train_args.ts";
import { outputConfigTarget, writeOutputConfig } from "../core/kohya/output_config.ts";
import { main } from "../cli/train_network.ts";

const quiet = { onNote: () => {} };

const KOHYA_LINE = [
  "--pretrained_model_name_or_path=model.safetensors",
  "--train_data_dir",
  "train",
  "--reg_data_dir=reg",
  "--resolution=512,768",
  "--output_dir",
  "out",
  "--output_name",
  "my_lora",
  "--network_module",
  "networks.lora",
  "--network_dim",
  "32",
  "--network_alpha",
  "16",
  "--network_args",
  "conv_dim=4",
  "conv_alpha=1",
  "--text_encoder_lr",
  "5e-5",
  "--unet_lr=1e-4",
  "--learning_rate",
  "1e-4",
  "--lr_scheduler",
  "cosine_with_restarts",
  "--lr_warmup_steps",
  "0.05",
  "--train_batch_size",
  "2",
  "--max_train_epochs",
  "10",
  "--save_every_n_epochs=2",
  "--mixed_precision",
  "fp16",
  "--save_precision",
  "fp16",
  "--seed",
  "42",
  "--caption_extension=.txt",
  "--shuffle_caption",
  "--keep_tokens",
  "1",
  "--enable_bucket",
  "--xformers",
  "--cache_latents",
  "--optimizer_type",
  "AdamW8bit",
  "--optimizer_args",
  "weight_decay=0.1",
  "betas=0.9,0.99",
];

Deno.test("a typical kohya command line parses to kohya's values and defaults", async () => {
  const notes: string[] = [];
  const a = await parseTrainArgs(KOHYA_LINE, { onNote: (n) => notes.push(n) });
  assert.equal(a.pretrained_model_name_or_path, "model.safetensors");
  assert.equal(a.resolution, "512,768");
  assert.equal(a.network_dim, 32);
  assert.equal(a.network_alpha, 16);
  assert.deepEqual(a.network_args, ["conv_dim=4", "conv_alpha=1"]);
  assert.deepEqual(a.text_encoder_lr, [5e-5]);
  assert.equal(a.unet_lr, 1e-4);
  assert.equal(a.lr_warmup_steps, 0.05);
  assert.equal(a.train_batch_size, 2);
  assert.equal(a.max_train_epochs, 10);
  assert.equal(a.shuffle_caption, true);
  assert.equal(a.caption_extension, ".txt");
  assert.deepEqual(a.optimizer_args, ["weight_decay=0.1", "betas=0.9,0.99"]);
  // Defaults as kohya declares them.
  assert.equal(a.max_train_steps, 1600);
  assert.equal(a.learning_rate, 1e-4);
  assert.equal(a.max_grad_norm, 1.0);
  assert.equal(a.lr_scheduler_num_cycles, 1);
  assert.equal(a.min_bucket_reso, 256);
  assert.equal(a.save_model_as, "safetensors");
  assert.equal(a.network_dropout, null);
  assert.equal(a.caption_dropout_rate, 0);
  assert.equal(a.v2, false);
  assert.ok(notes.some((n) => n.includes("--xformers")));
});

Deno.test("--config_file: sections flattened, TOML over defaults, command line over TOML", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/cfg.toml`,
      `
[model]
pretrained_model_name_or_path = "base.safetensors"
v2 = true

[network]
network_module = "networks.lora"
network_dim = 8
network_alpha = 4
network_args = ["conv_dim=2"]

[training]
learning_rate = 0.0002
max_train_steps = 300
resolution = 768
lr_warmup_steps = "10%"
`,
    );
    // Without extension, as kohya: ".toml" is appended.
    const a = await parseTrainArgs(["--config_file", `${dir}/cfg`, "--network_dim", "12"], quiet);
    assert.equal(a.pretrained_model_name_or_path, "base.safetensors");
    assert.equal(a.v2, true);
    assert.equal(a.network_dim, 12, "the command line wins");
    assert.equal(a.network_alpha, 4);
    assert.deepEqual(a.network_args, ["conv_dim=2"]);
    assert.equal(a.learning_rate, 0.0002);
    assert.equal(a.max_train_steps, 300);
    assert.equal(a.resolution, "768");
    assert.equal(a.lr_warmup_steps, 0.1);
    assert.equal(a.train_batch_size, 1, "untouched flags keep kohya's default");

    await Deno.writeTextFile(`${dir}/typo.toml`, '[net]\nnetwork_modul = "networks.lora"\n');
    await assert.rejects(
      () => parseTrainArgs(["--config_file", `${dir}/typo.toml`], quiet),
      /typo\.toml: \[net\] network_modul: unknown key.*did you mean network_module/,
    );
    await Deno.writeTextFile(`${dir}/type.toml`, 'network_dim = "eight"\n');
    await assert.rejects(
      () => parseTrainArgs(["--config_file", `${dir}/type.toml`], quiet),
      /type\.toml: network_dim: expected integer, found the string "eight"/,
    );
    await Deno.writeTextFile(
      `${dir}/ds.toml`,
      'network_module = "networks.lora"\ndeepspeed = true\n',
    );
    await assert.rejects(
      () => parseTrainArgs(["--config_file", `${dir}/ds.toml`], quiet),
      /--deepspeed \(from .*ds\.toml\): not supported by lorakit/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad flags are clear errors", async () => {
  const base = ["--network_module", "networks.lora"];
  await assert.rejects(
    () => parseTrainArgs([...base, "--netwrk_dim", "4"], quiet),
    /unknown flag --netwrk_dim \(did you mean --network_dim\?\)/,
  );
  await assert.rejects(
    () => parseTrainArgs([...base, "--network_dim", "four"], quiet),
    /argument --network_dim: invalid int value: 'four'/,
  );
  await assert.rejects(
    () => parseTrainArgs([...base, "--network_dim", "0"], quiet),
    /--network_dim .*at least 1, found 0/,
  );
  await assert.rejects(
    () => parseTrainArgs([...base, "--resolution", "512x512"], quiet),
    /--resolution .*expected 'size' or 'width,height'/,
  );
  await assert.rejects(
    () => parseTrainArgs(["--network_dim", "4"], quiet),
    /--network_module .*required/,
  );
  await assert.rejects(
    () => parseTrainArgs([...base, "--ddp_timeout", "30"], quiet),
    /--ddp_timeout .*not supported by lorakit: .*one WebGPU device/,
  );
  await assert.rejects(
    () => parseTrainArgs([...base, "--mixed_precision", "bf16"], quiet),
    /--mixed_precision .*bf16 is not available/,
  );
  await assert.rejects(
    () => parseTrainArgs([...base, "--adaptive_noise_scale", "0.1"], quiet),
    /requires --noise_offset/,
  );
});

Deno.test("--help gives the usage with support notes", async () => {
  await assert.rejects(() => parseTrainArgs(["--help"]), HelpRequested);
  const help = trainHelpText();
  assert.ok(help.includes("--network_args [NETWORK_ARGS ...]"));
  assert.ok(help.includes("not supported by lorakit"));
});

Deno.test("--output_config writes the non-default arguments; --config_file reads them back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const argv = [...KOHYA_LINE, "--output_conf", "--config_file", `${dir}/out`];
    const target = outputConfigTarget(argv);
    assert.equal(target, `${dir}/out.toml`, "kohya appends .toml");
    assert.equal(await writeOutputConfig(argv, target!, quiet), target);
    const text = await Deno.readTextFile(target!);
    assert.match(text, /^network_dim = 32$/m);
    assert.match(text, /^network_args = \[ "conv_dim=4", "conv_alpha=1" \]$/m);
    assert.ok(!/config_file|output_config|max_train_steps/.test(text), text);
    const direct = await parseTrainArgs(KOHYA_LINE, quiet);
    const back = await parseTrainArgs(["--config_file", target!], quiet);
    assert.equal(back.config_file, target);
    assert.deepEqual({ ...back, config_file: null }, direct);
    // The same through the CLI, which writes and exits without training.
    const line = ["--network_module", "networks.lora", "--network_dim", "8", "--seed", "3"];
    assert.equal(await main([...line, "--config_file", `${dir}/cli.toml`, "--output_config"]), 0);
    const cli = await parseTrainArgs(["--config_file", `${dir}/cli.toml`], quiet);
    assert.deepEqual({ ...cli, config_file: null }, await parseTrainArgs(line, quiet));
    // Never overwritten; --config_file is required; without --output_config nothing is written.
    await assert.rejects(
      () => writeOutputConfig(argv, target!, quiet),
      /--output_config: .*out\.toml already exists/,
    );
    assert.throws(
      () => outputConfigTarget([...line, "--output_config"]),
      /--output_config: needs --config_file/,
    );
    assert.equal(outputConfigTarget([...line, "--config_file", `${dir}/x.toml`]), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config syntax errors are one line with their position; long messages are cut", async () => {
  const { readConfigFile } = await import("../core/kohya/train_args.ts");
  const { parseDatasetConfig } = await import("../core/kohya/dataset_config.ts");
  const { failureText } = await import("../cli/report.ts");
  const doc = "a = [1,\nb = 'x";
  await assert.rejects(
    () => readConfigFile("c.toml", () => Promise.resolve(doc)),
    (e: Error) =>
      e.message ===
        "--config_file c.toml: not valid TOML: Invalid TOML document: cannot find end of " +
          "structure (line 2, column 1)",
  );
  assert.throws(
    () => parseDatasetConfig(doc, "d.toml"),
    (e: Error) =>
      !e.message.includes("\n") && /d\.toml: not valid TOML: .*\(line 2/.test(e.message),
  );
  const key = "k".repeat(5000);
  const err = await readConfigFile("c.toml", () => Promise.resolve(`${key} = 1`)).catch((e) => e);
  const text = failureText(err, false);
  assert.ok(text.length < 700 && text.startsWith("error: c.toml: kkk"), text);
  assert.match(text, /\[\d+ characters left out\]/);
});
