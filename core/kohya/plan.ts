/**
 * `planTrainRun(args)`: train_network's parsed command line resolved into a {@link TrainPlan},
 * once. Every kohya default and quirk is decided here — `--use_8bit_adam`/`--use_lion_optimizer`
 * over `--optimizer_type`, `--cache_latents_to_disk` turning `--cache_latents` on, the default
 * rank, `--max_grad_norm 0` meaning off, `--text_encoder_lr` taking its first value, the dataset
 * flags as the fallbacks of a dataset config — and the settings lorakit cannot honour are errors
 * naming their flag before anything is read or loaded.
 *
 * @module
 */
import { baseName } from "../io/fs.ts";
import type { NetworkModuleName } from "../lora/modules.ts";
import { parseNetworkArgs } from "./network_args.ts";
import { windowCountFor } from "../text/token_windows.ts";
import { generateBlueprint, loadDatasetConfig, userConfigFromArgs } from "./dataset_config.ts";
import { chooseOptimizer, parseOptimizerArgs } from "./optimizer_choice.ts";
import type { DatasetSource, MetadataPlan, SavingPlan, TrainPlan } from "./plan_types.ts";
import type { SdxlTrainArgs, TrainArgs, TrainTool } from "./train_args.ts";
import { checkTrainSupport } from "./train_support.ts";

/** The datasets from `--dataset_config`, else from the folder flags (`--train_data_dir`, ...). */
async function datasetSource(args: TrainArgs): Promise<DatasetSource> {
  const flags = args as unknown as Record<string, unknown>;
  const messages: string[] = [];
  const where = args.dataset_config ?? args.train_data_dir ?? args.in_json ?? "the dataset";
  if (args.dataset_config !== null) {
    const file = args.dataset_config;
    const ignored = ["train_data_dir", "reg_data_dir", "in_json"].filter((k) => flags[k] !== null);
    if (ignored.length > 0) {
      messages.push(
        `ignoring the following options because config file is found: ${ignored.join(", ")}`,
      );
    }
    const config = await loadDatasetConfig(file);
    return {
      blueprint: generateBlueprint(config, flags),
      fromConfigFile: true,
      messages,
      label: file,
      where,
      resolutionLabel: (i) => `${file}: datasets[${i}].resolution`,
    };
  }
  const { config, warnings } = await userConfigFromArgs(flags);
  messages.push(...warnings);
  return {
    blueprint: generateBlueprint(config, flags),
    fromConfigFile: false,
    messages,
    label: "--train_data_dir",
    where,
    resolutionLabel: () => "--resolution",
  };
}

/** kohya's `ss_*` settings that come straight from the command line. */
function metadataPlan(args: TrainArgs, cacheLatents: boolean, sdxl: boolean): MetadataPlan {
  const a = args;
  const settings: Record<string, unknown> = {
    output_name: a.output_name,
    learning_rate: a.learning_rate,
    text_encoder_lr: a.text_encoder_lr?.[0] ?? null,
    unet_lr: a.unet_lr,
    gradient_checkpointing: a.gradient_checkpointing,
    gradient_accumulation_steps: a.gradient_accumulation_steps,
    lr_scheduler: a.lr_scheduler,
    network_module: a.network_module,
    network_dim: a.network_dim ?? 4,
    network_alpha: a.network_alpha,
    network_dropout: a.network_dropout,
    mixed_precision: a.mixed_precision,
    full_fp16: a.full_fp16,
    v2: a.v2,
    clip_skip: a.clip_skip,
    max_token_length: a.max_token_length,
    cache_latents: cacheLatents,
    lowram: a.lowram,
    noise_offset: a.noise_offset,
    training_comment: a.training_comment,
    max_grad_norm: a.max_grad_norm,
    caption_dropout_rate: a.caption_dropout_rate,
    caption_dropout_every_n_epochs: a.caption_dropout_every_n_epochs,
    caption_tag_dropout_rate: a.caption_tag_dropout_rate,
    prior_loss_weight: a.prior_loss_weight,
    min_snr_gamma: a.min_snr_gamma,
    scale_weight_norms: a.scale_weight_norms,
    debiased_estimation: a.debiased_estimation_loss,
    noise_offset_random_strength: a.noise_offset_random_strength,
    resize_interpolation: a.resize_interpolation,
    sd_model_name: baseName(a.pretrained_model_name_or_path ?? ""),
  };
  if (a.vae !== null) settings.vae_name = baseName(a.vae);
  return {
    minimal: a.no_metadata,
    settings,
    batchSizePerDevice: a.train_batch_size,
    totalBatchSize: a.train_batch_size * a.gradient_accumulation_steps,
    sdxl,
    v2: a.v2,
    vParameterization: a.v_parameterization,
    title: a.metadata_title ?? a.output_name ?? "last",
    author: a.metadata_author ?? undefined,
    description: a.metadata_description ?? undefined,
    license: a.metadata_license ?? undefined,
    tags: a.metadata_tags ?? undefined,
    usageHint: a.metadata_usage_hint ?? undefined,
    clipSkip: a.clip_skip ?? undefined,
  };
}

/** Resolve train_network's (or sdxl_train_network's) arguments into the plan the trainer runs. */
export function planTrainRun(
  args: TrainArgs | SdxlTrainArgs,
  tool: TrainTool = "train_network",
): TrainPlan {
  checkTrainSupport(args);
  const sdxl = tool === "sdxl_train_network";
  const sdxlArgs = args as Partial<SdxlTrainArgs>;
  // kohya turns cache_latents on implicitly.
  const cacheLatents = args.cache_latents || args.cache_latents_to_disk;
  const module = (args.network_module ?? "networks.lora") as NetworkModuleName;
  let optimizerType = args.optimizer_type;
  if (args.use_8bit_adam) optimizerType = "AdamW8bit";
  if (args.use_lion_optimizer) optimizerType = "Lion";
  const choice = chooseOptimizer(optimizerType, parseOptimizerArgs(args.optimizer_args ?? []));
  const multipliers = args.base_weights_multiplier ?? [];
  return {
    seed: args.seed,
    model: {
      path: args.pretrained_model_name_or_path!,
      sdxl,
      v2: args.v2 || undefined,
      vParameterization: args.v_parameterization,
      vae: args.vae,
      noHalfVae: args.no_half_vae,
      baseWeights: (args.base_weights ?? []).map((path, i) => ({
        path,
        multiplier: multipliers[i] ?? 1,
      })),
      clipSkip: args.clip_skip ?? 1,
      tokenWindows: windowCountFor(args.max_token_length),
      maxTokenLength: args.max_token_length,
    },
    precision: {
      fp16: args.mixed_precision === "fp16",
      fullFp16: args.full_fp16,
      gradientCheckpointing: args.gradient_checkpointing,
    },
    data: {
      source: () => datasetSource(args),
      workers: args.max_data_loader_n_workers,
      persistentWorkers: args.persistent_data_loader_workers,
      resizeInterpolation: args.resize_interpolation,
      cacheLatents,
      cacheLatentsToDisk: args.cache_latents_to_disk,
      cacheTextEncoderOutputs: sdxl && !!sdxlArgs.cache_text_encoder_outputs,
      cacheTextEncoderOutputsToDisk: sdxl && !!sdxlArgs.cache_text_encoder_outputs_to_disk,
      skipCacheCheck: args.skip_cache_check,
      vaeBatchSize: args.vae_batch_size,
    },
    network: {
      module,
      dim: args.network_dim ?? 4,
      alpha: args.network_alpha,
      dropout: args.network_dropout,
      args: parseNetworkArgs(args.network_args ?? [], module),
      rawArgs: args.network_args ?? [],
      unetOnly: args.network_train_unet_only,
      textEncoderOnly: args.network_train_text_encoder_only,
      weights: args.network_weights,
      dimFromWeights: args.dim_from_weights,
    },
    optimizer: {
      choice,
      learningRate: args.learning_rate,
      unetLr: args.unet_lr,
      textEncoderLr: args.text_encoder_lr?.[0] ?? null,
      maxGradNorm: args.max_grad_norm > 0 ? args.max_grad_norm : null,
      scaleWeightNorms: args.scale_weight_norms !== null && args.scale_weight_norms > 0
        ? args.scale_weight_norms
        : null,
    },
    schedule: {
      maxTrainSteps: args.max_train_steps,
      maxTrainEpochs: args.max_train_epochs,
      gradientAccumulationSteps: args.gradient_accumulation_steps,
      warmup: args.lr_warmup_steps,
      scheduler: choice.ownLr ? "adafactor" : args.lr_scheduler,
      numCycles: args.lr_scheduler_num_cycles,
      power: args.lr_scheduler_power,
    },
    loss: {
      minTimestep: args.min_timestep ?? 0,
      maxTimestep: args.max_timestep ?? 1000,
      noiseOffset: args.noise_offset ?? 0,
      noiseOffsetRandomStrength: args.noise_offset_random_strength,
      minSnrGamma: args.min_snr_gamma,
      scaleVPredLossLikeNoisePred: args.scale_v_pred_loss_like_noise_pred,
      vPredLikeLoss: args.v_pred_like_loss,
      debiasedEstimation: args.debiased_estimation_loss,
    },
    saving: {
      outputDir: args.output_dir ?? ".",
      outputName: args.output_name,
      format: args.save_model_as ?? "safetensors",
      precision: (args.save_precision ?? "float") as SavingPlan["precision"],
      everyNEpochs: args.save_every_n_epochs,
      nEpochRatio: args.save_n_epoch_ratio,
      everyNSteps: args.save_every_n_steps,
      lastNEpochs: args.save_last_n_epochs,
      lastNEpochsState: args.save_last_n_epochs_state,
      lastNSteps: args.save_last_n_steps,
      lastNStepsState: args.save_last_n_steps_state,
      state: args.save_state,
      stateOnTrainEnd: args.save_state_on_train_end,
      resume: args.resume,
    },
    sampling: {
      prompts: args.sample_prompts,
      sampler: args.sample_sampler,
      everyNSteps: args.sample_every_n_steps,
      everyNEpochs: args.sample_every_n_epochs,
      atFirst: args.sample_at_first,
    },
    logging: { dir: args.logging_dir, prefix: args.log_prefix },
    metadata: metadataPlan(args, cacheLatents, sdxl),
  };
}
