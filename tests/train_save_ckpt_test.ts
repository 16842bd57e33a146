/**
 * train_network with `--save_model_as ckpt` on sd1-tiny: step saves, pruning and the final file
 * use the `.ckpt` extension, and the files are torch.save checkpoints of kohya's LoRA keys (no
 * metadata), in the `--save_precision` dtype.
 */
import assert from "node:assert/strict";
import { initGpu } from "../gpu/mod.ts";
import { openCkpt } from "../core/io/ckpt.ts";
import { openLoraFile } from "../core/lora/lora_file.ts";
import { type TrainIo, trainNetwork } from "../core/train/loop.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");

Deno.test({
  name: "train_network --save_model_as ckpt: .ckpt saves with kohya's keys, pruned by name",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    await initGpu();
    const d = await makeTrainData();
    const out = `${d.root}/out`;
    const io: TrainIo = {
      message: () => {},
      remove: (p) => Deno.remove(p, { recursive: true }).catch(() => {}),
    };
    const args = await parseTrainArgs([
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
      "--network_alpha",
      "2",
      "--max_train_steps",
      "3",
      "--save_every_n_steps",
      "1",
      "--save_last_n_steps",
      "1",
      "--save_model_as",
      "ckpt",
      "--save_precision",
      "fp16",
      "--seed",
      "1",
    ], { onNote: () => {} });
    await trainNetwork(planTrainRun(args), io);
    const names = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.deepEqual(names, ["t-step00000002.ckpt", "t-step00000003.ckpt", "t.ckpt"]);
    const ck = await openCkpt(`${out}/t.ckpt`);
    try {
      const list = ck.list();
      assert.ok(list.length > 0 && list.length % 3 === 0);
      for (const t of list) {
        assert.match(
          t.name,
          /^lora_(unet|te)_[a-z0-9_]+\.(lora_down\.weight|lora_up\.weight|alpha)$/,
        );
        assert.equal(t.dtype, "F16", t.name);
        if (t.name.endsWith(".alpha")) {
          assert.deepEqual(t.shape, [], t.name);
          assert.deepEqual([...(await ck.readF32(t.name)).data], [2]);
        }
      }
      assert.deepEqual(ck.metadata, {});
    } finally {
      ck.close();
    }
    // kohya reads ckpt LoRAs back (--network_weights, gen_img): so does openLoraFile.
    const lf = await openLoraFile(`${out}/t.ckpt`);
    try {
      assert.ok(lf.modules.length > 0);
      assert.ok(lf.modules.every((m) => m.alpha === 2));
    } finally {
      lf.close();
    }
    await Deno.remove(d.root, { recursive: true });
  },
});
