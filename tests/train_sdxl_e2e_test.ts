/**
 * sdxl_train_network end to end on sdxl-tiny: it samples images through SDXL's conditioning; the
 * LoRA it writes has kohya's SDXL module names
 * (the key set of kohya's own file for the same network is the spec) and its SDXL metadata,
 * loads back, and changes sdxl_gen_img's image as its multiplier says (x0 is the base image);
 * the text encoder output cache (in memory and on disk) gives the same losses as encoding the
 * captions every step, and refuses captions that change between steps.
 */
import assert from "node:assert/strict";
import { initGpu } from "../gpu/mod.ts";
import { LorakitError } from "../core/errors.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { readImage } from "../core/image/decode.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { type TrainIo, trainNetwork } from "../core/train/loop.ts";
import { textOutputsCachePath } from "../core/train/te_output_cache.ts";
import { main as sdxlGenImg } from "../cli/sdxl_gen_img.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData, tinyLoraArgv } from "./train_fixture_data.ts";

const MODEL = fixture("sdxl-tiny/model.safetensors");

function quietIo(messages: string[] = []): TrainIo {
  return { message: (m) => messages.push(m), remove: async () => {} };
}

async function train(argv: string[], messages: string[] = []) {
  const args = await parseTrainArgs(argv, { onNote: () => {}, tool: "sdxl_train_network" });
  return await trainNetwork(planTrainRun(args, "sdxl_train_network"), quietIo(messages));
}

/** Run a CLI quietly; its exit code. */
async function quiet(main: (a: string[]) => Promise<number>, argv: string[]): Promise<number> {
  const err = console.error, log = console.log, warn = console.warn;
  console.error = console.log = console.warn = () => {};
  try {
    return await main(argv);
  } finally {
    console.error = err;
    console.log = log;
    console.warn = warn;
  }
}

Deno.test({
  name: "sdxl_train_network: kohya's SDXL names and metadata; sdxl_gen_img follows the multiplier",
  ignore: MODEL === null,
  fn: async () => {
    await initGpu();
    const d = await makeTrainData();
    const out = `${d.root}/out`;
    const prompts = `${d.root}/prompts.txt`;
    await Deno.writeTextFile(prompts, "sks toy --n blurry --w 64 --h 64 --s 2 --l 5 --d 1\n");
    const result = await train(
      tinyLoraArgv(MODEL!, d.toml, out, "--output_name", "sx", "--max_train_steps", "2").concat(
        ["--seed", "3", "--learning_rate", "1e-2", "--sample_prompts", prompts],
      ).concat(["--sample_every_n_steps", "2", "--sample_sampler", "euler_a"]),
    );
    assert.equal(result.losses.length, 2);
    // The sample at step 2, through SDXL's conditioning and VAE.
    const samples = [...Deno.readDirSync(`${out}/sample`)].map((e) => e.name);
    assert.equal(samples.length, 1, samples.join(", "));
    assert.match(samples[0], /^sx_000002_00_\d+_1\.png$/);
    const img = await readImage(`${out}/sample/${samples[0]}`);
    assert.equal(img.width, 64);
    assert.ok(result.losses.every((l) => Number.isFinite(l.loss)));
    const lora = `${out}/sx.safetensors`;
    const f = await openSafetensors(lora);
    const spec = JSON.parse(
      await Deno.readTextFile(fixture("sdxl-tiny/kohya/lora_modules.json")!),
    ).lierla as Record<string, string[]>;
    const want = [...spec.lora_te1, ...spec.lora_te2, ...spec.lora_unet].sort();
    const got = [
      ...new Set(
        f.header.tensors.map((t) => t.name.replace(/\.(lora_down|lora_up)\.weight$|\.alpha$/, "")),
      ),
    ].sort();
    assert.deepEqual(got, want, "kohya's module names for an SDXL LierLa network");
    assert.equal(f.metadata.ss_base_model_version, "sdxl_base_v1-0");
    assert.equal(f.metadata["modelspec.architecture"], "stable-diffusion-xl-v1-base/lora");
    assert.equal(f.metadata.ss_v2, "False");
    assert.equal(f.metadata.ss_network_dim, "4");
    f.close();
    // sdxl_gen_img with the trained LoRA: x0 is the base image, x1 differs.
    const gen = async (dir: string, extra: string[]) => {
      const code = await quiet(sdxlGenImg, [
        "--ckpt",
        MODEL!,
        "--W",
        "64",
        "--H",
        "64",
        "--steps",
        "2",
        "--prompt",
        "sks toy --d 5",
        "--outdir",
        `${d.root}/${dir}`,
        "--sequential_file_name",
        ...extra,
      ]);
      assert.equal(code, 0);
      return (await readImage(`${d.root}/${dir}/im_000001.png`)).data;
    };
    const net = (mul: string) => [
      "--network_module",
      "networks.lora",
      "--network_weights",
      lora,
      "--network_mul",
      mul,
    ];
    const base = await gen("base", []);
    const x0 = await gen("x0", net("0"));
    const x1 = await gen("x1", net("1"));
    const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
      let m = 0;
      for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
      return m;
    };
    assert.equal(maxDiff(x0, base), 0, "multiplier 0 is the base image");
    assert.ok(maxDiff(x1, base) > 0, "multiplier 1 changes the image");
    await Deno.remove(d.root, { recursive: true });
  },
});

Deno.test({
  name: "sdxl_train_network --cache_text_encoder_outputs(_to_disk): the same losses",
  ignore: MODEL === null,
  fn: async () => {
    await initGpu();
    const d = await makeTrainData();
    const argv = (out: string, ...extra: string[]) =>
      tinyLoraArgv(MODEL!, d.toml, `${d.root}/${out}`, "--max_train_steps", "3").concat([
        "--seed",
        "9",
        "--network_train_unet_only",
        ...extra,
      ]);
    const plain = await train(argv("plain"));
    const cached = await train(argv("cached", "--cache_text_encoder_outputs"));
    assert.deepEqual(cached.losses, plain.losses, "cached outputs are the encoders' outputs");
    const messages: string[] = [];
    const disk = await train(argv("disk", "--cache_text_encoder_outputs_to_disk"), messages);
    assert.deepEqual(disk.losses, plain.losses);
    assert.ok(messages.some((m) => /3 captions encoded, 0 reused/.test(m)), messages.join("\n"));
    await Deno.stat(textOutputsCachePath(`${d.trainDir}/a.png`));
    const again: string[] = [];
    const reread = await train(argv("again", "--cache_text_encoder_outputs_to_disk"), again);
    assert.deepEqual(reread.losses, plain.losses);
    assert.ok(again.some((m) => /0 captions encoded, 3 reused/.test(m)), again.join("\n"));
    // Two windows a caption (--max_token_length 150): stitched context, first window's pool.
    const long = await train(argv("long", "--max_token_length", "150"));
    assert.ok(long.losses.every((l) => Number.isFinite(l.loss)));
    assert.notDeepEqual(long.losses, plain.losses, "the longer context changes the step");
    const longCached = await train(
      argv("long_cached", "--max_token_length", "150", "--cache_text_encoder_outputs"),
    );
    assert.deepEqual(longCached.losses, long.losses);
    // Captions that change between steps cannot be cached; training the encoders neither.
    const shuffled = await makeTrainData("shuffle_caption = true");
    await assert.rejects(
      train(
        tinyLoraArgv(MODEL!, shuffled.toml, `${shuffled.root}/o`).concat([
          "--network_train_unet_only",
          "--cache_text_encoder_outputs",
        ]),
      ),
      (e) => e instanceof LorakitError && /shuffle_caption/.test(e.message),
    );
    await assert.rejects(
      train(tinyLoraArgv(MODEL!, d.toml, `${d.root}/o`, "--cache_text_encoder_outputs")),
      (e) => e instanceof LorakitError && /--network_train_unet_only/.test(e.message),
    );
    await Deno.remove(d.root, { recursive: true });
    await Deno.remove(shuffled.root, { recursive: true });
  },
});

Deno.test({
  name: "sdxl_train_network: a run resumed from its state continues bit for bit",
  ignore: MODEL === null,
  fn: async () => {
    await initGpu();
    const d = await makeTrainData();
    const argv = (out: string, ...extra: string[]) =>
      tinyLoraArgv(MODEL!, d.toml, `${d.root}/${out}`, "--seed", "4", "--save_state").concat([
        "--save_every_n_steps",
        "2",
        "--gradient_checkpointing",
        ...extra,
      ]);
    const whole = await train(argv("a", "--max_train_steps", "4"));
    await train(argv("b", "--max_train_steps", "2"));
    const state = `${d.root}/b/at-step00000002-state`;
    const resumed = await train(argv("b", "--max_train_steps", "4", "--resume", state));
    assert.deepEqual(resumed.losses, whole.losses.slice(2));
    await Deno.remove(d.root, { recursive: true });
  },
});
