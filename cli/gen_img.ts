/**
 * `lorakit gen_img ...`: kohya sd-scripts' gen_img.py for SD 1.x/2.x (see `gen_img_args.ts` for
 * the flags, `gen_img_run.ts` for the run, and `core/sample/gen_plan.ts`, `gen_loop.ts` for what
 * runs). Everything that can be checked is checked before the output folder is touched: that it
 * can be written, files, flags, prompt options, sizes, seeds, the model and the LoRA files
 * against it. An SDXL model generates with SDXL as in kohya's gen_img.py, which takes `--sdxl` and
 * otherwise detects one unless `--v1`/`--v2` is given (see `main`); with those it is an error.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { isSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { exists } from "../core/io/fs.ts";
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
    // Reached with --v1/--v2 only (else an SDXL model runs as sdxl_gen_img, see main).
    if (await isSdxlCheckpoint(a.ckpt!)) {
      throw new LorakitError(
        `--${a.v1 ? "v1" : "v2"}: '${a.ckpt}' is an SDXL model, not SD ${a.v1 ? "1.x" : "2.x"}; ` +
          `drop the flag (gen_img then generates with SDXL) or use lorakit sdxl_gen_img`,
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
 * `lorakit gen_img [flags]`; returns the exit code. As kohya's gen_img.py, an SDXL model (`--sdxl`,
 * or detected when neither `--v1` nor `--v2` is given) generates with SDXL: the flags are read
 * as sdxl_gen_img's, with `--clip_skip` used (default 2) as kohya's gen_img uses it.
 */
export async function main(args: string[]): Promise<number> {
  const sdxl = async (rest: string[]) => {
    const { main: sdxlMain } = await import("./sdxl_gen_img.ts");
    return await sdxlMain(rest, "gen_img");
  };
  if (args.includes("--sdxl")) return await sdxl(args.filter((x) => x !== "--sdxl"));
  return await runTool<GenImgArgs>(buildGenImgParser(), args, async (a) => {
    if (
      !a.v1 && !a.v2 && a.ckpt !== null && (await exists(a.ckpt)) &&
      (await isSdxlCheckpoint(a.ckpt))
    ) {
      console.error(`${a.ckpt}: an SDXL model: generating with SDXL (as kohya's gen_img.py)`);
      return await sdxl(args);
    }
    return await run(a);
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
