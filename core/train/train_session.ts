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
  createOptimizer,
  getGpu,
  initGpu,
  type Optimizer,
  OptimizerError,
  rt,
  type Tensor,
} from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { legacyFileHash } from "../io/hashes.ts";
import { exists, isDirectory } from "../io/fs.ts";
import { createNetworkFromWeights, type LoraNetwork } from "../lora/network.ts";
import { type AutoencoderKL, loadStableDiffusion, type StableDiffusion } from "../models/mod.ts";
import { loadVaeFile } from "../sample/vae_file.ts";
import { stitchedLength } from "../text/token_windows.ts";
import type { OptimizerChoice } from "../kohya/optimizer_choice.ts";
import type { TrainPlan } from "../kohya/plan_types.ts";
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
import type { StepModel, StepSettings } from "./step.ts";
import { type EncoderVae, LATENT_SCALE } from "./latent_cache.ts";
import { loadSdxlTrainModel, SDXL_LATENT_SCALE, sdxlStepModel } from "./sdxl_session.ts";
import type { StableDiffusionXL } from "../models/stable_diffusion_xl.ts";
import type { WindowTokenizer } from "../text/token_windows.ts";
import { batchesPerEpoch, type PreparedData } from "./train_setup.ts";

/** The model a run trains a network for. */
export type TrainModel = StableDiffusion | StableDiffusionXL;

/** The models the loop uses (the VAE may come from another file or dtype). */
export interface SessionModel {
  sd: TrainModel;
  /** The SDXL models, when training on SDXL. */
  sdxl: StableDiffusionXL | null;
  /** The VAE latents come from, with the latent scale of the model family. */
  vae: EncoderVae;
  /** The same VAE for decoding samples, and its latent scale. */
  decoder: AutoencoderKL;
  latentScale: number;
  /** The data loader's tokenizers (SDXL's second one pads with 0). */
  tokenizer: WindowTokenizer;
  tokenizer2: WindowTokenizer | null;
  /** What `trainStepForward` is given: conditioning (windows-aware), f32-output U-Net. */
  stepModel: StepModel;
  weightBytes: number;
  hasF16: boolean;
  modelHash: string | null;
  vaeHash: string | null;
  dispose(): void;
}

/** Load the model(s) in the training dtype. */
export async function loadSessionModel(
  plan: Pick<TrainPlan, "model" | "precision">,
  note: (m: string) => void,
): Promise<SessionModel> {
  await initGpu();
  const gpu = await getGpu();
  const m = plan.model;
  const fp16 = plan.precision.fp16;
  if (fp16 && !gpu.hasF16) {
    throw new LorakitError(
      `--mixed_precision fp16: this adapter (${gpu.description}) has no shader-f16 support; ` +
        `use --mixed_precision no`,
    );
  }
  const path = m.path;
  const dtype = fp16 ? "f16" : "f32";
  const fileHash = async (p: string) =>
    (await exists(p)) && !(await isDirectory(p)) ? await legacyFileHash(p) : null;
  const before = rt().storage.stats().liveBytes;
  if (m.sdxl) {
    if (m.vae !== null) {
      throw new LorakitError(`--vae ${m.vae}: a separate VAE for SDXL is not supported by lorakit`);
    }
    const x = await loadSdxlTrainModel(path, {
      dtype,
      vaeF32: m.noHalfVae,
      vPrediction: m.vParameterization || undefined,
    });
    if (fp16 && !m.noHalfVae) {
      note("SDXL's VAE overflows in fp16; kohya advises --no_half_vae (the VAE in f32)");
    }
    return {
      sd: x.sd,
      sdxl: x.sd,
      vae: { encode: (i) => x.vae.encode(i), dtype: x.vae.dtype, latentScale: SDXL_LATENT_SCALE },
      decoder: x.vae,
      latentScale: SDXL_LATENT_SCALE,
      tokenizer: x.sd.tokenizer,
      tokenizer2: x.sd.tokenizer2,
      stepModel: sdxlStepModel(x.sd, null),
      weightBytes: rt().storage.stats().liveBytes - before,
      hasF16: gpu.hasF16,
      modelHash: await fileHash(path),
      vaeHash: null,
      dispose: () => x.dispose(),
    };
  }
  const separateVae = m.vae !== null || (fp16 && m.noHalfVae);
  const main = await loadStableDiffusion(path, {
    dtype,
    v2: m.v2,
    vPrediction: m.vParameterization || undefined,
    parts: separateVae ? ["text_encoder", "unet"] : undefined,
  });
  let vae: AutoencoderKL | null = null;
  if (separateVae) {
    const vaeDtype = m.noHalfVae ? "f32" : dtype;
    try {
      vae = m.vae !== null
        ? await loadVaeFile(m.vae, main.config, vaeDtype)
        : (await loadStableDiffusion(path, { dtype: vaeDtype, parts: ["vae"] })).vae;
    } catch (e) {
      main.dispose();
      throw e;
    }
    if (m.vae !== null) note(`VAE loaded from ${m.vae}`);
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
  const windows = m.tokenWindows;
  const te = main.textEncoder;
  const unet = main.unet;
  const stepModel: StepModel = {
    condition: (batch, s) => {
      const clipSkip = s.clipSkip ?? 1;
      const ids = batch.inputIds;
      return {
        context: windows === 1
          ? te.forward(ids, { clipSkip })
          : te.forwardWindows({ ids, batch: ids.length / (77 * windows), windows }, { clipSkip }),
      };
    },
    unet: {
      forward: (s: Tensor, t: readonly number[], c: Tensor) => {
        const y = unet.forward(s, t, c);
        return y.dtype === "f32" ? y : cast(y, "f32");
      },
    },
  };
  return {
    sd,
    sdxl: null,
    vae: sd.vae,
    decoder: sd.vae,
    latentScale: LATENT_SCALE,
    tokenizer: sd.tokenizer,
    tokenizer2: null,
    stepModel,
    weightBytes,
    hasF16: gpu.hasF16,
    modelHash: await fileHash(path),
    vaeHash: m.vae ? await fileHash(m.vae) : null,
    dispose: () => sd.dispose(),
  };
}

/** Merge LoRA files into the model before training (kohya's `--base_weights`). */
export async function mergeBaseWeights(
  sd: TrainModel,
  weights: TrainPlan["model"]["baseWeights"],
  note: (m: string) => void,
): Promise<void> {
  for (const { path, multiplier: m } of weights) {
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
  optimizer: Optimizer;
  /** The optimizer as kohya names it (for metadata). */
  optimizerChoice: OptimizerChoice;
  /** Parameters in the state's order (every module's downs then ups). */
  params: Tensor[];
  settings: StepSettings;
  undoCheckpointing: (() => void) | null;
  dispose(): void;
}

/** Create the network (kohya's order: network, weights, groups, optimizer). */
export async function setupNetwork(
  model: SessionModel,
  plan: Pick<TrainPlan, "network" | "optimizer" | "precision" | "model">,
  seed: number,
  note: (m: string) => void,
): Promise<SessionNetwork> {
  const n = plan.network;
  const net = await buildNetwork(model.sd, n, seed, note);
  try {
    if (plan.precision.fullFp16) castNetworkToF16(net);
    net.applyTo(model.sd);
    net.setTraining(true);
    const hasRandom = n.dropout || net.moduleName === "networks.dylora" ||
      "rank_dropout" in net.networkArgs || "module_dropout" in net.networkArgs;
    if (plan.precision.gradientCheckpointing && hasRandom) {
      throw new LorakitError(
        "--gradient_checkpointing: cannot be combined with network dropout or DyLoRA in " +
          "lorakit (the recomputed forward would draw different random masks)",
      );
    }
    const undo = plan.precision.gradientCheckpointing
      ? enableGradientCheckpointing(model.sd.unet)
      : null;
    const groups = parameterGroups(net, n.args, plan.optimizer);
    const choice = plan.optimizer.choice;
    let optimizer: Optimizer;
    try {
      optimizer = createOptimizer(choice.spec, groups.groups);
    } catch (e) {
      // Options the optimizer cannot take came from the command line.
      if (e instanceof OptimizerError) throw new LorakitError(`--optimizer_args: ${e.message}`);
      throw e;
    }
    for (const m of choice.notes(groups.groups.map((g) => g.lr))) note(m);
    const hasTe = net.modules.some((m) => m.spec.part === "text_encoder");
    return {
      net,
      groups,
      optimizer,
      optimizerChoice: choice,
      params: net.parameters(),
      settings: {
        vParameterization: plan.model.vParameterization,
        clipSkip: plan.model.clipSkip,
        frozenTextEncoder: !hasTe,
      },
      undoCheckpointing: undo,
      dispose() {
        undo?.();
        optimizer.dispose();
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
  plan: TrainPlan["schedule"],
  data: PreparedData,
  lr: number,
): Schedule {
  const batches = batchesPerEpoch(data);
  const accum = plan.gradientAccumulationSteps;
  const updatesPerEpoch = Math.ceil(batches / accum);
  const maxTrainSteps = plan.maxTrainEpochs !== null
    ? plan.maxTrainEpochs * updatesPerEpoch
    : plan.maxTrainSteps;
  const numEpochs = Math.ceil(maxTrainSteps / updatesPerEpoch);
  const w = plan.warmup;
  const warmupSteps = w < 1 && w > 0 ? Math.floor(w * maxTrainSteps) : Math.floor(w);
  const counts = {
    batchesPerEpoch: batches,
    updatesPerEpoch,
    maxTrainSteps,
    numEpochs,
    warmupSteps,
  };
  // Adafactor with relative_step computes its own lr.
  if (plan.scheduler === "adafactor") return { ...counts, lrScale: () => 1 };
  const f = makeLrSchedule({
    name: plan.scheduler,
    lr,
    warmupSteps,
    totalSteps: maxTrainSteps,
    numCycles: plan.numCycles,
    power: plan.power,
  });
  return { ...counts, lrScale: (s) => (lr === 0 ? 1 : f(s) / lr) };
}

/** Estimate memory; throws the advice when the largest tensor cannot fit a buffer. */
export async function checkMemory(
  model: SessionModel,
  session: SessionNetwork,
  plan: Pick<TrainPlan, "precision" | "data" | "model">,
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
    textEncoder2: model.sdxl?.config.textEncoder2,
    weightBytes: model.weightBytes,
    loraElements: session.params.reduce((a, p) => a + p.size, 0),
    loraBytesPerElement: plan.precision.fullFp16 ? 2 : 4,
    optimizerStateFactor: optimizerStateFactor(session.optimizer.type),
    activationBytes: plan.precision.fp16 ? 2 : 4,
    batchSize: batch,
    maxBucket,
    tokens: stitchedLength(plan.model.tokenWindows),
    cacheLatents: plan.data.cacheLatents,
    vaeBatchSize: plan.data.vaeBatchSize,
    gradientCheckpointing: plan.precision.gradientCheckpointing,
    trainTextEncoder: !session.settings.frozenTextEncoder,
  });
  const advice = memoryAdvice(est, gpu.limits, {
    batchSize: batch,
    maxBucket,
    cacheLatents: plan.data.cacheLatents,
  });
  if (advice !== null) throw new LorakitError(`not enough GPU memory: ${advice}`);
  return est;
}
