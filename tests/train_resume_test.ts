/**
 * Ctrl-C with --save_state, then the same command plus --resume: the message names the state to
 * pass, the run continues with the seed the state was saved with (none was given), and the steps
 * after the interruption have exactly the uninterrupted run's losses (bit for bit).
 */
import assert from "node:assert/strict";
import { getGpu, initGpu } from "../gpu/mod.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { trainNetwork, type TrainResult } from "../core/train/loop.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");

async function train(argv: string[], stopAfter = Infinity) {
  const messages: string[] = [];
  let steps = 0;
  const args = await parseTrainArgs(argv, { onNote: (n) => messages.push(n) });
  const result: TrainResult = await trainNetwork(planTrainRun(args), {
    message: (m) => messages.push(m),
    remove: (p) => Deno.remove(p, { recursive: true }).catch(() => {}),
    stepEncoded: () => steps++,
    interrupted: () => steps >= stopAfter,
  });
  return { result, messages };
}

for (const precision of ["no", "fp16"]) {
  Deno.test({
    name: `train_network: Ctrl-C, then the same command with --resume and no --seed (${precision})`,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async () => {
      if (!MODEL) return;
      await initGpu();
      if (precision === "fp16" && !(await getGpu()).hasF16) return;
      const d = await makeTrainData();
      const argv = (out: string) => [
        "--pretrained_model_name_or_path",
        MODEL,
        "--dataset_config",
        d.toml,
        "--output_dir",
        out,
        "--output_name",
        "t",
        "--network_module",
        "networks.lora",
        "--network_dim",
        "4",
        "--learning_rate",
        "1e-2",
        "--max_train_steps",
        "5",
        "--cache_latents",
        "--save_state",
        "--max_data_loader_n_workers",
        "0",
        "--mixed_precision",
        precision,
      ];
      try {
        const cut = await train(argv(`${d.root}/cut`), 2);
        assert.equal(cut.result.interrupted, true);
        const state = `${d.root}/cut/t-step00000002-state`;
        assert.ok(
          cut.messages.some((m) => m.includes(`run the same command with --resume ${state}`)),
          cut.messages.join("\n"),
        );
        const resumed = await train([...argv(`${d.root}/cut`), "--resume", state]);
        assert.deepEqual(resumed.result.losses.map((l) => l.step), [3, 4, 5]);
        // The uninterrupted run needs the same seed: read it from the resumed run's state.
        const seedNote = resumed.messages.find((m) => m.startsWith("resumed from"));
        assert.ok(seedNote, resumed.messages.join("\n"));
        const { readStateSeed } = await import("../core/train/checkpoint_state.ts");
        const seed = await readStateSeed(state);
        const whole = await train([...argv(`${d.root}/whole`), "--seed", String(seed)]);
        for (const l of resumed.result.losses) {
          const want = whole.result.losses[l.step - 1].loss;
          assert.equal(l.loss, want, `step ${l.step}`);
        }
      } finally {
        await Deno.remove(d.root, { recursive: true });
      }
    },
  });
}
