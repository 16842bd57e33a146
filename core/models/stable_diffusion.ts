/**
 * A whole SD 1.x/2.x pipeline's models from one checkpoint (LDM `.safetensors`/`.ckpt` or a
 * diffusers folder): config, tokenizer (SD2 pads with `!`), text encoder, U-Net and VAE on the
 * GPU in f32 or f16.
 *
 * @module
 */
import type { DType } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { loadCheckpoint, type LoadedCheckpoint } from "../io/checkpoint.ts";
import { ClipTokenizer } from "../text/clip_tokenizer.ts";
import { ClipTextEncoder } from "./clip.ts";
import type { SDConfig } from "../model_config/config.ts";
import { UNet2DConditionModel } from "./unet.ts";
import { AutoencoderKL } from "./vae.ts";
import { type ModelPart, type ModelWeights, uploadWeights } from "./weights.ts";

/** Options of {@link loadStableDiffusion}. */
export interface LoadStableDiffusionOptions {
  /** Storage and compute dtype of all three models (default f32). */
  dtype?: DType;
  /** Explicit `--v2` (else inferred from the text encoder's layout). */
  v2?: boolean;
  /** Explicit `--v_parameterization` (else the yaml, the scheduler config or false). */
  vPrediction?: boolean;
  /** A1111-style yaml (default `<checkpoint>.yaml` beside an LDM file). */
  yamlPath?: string;
  /** Which models to put on the GPU (default all three). */
  parts?: readonly ModelPart[];
}

/** The loaded models (a part left out of `parts` throws a LorakitError when used). */
export interface StableDiffusion {
  readonly config: SDConfig;
  readonly tokenizer: ClipTokenizer;
  readonly textEncoder: ClipTextEncoder;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  /** Free every GPU tensor of the models. */
  dispose(): void;
}

/** The tokenizer beside a diffusers folder, else the built-in CLIP vocabulary. */
async function tokenizerFor(ckpt: LoadedCheckpoint, v2: boolean): Promise<ClipTokenizer> {
  const tok = ckpt.format === "diffusers"
    ? await ClipTokenizer.load(ckpt.path)
    : await ClipTokenizer.load();
  // SD 2.x pads with `!` (id 0), as its diffusers tokenizer and kohya do.
  return tok.withPadding(v2 ? "zero" : "eos");
}

/**
 * Load an SD 1.x/2.x checkpoint (file or diffusers folder) onto the GPU. Errors name the file and
 * tensor (see `loadCheckpoint`); nothing stays allocated when loading fails.
 */
export async function loadStableDiffusion(
  path: string,
  opts: LoadStableDiffusionOptions = {},
): Promise<StableDiffusion> {
  const ckpt = await loadCheckpoint(path, {
    v2: opts.v2,
    vPrediction: opts.vPrediction,
    yamlPath: opts.yamlPath,
  });
  const loaded: ModelWeights[] = [];
  try {
    const config = ckpt.config;
    const want = new Set(opts.parts ?? ["text_encoder", "unet", "vae"]);
    const tokenizer = await tokenizerFor(ckpt, config.v2);
    const part = async (p: ModelPart): Promise<ModelWeights | null> => {
      if (!want.has(p)) return null;
      const w = await uploadWeights(ckpt, p, { dtype: opts.dtype ?? "f32" });
      loaded.push(w);
      return w;
    };
    const te = await part("text_encoder");
    const un = await part("unet");
    const va = await part("vae");
    const textEncoder = te ? new ClipTextEncoder(te, config.textEncoder) : null;
    const unet = un ? new UNet2DConditionModel(un, config.unet) : null;
    const vae = va ? new AutoencoderKL(va, config.vae) : null;
    const absent = (p: ModelPart): never => {
      throw new LorakitError(`${path}: the ${p} was not loaded (not in the 'parts' option)`);
    };
    return {
      config,
      tokenizer,
      get textEncoder() {
        return textEncoder ?? absent("text_encoder");
      },
      get unet() {
        return unet ?? absent("unet");
      },
      get vae() {
        return vae ?? absent("vae");
      },
      dispose() {
        textEncoder?.dispose();
        unet?.dispose();
        vae?.dispose();
      },
    };
  } catch (e) {
    for (const w of loaded) w.dispose();
    throw e;
  } finally {
    ckpt.close();
  }
}
