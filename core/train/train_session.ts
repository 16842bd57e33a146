/**
 * A training session's GPU side, set up the way kohya's train_network does before its loop:
 * the model in the training dtype (fp16 under `--mixed_precision fp16`, the VAE in f32 with
 * `--no_half_vae`, or from `--vae`), `--base_weights` merged in, the network created and hooked
 * in, the optimizer over kohya's parameter groups, the step and epoch counts, the lr schedule,
 * and the memory estimate checked against the adapter's limits.
 *
 * @module
 */
import {
  cast,
  type CreatedOptimizer,
  createOptimizer,
  getGpu,
  initGpu,
  parseOptimizerArgs,
  rt,
  type Tensor,
} from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { legacyFileHash } from "../io/hashes.ts";
import { exists, isDirectory } from "../io/fs.ts";
import { createNetworkFromWeights, type LoraNetwork } from "../lora/network.ts";
import { type AutoencoderKL, loadStableDiffusion, type StableDiffusion } from "../models/mod.ts";
import { loadVaeFile } from "../sample/vae_file.ts";
import { stitchedLength, windowCountFor } from "../text/token_windows.ts";
import { makeLrSchedule } from "./lr_schedule.ts";
import {
  estimateTrainingMemory,
  memoryAdvice,
  type MemoryEstimate,
  optimizerStateFactor,
} from "./memory_estimate.ts";
import {
  buildNetwork,
  castNetworkToF16,
  enableGradientCheckpointing,
  type ParameterGroups,
  parameterGroups,
} from "./network_training.ts";
import type { StepSettings } from "./step.ts";
import type { TrainArgs } from "../kohya/train_args.ts";
import { batchesPerEpoch, type PreparedData } from "./train_setup.ts";

/** The models the loop uses (the VAE may come from another file or dtype). */
export interface SessionModel {
  sd: StableDiffusion;
  /** What `trainStepForward` is given: windows-aware text encoder, f32-output U-Net. */
  stepModel: Pick<StableDiffusion, "textEncoder" | "unet">;
  weightBytes: number;
  hasF16: boolean;
  modelHash: string | null;
  vaeHash: string | null;
  dispose(): void;
}

/** Load the model(s) in the training dtype. */
export async function loadSessionModel(
  args: TrainArgs,
  note: (m: string) => void,
): Promise<SessionModel> {
  await initGpu();
  const gpu = await getGpu();
  const fp16 = args.mixed_precision === "fp16";
  if (fp16 && !gpu.hasF16) {
    throw new LorakitError(
      `--mixed_precision fp16: this adapter (${gpu.description}) has no shader-f16 support; ` +
        `use --mixed_precision no`,
    );
  }
  const path = args.pretrained_model_name_or_path!;
  const dtype = fp16 ? "f16" : "f32";
  const separateVae = args.vae !== null || (fp16 && args.no_half_vae);
  const before = rt().storage.stats().liveBytes;
  const main = await loadStableDiffusion(path, {
    dtype,
    v2: args.v2 || undefined,
    vPrediction: args.v_parameterization || undefined,
    parts: separateVae ? ["text_encoder", "unet"] : undefined,
  });
  let vae: AutoencoderKL | null = null;
  if (separateVae) {
    const vaeDtype = args.no_half_vae ? "f32" : dtype;
    try {
      vae = args.vae !== null
        ? await loadVaeFile(args.vae, main.config, vaeDtype)
        : (await loadStableDiffusion(path, { dtype: vaeDtype, parts: ["vae"] })).vae;
    } catch (e) {
      main.dispose();
      throw e;
    }
    if (args.vae !== null) note(`VAE loaded from ${args.vae}`);
  }
  const weightBytes = rt().storage.stats().liveBytes - before;
  const sd: StableDiffusion = vae === null ? main : {
    config: main.config,
    tokenizer: main.tokenizer,
    textEncoder: main.textEncoder,
    unet: main.unet,
    vae,
    dispose() {
      main.dispose();
      vae!.dispose();
    },
  };
  const windows = windowCountFor(args.max_token_length);
  const te = main.textEncoder;
  const unet = main.unet;
  const stepModel = {
    textEncoder: windows === 1 ? te : {
      forward: (ids: Int32Array, o: { clipSkip?: number }) =>
        te.forwardWindows({ ids, batch: ids.length / (77 * windows), windows }, o),
    } as unknown as StableDiffusion["textEncoder"],
    unet: {
      forward: (s: Tensor, t: readonly number[], c: Tensor) => {
        const y = unet.forward(s, t, c);
        return y.dtype === "f32" ? y : cast(y, "f32");
      },
    } as unknown as StableDiffusion["unet"],
  };
  const fileHash = async (p: string) =>
    (await exists(p)) && !(await isDirectory(p)) ? await legacyFileHash(p) : null;
  return {
    sd,
    stepModel,
    weightBytes,
    hasF16: gpu.hasF16,
    modelHash: await fileHash(path),
    vaeHash: args.vae ? await fileHash(args.vae) : null,
    dispose: () => sd.dispose(),
  };
}

/** `--base_weights`: merge LoRA files into the model before training. */
export async function mergeBaseWeights(
  sd: StableDiffusion,
  args: TrainArgs,
  note: (m: string) => void,
): Promise<void> {
  for (const [i, path] of (args.base_weights ?? []).entries()) {
    const m = args.base_weights_multiplier?.[i] ?? 1;
    const net = await createNetworkFromWeights(m, path, sd);
    net.mergeTo(sd);
    net.dispose();
    note(`merged ${path} into the model with multiplier ${m}`);
  }
}

/** The network, its parameter groups and the optimizer. */
export interface SessionNetwork {
  net: LoraNetwork;
  groups: ParameterGroups;
  created: CreatedOptimizer;
  /** Parameters in the state's order (every module's downs then ups). */
  params: Tensor[];
  settings: StepSettings;
  undoCheckpointing: (() => void) | null;
  dispose(): void;
}

/** Create the network (kohya's order: network, weights, groups, optimizer). */
export async function setupNetwork(
  model: SessionModel,
  args: TrainArgs,
  seed: number,
  note: (m: string) => void,
): Promise<SessionNetwork> {
  const net = await buildNetwork(model.sd, args, seed, note);
  try {
    if (args.full_fp16) castNetworkToF16(net);
    net.applyTo(model.sd);
    net.setTraining(true);
    const hasRandom = args.network_dropout || net.moduleName === "networks.dylora" ||
      "rank_dropout" in net.networkArgs || "module_dropout" in net.networkArgs;
    if (args.gradient_checkpointing && hasRandom) {
      throw new LorakitError(
        "--gradient_checkpointing: cannot be combined with network dropout or DyLoRA in " +
          "lorakit (the recomputed forward would draw different random masks)",
      );
    }
    const undo = args.gradient_checkpointing ? enableGradientCheckpointing(model.sd.unet) : null;
    const groups = parameterGroups(net, args);
    let type = args.optimizer_type;
    if (args.use_8bit_adam) type = "AdamW8bit";
    if (args.use_lion_optimizer) type = "Lion";
    let created: CreatedOptimizer;
    try {
      created = createOptimizer(
        type,
        groups.groups,
        parseOptimizerArgs(args.optimizer_args ?? []),
      );
    } catch (e) {
      throw new LorakitError((e as Error).message);
    }
    for (const n of created.notes) note(n);
    const hasTe = net.modules.some((m) => m.spec.part === "text_encoder");
    return {
      net,
      groups,
      created,
      params: net.parameters(),
      settings: {
        vParameterization: args.v_parameterization,
        clipSkip: args.clip_skip ?? 1,
        minSnrGamma: args.min_snr_gamma,
        frozenTextEncoder: !hasTe,
      },
      undoCheckpointing: undo,
      dispose() {
        undo?.();
        created.optimizer.dispose();
        net.dispose();
      },
    };
  } catch (e) {
    net.dispose();
    throw e;
  }
}

/** Step and epoch counts, warmup and the lr factor per step. */
export interface Schedule {
  batchesPerEpoch: number;
  updatesPerEpoch: number;
  maxTrainSteps: number;
  numEpochs: number;
  warmupSteps: number;
  /** Multiplier of every group's lr before optimizer step `step` (0-based). */
  lrScale: (step: number) => number;
}

/** kohya's step arithmetic and scheduler. */
export function makeSchedule(
  args: TrainArgs,
  data: PreparedData,
  optimizerScheduler: string | undefined,
): Schedule {
  const batches = batchesPerEpoch(data);
  const accum = args.gradient_accumulation_steps;
  const updatesPerEpoch = Math.ceil(batches / accum);
  const maxTrainSteps = args.max_train_epochs !== null
    ? args.max_train_epochs * updatesPerEpoch
    : args.max_train_steps;
  const numEpochs = Math.ceil(maxTrainSteps / updatesPerEpoch);
  const w = args.lr_warmup_steps;
  const warmupSteps = w < 1 && w > 0 ? Math.floor(w * maxTrainSteps) : Math.floor(w);
  if (optimizerScheduler !== undefined || args.lr_scheduler === "adafactor") {
    // Adafactor with relative_step computes its own lr.
    return {
      batchesPerEpoch: batches,
      updatesPerEpoch,
      maxTrainSteps,
      numEpochs,
      warmupSteps,
      lrScale: () => 1,
    };
  }
  const lr = args.learning_rate;
  const f = makeLrSchedule({
    lr_scheduler: args.lr_scheduler,
    learning_rate: lr,
    lr_warmup_steps: warmupSteps,
    max_train_steps: maxTrainSteps,
    lr_scheduler_num_cycles: args.lr_scheduler_num_cycles,
    lr_scheduler_power: args.lr_scheduler_power,
  });
  return {
    batchesPerEpoch: batches,
    updatesPerEpoch,
    maxTrainSteps,
    numEpochs,
    warmupSteps,
    lrScale: (s) => (lr === 0 ? 1 : f(s) / lr),
  };
}

/** Estimate memory; throws the advice when the largest tensor cannot fit a buffer. */
export async function checkMemory(
  model: SessionModel,
  session: SessionNetwork,
  args: TrainArgs,
  data: PreparedData,
): Promise<MemoryEstimate> {
  const gpu = await getGpu();
  let maxBucket: [number, number] = [64, 64];
  let batch = 1;
  for (const d of data.datasets) {
    batch = Math.max(batch, d.blueprint.params.batch_size);
    for (const [i, r] of d.buckets.manager.resos.entries()) {
      if (d.buckets.manager.buckets[i].length === 0) continue;
      if (r[0] * r[1] > maxBucket[0] * maxBucket[1]) maxBucket = [r[0], r[1]];
    }
  }
  const est = estimateTrainingMemory({
    config: model.sd.config,
    weightBytes: model.weightBytes,
    loraElements: session.params.reduce((a, p) => a + p.size, 0),
    loraBytesPerElement: args.full_fp16 ? 2 : 4,
    optimizerStateFactor: optimizerStateFactor(session.created.optimizer.type),
    activationBytes: args.mixed_precision === "fp16" ? 2 : 4,
    batchSize: batch,
    maxBucket,
    tokens: stitchedLength(windowCountFor(args.max_token_length)),
    cacheLatents: args.cache_latents,
    vaeBatchSize: args.vae_batch_size,
    gradientCheckpointing: args.gradient_checkpointing,
    trainTextEncoder: !session.settings.frozenTextEncoder,
  });
  const advice = memoryAdvice(est, gpu.limits, {
    batchSize: batch,
    maxBucket,
    cacheLatents: args.cache_latents,
  });
  if (advice !== null) throw new LorakitError(`not enough GPU memory: ${advice}`);
  return est;
}
