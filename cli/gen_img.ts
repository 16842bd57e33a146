/**
 * `lorakit gen_img ...`: kohya sd-scripts' gen_img.py for SD 1.x/2.x (see `gen_img_args.ts` for
 * the flags, `gen_img_run.ts` for the run, and `core/sample/gen_plan.ts`, `gen_loop.ts` for what
 * runs). Everything that can be checked is checked before the output folder is touched: that it
 * can be written, files, flags, prompt options, sizes, seeds, the model and the LoRA files
 * against it. An SDXL checkpoint is refused with a pointer to sdxl_gen_img (kohya's gen_img.py
 * also needs `--sdxl` for one; `--sdxl` here runs sdxl_gen_img).
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { isSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { loadStableDiffusion, type StableDiffusion } from "../core/models/mod.ts";
import type { GenModels } from "../core/sample/gen_loop.ts";
import { loadVaeFile } from "../core/sample/vae_file.ts";
import { buildGenImgParser, type GenImgArgs, rejectUnsupported } from "./gen_img_args.ts";
import { type GenBackend, loadNetworks, runGeneration } from "./gen_img_run.ts";
import { runTool } from "./lora_cli.ts";

async function loadModels(a: GenImgArgs): Promise<{ sd: StableDiffusion; models: GenModels }> {
  const dtype = a.fp16 ? "f16" : "f32";
  const v2 = a.v2 ? true : a.v1 ? false : undefined;
  const opts = { v2, vPrediction: a.v_parameterization || undefined };
  const separateVae = a.vae !== null || (a.fp16 && a.no_half_vae);
  const sd = await loadStableDiffusion(a.ckpt!, {
    ...opts,
    dtype,
    parts: separateVae ? ["text_encoder", "unet"] : ["text_encoder", "unet", "vae"],
  });
  if (a.v1 && sd.config.v2) {
    sd.dispose();
    throw new LorakitError(`--v1: expected an SD 1.x model, found SD 2.x weights in ${a.ckpt}`);
  }
  try {
    const vaeDtype = a.no_half_vae ? "f32" : dtype;
    const vae: GenModels["vae"] & { dispose(): void } = a.vae !== null
      ? await loadVaeFile(a.vae, sd.config, vaeDtype)
      : separateVae
      ? (await loadStableDiffusion(a.ckpt!, { ...opts, dtype: vaeDtype, parts: ["vae"] })).vae
      : sd.vae;
    const whole: StableDiffusion = {
      config: sd.config,
      tokenizer: sd.tokenizer,
      textEncoder: sd.textEncoder,
      unet: sd.unet,
      vae: vae as StableDiffusion["vae"],
      dispose() {
        sd.dispose();
        if (separateVae) vae.dispose();
      },
    };
    return {
      sd: whole,
      models: { tokenizer: sd.tokenizer, textEncoder: sd.textEncoder, unet: sd.unet, vae },
    };
  } catch (e) {
    sd.dispose();
    throw e;
  }
}

/** SD 1.x/2.x: the checkpoint, then the networks applied or merged into it. */
const SD_BACKEND: GenBackend = {
  defaultSize: 512,
  async check(a) {
    if (await isSdxlCheckpoint(a.ckpt!)) {
      throw new LorakitError(
        `--ckpt: '${a.ckpt}' is an SDXL model; use lorakit sdxl_gen_img (or gen_img --sdxl, as ` +
          `kohya's gen_img.py takes it) with the same flags`,
      );
    }
  },
  async load(a, specs) {
    const { sd, models } = await loadModels(a);
    try {
      const networks = await loadNetworks(specs, sd, a.network_show_meta);
      return {
        models,
        networks,
        vPrediction: sd.config.vPrediction,
        clipSkip: a.clip_skip ?? (sd.config.v2 ? 2 : 1),
        dispose() {
          for (const n of networks) n.dispose();
          sd.dispose();
        },
      };
    } catch (e) {
      sd.dispose();
      throw e;
    }
  },
};

async function run(a: GenImgArgs): Promise<number> {
  rejectUnsupported(a);
  return await runGeneration(a, SD_BACKEND);
}

/**
 * `lorakit gen_img [flags]`; returns the exit code. With `--sdxl` (kohya's gen_img.py flag for
 * SDXL models) it runs `lorakit sdxl_gen_img` with the other flags.
 */
export async function main(args: string[]): Promise<number> {
  if (args.includes("--sdxl")) {
    const { main: sdxlMain } = await import("./sdxl_gen_img.ts");
    return await sdxlMain(args.filter((x) => x !== "--sdxl"));
  }
  return await runTool<GenImgArgs>(buildGenImgParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
