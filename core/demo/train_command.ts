/**
 * The kohya-style `train_network` command line the demo runs, and the sample-prompt file it
 * passes with `--sample_prompts` (kohya's format: a prompt followed by `--n`, `--w`, `--h`,
 * `--d`, `--s`, `--l` options).
 *
 * @module
 */

/** The demo's training settings. */
export interface DemoTrainSettings {
  model: string;
  datasetConfig: string;
  outputDir: string;
  outputName: string;
  loggingDir: string;
  steps: number;
  networkDim: number;
  networkAlpha: number;
  learningRate: number;
  /** `--network_train_unet_only`: LoRA modules on the U-Net only. */
  unetOnly: boolean;
  /** `--min_snr_gamma`; omitted when null. */
  minSnrGamma: number | null;
  seed: number;
  /** `--sample_every_n_steps` and `--sample_prompts`; omitted when null. */
  sampling: { everySteps: number; promptsFile: string } | null;
}

/** One line of a kohya sample-prompt file. */
export interface SamplePrompt {
  prompt: string;
  negative: string;
  width: number;
  height: number;
  seed: number;
  steps: number;
  scale: number;
}

/** The command line (without the program name), flag for flag as one would type it for kohya. */
export function demoTrainArgs(s: DemoTrainSettings): string[] {
  const args = [
    "--pretrained_model_name_or_path",
    s.model,
    "--dataset_config",
    s.datasetConfig,
    "--network_module",
    "networks.lora",
    "--network_dim",
    String(s.networkDim),
    "--network_alpha",
    String(s.networkAlpha),
    "--learning_rate",
    String(s.learningRate),
    "--optimizer_type",
    "AdamW",
    "--lr_scheduler",
    "constant",
    "--max_train_steps",
    String(s.steps),
    "--mixed_precision",
    "no",
    "--save_precision",
    "float",
    "--save_model_as",
    "safetensors",
    "--cache_latents",
    "--seed",
    String(s.seed),
    "--output_dir",
    s.outputDir,
    "--output_name",
    s.outputName,
    "--logging_dir",
    s.loggingDir,
  ];
  if (s.unetOnly) args.push("--network_train_unet_only");
  if (s.minSnrGamma !== null) args.push("--min_snr_gamma", String(s.minSnrGamma));
  if (s.sampling !== null) {
    args.push(
      "--sample_every_n_steps",
      String(s.sampling.everySteps),
      "--sample_prompts",
      s.sampling.promptsFile,
      "--sample_sampler",
      "ddim",
    );
  }
  return args;
}

/** kohya's sample-prompt file text for `prompts`. */
export function samplePromptsText(prompts: readonly SamplePrompt[]): string {
  return prompts.map((p) =>
    `${p.prompt}${p.negative === "" ? "" : ` --n ${p.negative}`} --w ${p.width} --h ${p.height} ` +
    `--d ${p.seed} ` +
    `--s ${p.steps} --l ${p.scale}`
  ).join("\n") + "\n";
}
