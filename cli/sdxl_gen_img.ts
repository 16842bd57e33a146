/**
 * `lorakit sdxl_gen_img ...`: kohya sd-scripts' sdxl_gen_img.py (see `gen_img_args.ts` for the
 * flags and `gen_img_run.ts` for the run it shares with gen_img). The conditioning step is
 * SDXL's (`core/sample/sdxl_conditioner.ts`); the VAE runs in float32 under `--fp16` when
 * `--no_half_vae` is given or its config says force_upcast (SDXL's VAE overflows in float16).
 * kohya SDXL LoRA files (`lora_te1_`, `lora_te2_`, `lora_unet_`) are applied or merged as in
 * gen_img.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { isSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { loadStableDiffusionXL, type StableDiffusionXL } from "../core/models/mod.ts";
import type { SDConfig } from "../core/model_config/config.ts";
import type { GenModels } from "../core/sample/gen_loop.ts";
import type { SizeConditioning } from "../core/sample/gen_plan.ts";
import { sdxlConditioner, sdxlTimeIds } from "../core/sample/sdxl_conditioner.ts";
import { loadVaeFile } from "../core/sample/vae_file.ts";
import {
  buildGenImgParser,
  type GenImgTool,
  rejectUnsupported,
  SDXL_SIZE_FLAGS,
  type SdxlGenImgArgs,
} from "./gen_img_args.ts";
import {
  type GenBackend,
  type LoadedGenModel,
  loadNetworks,
  runGeneration,
} from "./gen_img_run.ts";
import type { NetworkSpec } from "./gen_img_inputs.ts";
import { runTool } from "./lora_cli.ts";

/** SDXL's VAE latent scale when the config has none (kohya's `VAE_SCALE_FACTOR`). */
const SDXL_LATENT_SCALE = 0.13025;

/** The size conditioning flags, each checked to be a non-negative integer. */
function sizeFlags(a: SdxlGenImgArgs): SizeConditioning {
  for (const f of SDXL_SIZE_FLAGS) {
    const v = a[f];
    if (v !== null && !(Number.isInteger(v) && v >= 0)) {
      throw new LorakitError(`--${f}: expected a non-negative integer, found ${v}`);
    }
  }
  return {
    originalWidth: a.original_width,
    originalHeight: a.original_height,
    originalWidthNegative: a.original_width_negative,
    originalHeightNegative: a.original_height_negative,
    cropTop: a.crop_top,
    cropLeft: a.crop_left,
  };
}

/** The models with the VAE in its own dtype (a separate load or `--vae`), then the networks. */
async function loadModels(
  a: SdxlGenImgArgs,
  specs: NetworkSpec[],
  via: GenImgTool,
): Promise<LoadedGenModel> {
  const dtype = a.fp16 ? "f16" : "f32";
  const sdxl = await loadStableDiffusionXL(a.ckpt!, {
    dtype,
    parts: ["text_encoder", "text_encoder_2", "unet"],
  });
  let vaeOwner: StableDiffusionXL | null = null;
  let vae: (GenModels["vae"] & { dispose(): void }) | null = null;
  try {
    const config = sdxl.config;
    const vaeDtype = a.no_half_vae || config.vae.forceUpcast ? "f32" : dtype;
    if (a.vae !== null) {
      // A VAE file is checked against the model's VAE architecture (SD's layout).
      const asSd: SDConfig = { v2: false, ...config };
      vae = await loadVaeFile(a.vae, asSd, vaeDtype);
    } else {
      vaeOwner = await loadStableDiffusionXL(a.ckpt!, { dtype: vaeDtype, parts: ["vae"] });
      vae = vaeOwner.vae;
    }
    let clipSkip = 2;
    if (via === "gen_img") {
      clipSkip = a.clip_skip ?? 2;
      const most = Math.min(config.textEncoder.numLayers, config.textEncoder2.numLayers);
      if (!(Number.isInteger(clipSkip) && clipSkip >= 1 && clipSkip <= most)) {
        throw new LorakitError(`--clip_skip: expected 1 to ${most}, found ${clipSkip}`);
      }
    } else if (a.clip_skip !== null) {
      console.error(
        "warning: --clip_skip has no effect in sdxl_gen_img (kohya's takes the penultimate " +
          "layers); gen_img uses it on SDXL",
      );
    }
    const latentScale = config.vae.scalingFactor || SDXL_LATENT_SCALE;
    const networks = await loadNetworks(specs, sdxl, a.network_show_meta);
    const theVae = vae;
    const models: GenModels = {
      conditioner: sdxlConditioner({
        tokenizer: sdxl.tokenizer,
        tokenizer2: sdxl.tokenizer2,
        textEncoder: sdxl.textEncoder,
        textEncoder2: sdxl.textEncoder2,
        addEmbedding: config.unet.addEmbedding!,
      }, {
        maxEmbeddingsMultiples: a.max_embeddings_multiples ?? 1,
        embNormalizeMode: a.emb_normalize_mode,
        clipSkip,
      }),
      unet: sdxl.unet,
      vae: theVae,
      latentScale,
    };
    return {
      models,
      networks,
      vPrediction: config.vPrediction,
      clipSkip: 1,
      extraText: (img) => {
        const ids = sdxlTimeIds(img.job.settings.sizeConditioning, {
          width: img.image.width,
          height: img.image.height,
          sizeScale: img.highresPrefix === "0" ? a.highres_fix_scale : null,
        });
        const [oh, ow, ct, cl] = ids.cond, [ohn, own] = ids.uncond;
        return {
          "original-height": String(oh),
          "original-width": String(ow),
          "original-height-negative": String(ohn),
          "original-width-negative": String(own),
          "crop-top": String(ct),
          "crop-left": String(cl),
        };
      },
      dispose() {
        for (const n of networks) n.dispose();
        sdxl.dispose();
        if (vaeOwner !== null) vaeOwner.dispose();
        else theVae.dispose();
      },
    };
  } catch (e) {
    sdxl.dispose();
    if (vaeOwner !== null) vaeOwner.dispose();
    else vae?.dispose();
    throw e;
  }
}

function sdxlBackend(a: SdxlGenImgArgs, via: GenImgTool): GenBackend {
  return {
    defaultSize: 1024,
    sdxlSize: sizeFlags(a),
    async check() {
      if (!(await isSdxlCheckpoint(a.ckpt!))) {
        throw new LorakitError(
          `--ckpt: '${a.ckpt}' is not an SDXL model (no 'conditioner.embedders.1.*' keys or ` +
            `'text_encoder_2/' folder); use lorakit gen_img for SD 1.x/2.x`,
        );
      }
    },
    load: (_a, specs) => loadModels(a, specs, via),
  };
}

/**
 * `lorakit sdxl_gen_img [flags]`; returns the exit code. `via` "gen_img": run for gen_img on an
 * SDXL model (kohya's gen_img.py honours `--clip_skip` there; sdxl_gen_img.py ignores it).
 */
export async function main(args: string[], via: GenImgTool = "sdxl_gen_img"): Promise<number> {
  return await runTool<SdxlGenImgArgs>(buildGenImgParser("sdxl_gen_img"), args, async (a) => {
    rejectUnsupported(a, "sdxl_gen_img");
    return await runGeneration(a, sdxlBackend(a, via));
  });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
