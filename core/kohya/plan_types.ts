/**
 * `TrainPlan`: a train_network run as typed values, with every kohya default and quirk already
 * resolved (plan.ts builds it from the command line). The training code takes a plan and never
 * reads a flag by name; a test can write one as a literal.
 *
 * @module
 */
import type { Blueprint } from "./dataset_config.ts";
import type { NetworkArgs } from "../lora/network_args.ts";
import type { NetworkModuleName } from "../lora/modules.ts";
import type { OptimizerChoice } from "./optimizer_choice.ts";

/** The base model and how it is loaded. */
export interface ModelPlan {
  /** Checkpoint file or diffusers folder. */
  path: string;
  /** An SDXL model (sdxl_train_network): two text encoders and size conditioning. */
  sdxl: boolean;
  /** SD 2.x, when the weights cannot say (`undefined`: from the weights). */
  v2?: boolean;
  /** v-prediction target. */
  vParameterization: boolean;
  /** A separate VAE file, or null for the checkpoint's own. */
  vae: string | null;
  /** Keep the VAE in f32 under fp16. */
  noHalfVae: boolean;
  /** LoRA files merged into the model before training, with their multipliers. */
  baseWeights: { path: string; multiplier: number }[];
  /** Text encoder layer to condition on, counted from the end (1 = last). */
  clipSkip: number;
  /** Token windows of 75 tokens each (1, 2 or 3). */
  tokenWindows: number;
  /** kohya's `max_token_length` (null, 150 or 225), as the data loader takes it. */
  maxTokenLength: number | null;
}

/** Datasets as kohya's dataset config (or the folder flags) describe them. */
export interface DatasetSource {
  blueprint: Blueprint;
  /** True when a dataset config file described them (kohya records `ss_datasets` then). */
  fromConfigFile: boolean;
  /** kohya's notes about the source (ignored flags, folder warnings), in order. */
  messages: string[];
  /** How errors name the source: the config file, or the flag that gave the folders. */
  label: string;
  /** How the error for a source without images names it. */
  where: string;
  /** How an error about the resolution names it (`<file>: datasets[i].resolution`). */
  resolutionLabel(datasetIndex: number): string;
}

/** The data side of the run. */
export interface DataPlan {
  /** Reads the dataset config (or scans the folder flags): called once training starts. */
  source(): Promise<DatasetSource>;
  /** Data loader worker count (0: load in the training thread). */
  workers: number;
  persistentWorkers: boolean;
  /** Resize filter (null: area when shrinking, lanczos when enlarging). */
  resizeInterpolation: string | null;
  cacheLatents: boolean;
  cacheLatentsToDisk: boolean;
  /** SDXL: encode each caption once before training (the text encoders stay frozen). */
  cacheTextEncoderOutputs: boolean;
  cacheTextEncoderOutputsToDisk: boolean;
  skipCacheCheck: boolean;
  vaeBatchSize: number;
}

/** The LoRA network. */
export interface NetworkPlan {
  module: NetworkModuleName;
  dim: number;
  alpha: number | undefined;
  /** Neuron dropout (null: none). */
  dropout: number | null;
  /** `network_args`, parsed once. */
  args: NetworkArgs;
  /** The raw `key=value` strings, as the network module takes them. */
  rawArgs: string[];
  unetOnly: boolean;
  textEncoderOnly: boolean;
  /** LoRA weights to start from (null: initialised). */
  weights: string | null;
  /** Take ranks and alphas from `weights` instead of `dim`/`alpha`. */
  dimFromWeights: boolean;
}

/** The optimizer and what feeds it. */
export interface OptimizerPlan {
  choice: OptimizerChoice;
  learningRate: number;
  unetLr: number | null;
  textEncoderLr: number | null;
  /** Gradient clipping norm (null: off). */
  maxGradNorm: number | null;
  /** Max-norm regularization of the LoRA weights (null: off). */
  scaleWeightNorms: number | null;
}

/** Step counts and the lr schedule. */
export interface SchedulePlan {
  /** Steps; replaced by `maxTrainEpochs` epochs when that is set. */
  maxTrainSteps: number;
  maxTrainEpochs: number | null;
  gradientAccumulationSteps: number;
  /** Warmup: a step count, or a ratio of the steps when below 1. */
  warmup: number;
  /** diffusers' scheduler name, or "adafactor" (the optimizer's own lr). */
  scheduler: string;
  numCycles: number;
  power: number;
}

/** How each sample's loss is made and weighted. */
export interface LossPlan {
  /** Timesteps are drawn uniformly from [minTimestep, maxTimestep). */
  minTimestep: number;
  maxTimestep: number;
  /** Offset noise strength (0: off); random in [0, strength) per run when `randomStrength`. */
  noiseOffset: number;
  noiseOffsetRandomStrength: boolean;
  minSnrGamma: number | null;
  scaleVPredLossLikeNoisePred: boolean;
  /** The v-prediction-like loss factor (0 or null: off). */
  vPredLikeLoss: number | null;
  debiasedEstimation: boolean;
}

/** Training precision. */
export interface PrecisionPlan {
  /** Model and activations in f16, with a loss scaler. */
  fp16: boolean;
  /** The LoRA factors themselves in f16. */
  fullFp16: boolean;
  gradientCheckpointing: boolean;
}

/** What is written, when, and under which names. */
export interface SavingPlan {
  outputDir: string;
  /** The base name (null: kohya's defaults, `last`, `epoch`, `at`). */
  outputName: string | null;
  /** `safetensors`, `ckpt` or `pt`. */
  format: string;
  /** dtype of the saved weights. */
  precision: "float" | "fp16" | "bf16";
  everyNEpochs: number | null;
  /** Save at least N files over the run (overrides `everyNEpochs`). */
  nEpochRatio: number | null;
  everyNSteps: number | null;
  lastNEpochs: number | null;
  lastNEpochsState: number | null;
  lastNSteps: number | null;
  lastNStepsState: number | null;
  /** A training state beside each save. */
  state: boolean;
  stateOnTrainEnd: boolean;
  /** The state folder to resume from. */
  resume: string | null;
}

/** Sample images during training. */
export interface SamplingPlan {
  /** The prompt file (null: no samples). */
  prompts: string | null;
  sampler: string;
  everyNSteps: number | null;
  everyNEpochs: number | null;
  atFirst: boolean;
}

/** Where the step log goes. */
export interface LoggingPlan {
  /** The log folder (null: no log). */
  dir: string | null;
  prefix: string | null;
}

/** What goes into the saved files' metadata beyond what the run measures. */
export interface MetadataPlan {
  /** Only kohya's minimum (network and base model keys) plus `modelspec.*`. */
  minimal: boolean;
  /** kohya's `ss_*` training settings from the command line, by key without `ss_`. */
  settings: Record<string, unknown>;
  /** The flat dataset keys' batch sizes (without a dataset config). */
  batchSizePerDevice: number;
  totalBatchSize: number;
  /** An SDXL network (`ss_base_model_version` sdxl_base_v1-0, the SDXL modelspec). */
  sdxl: boolean;
  /** `modelspec.*` fields. */
  v2: boolean;
  vParameterization: boolean;
  title: string;
  author?: string;
  description?: string;
  license?: string;
  tags?: string;
  usageHint?: string;
  clipSkip?: number;
}

/** A whole train_network run. */
export interface TrainPlan {
  /** The run's seed (null: a resumed run's state seed, else random). */
  seed: number | null;
  model: ModelPlan;
  precision: PrecisionPlan;
  data: DataPlan;
  network: NetworkPlan;
  optimizer: OptimizerPlan;
  schedule: SchedulePlan;
  loss: LossPlan;
  saving: SavingPlan;
  sampling: SamplingPlan;
  logging: LoggingPlan;
  metadata: MetadataPlan;
}
