/**
 * Outputs that cannot be written fail before any work, in one line naming the flag and the path,
 * and a write that fails midway is a LorakitError that leaves no temporary file.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { writeFileAtomic } from "../core/io/fs.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { trainNetwork } from "../core/train/loop.ts";

Deno.test("train_network: an unwritable --output_dir fails at once, naming the flag", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-ff-" });
  try {
    const inTheWay = `${dir}/a-file`;
    await Deno.writeTextFile(inTheWay, "not a folder");
    const args = await parseTrainArgs([
      "--pretrained_model_name_or_path",
      `${dir}/no-model-needed.safetensors`,
      "--train_data_dir",
      dir,
      "--output_dir",
      `${inTheWay}/out`,
      "--network_module",
      "networks.lora",
    ], { onNote: () => {} });
    const t0 = performance.now();
    await assert.rejects(
      trainNetwork(planTrainRun(args), { message: () => {}, remove: async () => {} }),
      (e: Error) =>
        e instanceof LorakitError && e.message.startsWith("--output_dir: cannot write there") &&
        e.message.includes(`${inTheWay}/out`) && !e.message.includes("\n"),
    );
    assert.ok(performance.now() - t0 < 2000, "within 2 s");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic into an impossible place is a LorakitError and leaves nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-ff-" });
  try {
    await Deno.writeTextFile(`${dir}/a-file`, "x");
    await assert.rejects(
      writeFileAtomic(`${dir}/a-file/out.safetensors`, "data"),
      (e: Error) => e instanceof LorakitError && e.message.includes("cannot write"),
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a-file"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train_network: a bad --sample_prompts line fails before training, naming the line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-ff-" });
  try {
    await Deno.writeTextFile(`${dir}/p.txt`, "# samples\na cat --w 512\na dog --w 100000 --h 64\n");
    const args = await parseTrainArgs([
      "--pretrained_model_name_or_path",
      `${dir}/no-model-needed.safetensors`,
      "--train_data_dir",
      dir,
      "--output_dir",
      `${dir}/out`,
      "--network_module",
      "networks.lora",
      "--sample_prompts",
      `${dir}/p.txt`,
    ], { onNote: () => {} });
    await assert.rejects(
      trainNetwork(planTrainRun(args), { message: () => {}, remove: async () => {} }),
      (e: Error) =>
        e instanceof LorakitError &&
        e.message === `${dir}/p.txt line 3: --w 100000: expected at most 4096 pixels`,
    );
    await Deno.writeTextFile(`${dir}/p.txt`, "a cat --w 512\n");
    await assert.rejects(
      trainNetwork(planTrainRun(args), { message: () => {}, remove: async () => {} }),
      // A good prompt file passes; the run stops later, at the (missing) training data.
      (e: Error) => e instanceof LorakitError && !e.message.includes("p.txt"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
