/**
 * The kohya boundary: `planTrainRun` resolves kohya's defaults and quirks into the typed plan
 * once, and the training loop runs from a plan written as a literal — no command line — exactly
 * as it runs from the kohya command line that means the same (the same losses and the same LoRA
 * tensors, bit for bit).
 */
import assert from "node:assert/strict";
import { initGpu } from "../gpu/mod.ts";
import { LorakitError } from "../core/errors.ts";
import { generateBlueprint, parseDatasetConfig } from "../core/kohya/dataset_config.ts";
import { chooseOptimizer } from "../core/kohya/optimizer_choice.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import type { TrainPlan } from "../core/kohya/plan_types.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { openLoraFile } from "../core/lora/lora_file.ts";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import { type TrainIo, trainNetwork } from "../core/train/loop.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData, tinyLoraArgv } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");
const quietIo: TrainIo = { message: () => {}, remove: async () => {} };

async function planOf(...argv: string[]): Promise<TrainPlan> {
  return planTrainRun(
    await parseTrainArgs([
      "--pretrained_model_name_or_path",
      "m.safetensors",
      "--network_module",
      "networks.lora",
      ...argv,
    ], {
      onNote: () => {},
    }),
  );
}

Deno.test("planTrainRun: kohya's defaults and quirks are resolved once", async () => {
  const p = await planOf("--output_dir", "out");
  assert.equal(p.network.module, "networks.lora");
  assert.equal(p.network.dim, 4, "kohya's default rank");
  assert.equal(p.network.alpha, 1);
  assert.equal(p.optimizer.choice.spec.type, "AdamW");
  assert.equal(p.optimizer.maxGradNorm, 1);
  assert.equal(p.schedule.scheduler, "constant");
  assert.equal(p.saving.outputName, null);
  assert.equal(p.saving.format, "safetensors");
  assert.equal(p.model.clipSkip, 1);
  assert.equal(p.model.tokenWindows, 1);
  assert.equal(p.loss.maxTimestep, 1000);
  assert.equal(p.metadata.title, "last");

  const q = await planOf(
    "--output_dir",
    "out",
    "--use_8bit_adam",
    "--cache_latents_to_disk",
    "--max_grad_norm",
    "0",
    "--text_encoder_lr",
    "5e-5",
    "1e-5",
    "--scale_weight_norms",
    "0",
    "--max_token_length",
    "225",
    "--network_args",
    "conv_dim=2",
    "down_lr_weight=sine",
    "--mixed_precision",
    "fp16",
  );
  assert.equal(q.optimizer.choice.spec.type, "AdamW8bit", "--use_8bit_adam wins");
  assert.equal(q.data.cacheLatents, true, "--cache_latents_to_disk turns caching on");
  assert.equal(q.optimizer.maxGradNorm, null, "0 turns clipping off");
  assert.equal(q.optimizer.textEncoderLr, 5e-5, "the first --text_encoder_lr");
  assert.equal(q.optimizer.scaleWeightNorms, null);
  assert.equal(q.model.tokenWindows, 3);
  assert.equal(q.network.args.convDim, 2, "network args parsed once, in the plan");
  assert.deepEqual(q.network.rawArgs, ["conv_dim=2", "down_lr_weight=sine"]);
  assert.equal(q.precision.fp16, true);
  assert.equal(q.metadata.settings.cache_latents, true);

  const ada = await planOf("--output_dir", "out", "--optimizer_type", "adafactor");
  assert.equal(ada.optimizer.choice.ownLr, true);
  assert.equal(ada.schedule.scheduler, "adafactor", "relative_step: the optimizer's own lr");

  for (
    const [argv, flag] of [
      [["--loss_type", "huber"], /--loss_type/],
      [["--optimizer_type", "Prodigy"], /--optimizer_type Prodigy/],
      [["--optimizer_args", "betas=0.9"], /--optimizer_args betas/],
      [["--network_args", "conv_dim=x"], /conv_dim/],
      [["--full_fp16"], /--full_fp16/],
    ] as [string[], RegExp][]
  ) {
    await assert.rejects(planOf("--output_dir", "out", ...argv), (e) => {
      assert.ok(e instanceof LorakitError, String(e));
      assert.match(e.message, flag);
      return true;
    });
  }
});

Deno.test({
  name: "a plan literal trains as the kohya command line that means the same, bit for bit",
  ignore: MODEL === null,
  fn: async () => {
    await initGpu();
    const d = await makeTrainData();
    const toml = await Deno.readTextFile(d.toml);
    const literal: TrainPlan = {
      seed: 7,
      model: {
        path: MODEL!,
        sdxl: false,
        vParameterization: false,
        vae: null,
        noHalfVae: false,
        baseWeights: [],
        clipSkip: 1,
        tokenWindows: 1,
        maxTokenLength: null,
      },
      precision: { fp16: false, fullFp16: false, gradientCheckpointing: false },
      data: {
        source: () =>
          Promise.resolve({
            blueprint: generateBlueprint(parseDatasetConfig(toml, d.toml), {}),
            fromConfigFile: true,
            messages: [],
            label: d.toml,
            where: d.toml,
            resolutionLabel: () => d.toml,
          }),
        workers: 0,
        persistentWorkers: false,
        resizeInterpolation: null,
        cacheLatents: true,
        cacheLatentsToDisk: false,
        cacheTextEncoderOutputs: false,
        cacheTextEncoderOutputsToDisk: false,
        skipCacheCheck: false,
        vaeBatchSize: 1,
      },
      network: {
        module: "networks.lora",
        dim: 4,
        alpha: 1,
        dropout: null,
        args: parseNetworkArgs([], "networks.lora"),
        rawArgs: [],
        unetOnly: false,
        textEncoderOnly: false,
        weights: null,
        dimFromWeights: false,
      },
      optimizer: {
        choice: chooseOptimizer("AdamW"),
        learningRate: 1e-3,
        unetLr: null,
        textEncoderLr: null,
        maxGradNorm: 1,
        scaleWeightNorms: null,
      },
      schedule: {
        maxTrainSteps: 3,
        maxTrainEpochs: null,
        gradientAccumulationSteps: 1,
        warmup: 0,
        scheduler: "constant",
        numCycles: 1,
        power: 1,
      },
      loss: {
        minTimestep: 0,
        maxTimestep: 1000,
        noiseOffset: 0,
        noiseOffsetRandomStrength: false,
        minSnrGamma: null,
        scaleVPredLossLikeNoisePred: false,
        vPredLikeLoss: null,
        debiasedEstimation: false,
      },
      saving: {
        outputDir: `${d.root}/literal`,
        outputName: "lit",
        format: "safetensors",
        precision: "float",
        everyNEpochs: null,
        nEpochRatio: null,
        everyNSteps: null,
        lastNEpochs: null,
        lastNEpochsState: null,
        lastNSteps: null,
        lastNStepsState: null,
        state: false,
        stateOnTrainEnd: false,
        resume: null,
      },
      sampling: {
        prompts: null,
        sampler: "ddim",
        everyNSteps: null,
        everyNEpochs: null,
        atFirst: false,
      },
      logging: { dir: null, prefix: null },
      metadata: {
        minimal: false,
        settings: {},
        batchSizePerDevice: 1,
        totalBatchSize: 1,
        sdxl: false,
        v2: false,
        vParameterization: false,
        title: "lit",
      },
    };
    const fromLiteral = await trainNetwork(literal, quietIo);
    const args = await parseTrainArgs(
      tinyLoraArgv(
        MODEL!,
        d.toml,
        `${d.root}/cli`,
        "--output_name",
        "cli",
        "--max_train_steps",
        "3",
        "--seed",
        "7",
        "--learning_rate",
        "1e-3",
      ),
      { onNote: () => {} },
    );
    const fromArgs = await trainNetwork(planTrainRun(args), quietIo);
    assert.equal(fromLiteral.losses.length, 3);
    assert.deepEqual(fromLiteral.losses, fromArgs.losses, "the same losses, bit for bit");
    const a = await openLoraFile(`${d.root}/literal/lit.safetensors`);
    const b = await openLoraFile(`${d.root}/cli/cli.safetensors`);
    try {
      assert.deepEqual(a.modules.map((m) => m.prefix), b.modules.map((m) => m.prefix));
      for (const m of a.modules) {
        const x = await a.readModule(m.prefix), y = await b.readModule(m.prefix);
        assert.deepEqual(x.down.data, y.down.data, m.prefix);
        assert.deepEqual(x.up.data, y.up.data, m.prefix);
        assert.equal(x.alpha, y.alpha);
      }
    } finally {
      a.close();
      b.close();
    }
    await Deno.remove(d.root, { recursive: true });
  },
});
