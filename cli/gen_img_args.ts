/**
 * The command line of `lorakit gen_img`: kohya gen_img's flags with its defaults. Flags that only
 * tune kohya's speed or memory are accepted and have no effect (the images are the same); flags
 * of features lorakit does not have are accepted by the parser only to be reported as a clear
 * error, never ignored.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { SAMPLER_CHOICES } from "../core/sample/sampler_registry.ts";
import { makeParser, type Parser } from "./lora_cli.ts";

/** Parsed flags (argparse's names). */
export interface GenImgArgs {
  ckpt: string | null;
  v1: boolean;
  v2: boolean;
  v_parameterization: boolean;
  vae: string | null;
  outdir: string;
  prompt: string | null;
  from_file: string | null;
  image_path: string | null;
  strength: number | null;
  images_per_prompt: number;
  n_iter: number;
  batch_size: number;
  vae_batch_size: number | null;
  steps: number;
  sampler: string;
  scale: number;
  negative_scale: number | null;
  W: number | null;
  H: number | null;
  seed: number | null;
  iter_same_seed: boolean;
  shuffle_prompts: boolean;
  fp16: boolean;
  no_half_vae: boolean;
  clip_skip: number | null;
  max_embeddings_multiples: number | null;
  emb_normalize_mode: "original" | "abs" | "none";
  network_module: string[] | null;
  network_weights: string[] | null;
  network_mul: number[] | null;
  network_show_meta: boolean;
  network_merge: boolean;
  network_merge_n_models: number | null;
  network_pre_calc: boolean;
  highres_fix_scale: number | null;
  highres_fix_steps: number;
  highres_fix_strength: number | null;
  highres_fix_save_1st: boolean;
  sequential_file_name: boolean;
  use_original_file_name: boolean;
  [unsupported: string]: unknown;
}

/** kohya flags that only change its speed or memory use: accepted, no effect here. */
const NO_EFFECT_FLAGS = [
  "xformers",
  "sdpa",
  "diffusers_xformers",
  "opt_channels_last",
  "no_preview",
];
const NO_EFFECT_VALUED = ["vae_slices", "tokenizer_cache_dir"];

/** `lorakit sdxl_gen_img`'s own flags (kohya's sdxl_gen_img): SDXL's size conditioning. */
export interface SdxlGenImgArgs extends GenImgArgs {
  original_height: number | null;
  original_width: number | null;
  original_height_negative: number | null;
  original_width_negative: number | null;
  crop_top: number | null;
  crop_left: number | null;
}

/** SDXL's size conditioning flags, in kohya's order. */
export const SDXL_SIZE_FLAGS = [
  "original_height",
  "original_width",
  "original_height_negative",
  "original_width_negative",
  "crop_top",
  "crop_left",
] as const;

/** gen_img's flags that sdxl_gen_img does not have (kohya's has none of them either). */
const SD_ONLY_FLAGS = ["v1", "v2", "v_parameterization"];

/** Which tool a parser is for. */
export type GenImgTool = "gen_img" | "sdxl_gen_img";

/** kohya flags of features lorakit does not have: an error when given. */
export const UNSUPPORTED_FLAGS: readonly string[] = [
  "sdxl",
  "bf16",
  "full_fp16",
  "full_bf16",
  "from_module",
  "prompter_module_args",
  "interactive",
  "mask_path",
  "original_height",
  "original_width",
  "original_height_negative",
  "original_width_negative",
  "crop_top",
  "crop_left",
  "network_args",
  "network_regional_mask_max_color_codes",
  "textual_inversion_embeddings",
  "guide_image_path",
  "highres_fix_latents_upscaling",
  "highres_fix_upscaler",
  "highres_fix_upscaler_args",
  "highres_fix_disable_control_net",
  "control_net_lllite_models",
  "control_net_models",
  "control_net_preps",
  "control_net_multipliers",
  "control_net_ratios",
  "clip_vision_strength",
  "ds_depth_1",
  "ds_timesteps_1",
  "ds_depth_2",
  "ds_timesteps_2",
  "ds_ratio",
  "gradual_latent_timesteps",
  "gradual_latent_ratio",
  "gradual_latent_ratio_step",
  "gradual_latent_every_n_steps",
  "gradual_latent_s_noise",
  "gradual_latent_unsharp_params",
  "console_log_level",
  "console_log_file",
  "console_log_simple",
];

const SDXL_DESCRIPTION =
  "Generate images with an SDXL model as kohya sd-scripts' sdxl_gen_img.py does (same flags; " +
  "default size 1024x1024; SDXL's size conditioning from --original_height/--original_width, " +
  "their _negative forms, --crop_top/--crop_left and per-prompt --oh --ow --nh --nw --ct --cl; " +
  "both text encoders' penultimate layers with kohya's prompt weighting per encoder; kohya SDXL " +
  "LoRA files applied or merged; the " +
  "negative prompt, empty or not, is encoded as text (kohya; diffusers' pipeline uses zeros for " +
  "an empty one); with --fp16 the VAE stays in float32 when its config says force_upcast, as " +
  "with --no_half_vae). Samplers are kohya's: the same scheduler settings as gen_img, whatever " +
  "the model folder's scheduler config says. --negative_scale is not supported (kohya's SDXL " +
  "pipeline fails with it) and --clip_skip has no effect (always the penultimate layers; " +
  "gen_img on an SDXL model, which runs this with --clip_skip used, as kohya's gen_img.py). " +
  "A seed gives a different image than in kohya (lorakit's random generator is not PyTorch's). " +
  "PNGs carry A1111's 'parameters' text and kohya's text keys, with the size conditioning used.";

const DESCRIPTION =
  "Generate images with an SD 1.x/2.x model as kohya sd-scripts' gen_img.py does (same flags, " +
  "prompt files with per-prompt options --n --w --h --d --l --nl --s --t --am --f, prompt " +
  "weighting, long prompts in 75-token chunks, LoRA networks applied or merged, img2img, " +
  "highres fix). Each image's noises are drawn from its seed up front, so a seed gives the " +
  "same image at any batch size; lorakit's random generator is not PyTorch's, so a seed gives " +
  "a different image than in kohya. PNGs carry A1111's 'parameters' text (PNG Info) and " +
  "kohya's own text keys. Inputs are checked before anything is written; each PNG is written " +
  "to a temporary name and renamed. An SDXL model (--sdxl, or detected unless --v1/--v2 is " +
  "given, as kohya) generates as lorakit sdxl_gen_img with --clip_skip used (default 2).";

/** The gen_img parser, or sdxl_gen_img's (SDXL's flags, no --v1/--v2/--v_parameterization). */
export function buildGenImgParser(tool: GenImgTool = "gen_img"): Parser {
  const sdxl = tool === "sdxl_gen_img";
  const p = makeParser(tool, sdxl ? SDXL_DESCRIPTION : DESCRIPTION);
  const a = (name: string, o: Record<string, unknown>) => {
    if (!(sdxl && SD_ONLY_FLAGS.includes(name))) p.add_argument(`--${name}`, o);
  };
  const size = sdxl ? 1024 : 512;
  a("ckpt", {
    type: "str",
    default: null,
    help: sdxl
      ? "model: SGM .safetensors/.ckpt or diffusers folder"
      : "model: LDM .safetensors/.ckpt or diffusers folder",
  });
  a("v1", { action: "store_true", help: "the model is SD 1.x (an SD 2.x model is then an error)" });
  a("v2", { action: "store_true", help: "the model is SD 2.x (else inferred from its weights)" });
  a("v_parameterization", { action: "store_true", help: "v-prediction model (SD 2.x 768-v)" });
  a("vae", { type: "str", default: null, help: "replacement VAE: file or diffusers folder" });
  a("outdir", { type: "str", default: "outputs", help: "output folder (default: outputs)" });
  a("prompt", { type: "str", default: null, help: "prompt, with optional per-prompt options" });
  a("from_file", {
    type: "str",
    default: null,
    help: "prompt file: one prompt per line, # comments",
  });
  a("image_path", { type: "str", default: null, help: "img2img source image or folder" });
  a("strength", { type: "float", default: null, help: "img2img strength (default 0.8)" });
  a("images_per_prompt", { type: "int", default: 1, help: "images per prompt (default 1)" });
  a("n_iter", { type: "int", default: 1, help: "repeat the whole prompt list this often" });
  a("batch_size", { type: "int", default: 1, help: "images per sampler batch (default 1)" });
  a("vae_batch_size", {
    type: "float",
    default: null,
    help: "images per VAE call; below 1: that share of the batch",
  });
  a("steps", { type: "int", default: 50, help: "sampling steps (default 50)" });
  a("sampler", {
    type: "str",
    default: "ddim",
    choices: [...SAMPLER_CHOICES],
    help: "sampler (default ddim)",
  });
  a("scale", { type: "float", default: 7.5, help: "guidance scale; 1 or below: no guidance" });
  a("negative_scale", { type: "float", default: null, help: "separate scale for the negative" });
  a("W", { type: "int", default: null, help: `image width (default ${size}), multiple of 8` });
  a("H", { type: "int", default: null, help: `image height (default ${size}), multiple of 8` });
  if (sdxl) {
    const sizeHelp: Record<(typeof SDXL_SIZE_FLAGS)[number], string> = {
      original_height: "SDXL conditioning: original height (default: the image height)",
      original_width: "SDXL conditioning: original width (default: the image width)",
      original_height_negative: "the negative's original height (default: --original_height)",
      original_width_negative: "the negative's original width (default: --original_width)",
      crop_top: "SDXL conditioning: crop top (default 0)",
      crop_left: "SDXL conditioning: crop left (default 0)",
    };
    for (const f of SDXL_SIZE_FLAGS) a(f, { type: "int", default: null, help: sizeHelp[f] });
  }
  a("seed", {
    type: "int",
    default: null,
    help: "seed of the image (one prompt, one image) or of the seeds (0 .. 2^32-1)",
  });
  a("iter_same_seed", { action: "store_true", help: "one seed for all prompts of an iteration" });
  a("shuffle_prompts", { action: "store_true", help: "shuffle the prompts in each iteration" });
  a("fp16", { action: "store_true", help: "store and compute the models in float16" });
  a("no_half_vae", {
    action: "store_true",
    help: sdxl
      ? "with --fp16, keep the VAE in float32 (also done when the VAE's config says force_upcast)"
      : "with --fp16, keep the VAE in float32",
  });
  a("clip_skip", {
    type: "int",
    default: null,
    help: sdxl
      ? "no effect in sdxl_gen_img (the penultimate layers, as kohya's); used by gen_img on " +
        "SDXL (both encoders' hidden_states[-k], default 2)"
      : "use the text encoder's output this many layers from the end (default: 1 for SD 1.x, " +
        "2 for SD 2.x, as kohya's gen_img sets it)",
  });
  a("max_embeddings_multiples", {
    type: "int",
    default: null,
    help: "prompts up to 75 x this tokens (default 1)",
  });
  a("emb_normalize_mode", {
    type: "str",
    default: "original",
    choices: ["original", "none", "abs"],
    help: "how weighted embeddings are renormalised (default original)",
  });
  a("network_module", {
    type: "str",
    nargs: "*",
    default: null,
    help: "networks.lora, per network",
  });
  a("network_weights", { type: "str", nargs: "*", default: null, help: "LoRA files" });
  a("network_mul", { type: "float", nargs: "*", default: null, help: "multipliers (default 1)" });
  a("network_show_meta", { action: "store_true", help: "print each LoRA file's metadata" });
  a("network_merge", { action: "store_true", help: "merge all networks into the weights" });
  a("network_merge_n_models", { type: "int", default: null, help: "merge the first n networks" });
  a("network_pre_calc", {
    action: "store_true",
    help: "accepted; no effect (kohya's speed-up computes the same images)",
  });
  a("highres_fix_scale", { type: "float", default: null, help: "enable highres fix: 1st size" });
  a("highres_fix_steps", { type: "int", default: 28, help: "1st stage steps (default 28)" });
  a("highres_fix_strength", { type: "float", default: null, help: "1st stage img2img strength" });
  a("highres_fix_save_1st", { action: "store_true", help: "also save the 1st stage images" });
  a("sequential_file_name", { action: "store_true", help: "name outputs im_000001.png, ..." });
  a("use_original_file_name", { action: "store_true", help: "img2img: name by the source" });
  for (const f of NO_EFFECT_FLAGS) {
    a(f, { action: "store_true", help: "accepted for kohya compatibility; no effect here" });
  }
  for (const f of NO_EFFECT_VALUED) {
    a(f, { type: "str", default: null, help: "accepted for kohya compatibility; no effect here" });
  }
  for (const f of unsupportedFlags(tool)) {
    a(f, { nargs: "*", default: null, help: "kohya flag of a feature lorakit lacks: an error" });
  }
  return p;
}

/** The unsupported flags of a tool (sdxl_gen_img has the size flags, and no --sdxl). */
function unsupportedFlags(tool: GenImgTool): readonly string[] {
  if (tool === "gen_img") return UNSUPPORTED_FLAGS;
  const own = new Set<string>(["sdxl", ...SDXL_SIZE_FLAGS]);
  return UNSUPPORTED_FLAGS.filter((f) => !own.has(f));
}

/** A LorakitError for the first unsupported flag given, if any. */
export function rejectUnsupported(args: GenImgArgs, tool: GenImgTool = "gen_img"): void {
  const given = unsupportedFlags(tool).filter((f) => args[f] !== null && args[f] !== undefined);
  if (given.length > 0) {
    throw new LorakitError(
      `--${given[0]}: kohya ${tool}'s flag is not supported by lorakit (expected none of ` +
        `${given.map((f) => `--${f}`).join(", ")}); remove it`,
    );
  }
  if (args.ckpt === null) throw new LorakitError("--ckpt: expected a model path, found none");
}
