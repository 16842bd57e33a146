/**
 * A whole SDXL pipeline's models from one checkpoint (SGM `.safetensors`/`.ckpt` or a diffusers
 * folder): config, both tokenizers (the first pads with `<|endoftext|>`, the second with `!` =
 * 0, as kohya forces), both text encoders, the U-Net and the VAE on the GPU in f32 or f16.
 * The VAE's config says `forceUpcast` (SDXL's VAE overflows in f16): callers that want f16
 * elsewhere load it in f32 with a separate `parts: ["vae"]` load.
 *
 * @module
 */
import type { DType } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { type LoadedSdxlCheckpoint, loadSdxlCheckpoint } from "../io/checkpoint_sdxl.ts";
import { exists, joinPath } from "../io/fs.ts";
import type { SDXLConfig } from "../model_config/config.ts";
import { CLIP_CONTEXT_LENGTH, ClipTokenizer } from "../text/clip_tokenizer.ts";
import { ClipTextEncoder } from "./clip.ts";
import { encodeSdxlText, type SdxlTextEncoding } from "./sdxl_conditioning.ts";
import { UNet2DConditionModel } from "./unet.ts";
import { AutoencoderKL } from "./vae.ts";
import { type ModelPart, type ModelWeights, uploadWeights } from "./weights.ts";

/** Options of {@link loadStableDiffusionXL}. */
export interface LoadStableDiffusionXLOptions {
  /** Storage and compute dtype of the loaded models (default f32). */
  dtype?: DType;
  /** Explicit `--v_parameterization` (else the yaml, the scheduler config or false). */
  vPrediction?: boolean;
  /** SGM yaml (default `<checkpoint>.yaml` beside a single file). */
  yamlPath?: string;
  /** Which models to put on the GPU (default all four). */
  parts?: readonly ModelPart[];
}

/** The loaded SDXL models (a part left out of `parts` throws a LorakitError when used). */
export interface StableDiffusionXL {
  readonly config: SDXLConfig;
  readonly tokenizer: ClipTokenizer;
  readonly tokenizer2: ClipTokenizer;
  readonly textEncoder: ClipTextEncoder;
  readonly textEncoder2: ClipTextEncoder;
  readonly unet: UNet2DConditionModel;
  readonly vae: AutoencoderKL;
  /** Context and pooled embedding of prompts (one 77-token window each). */
  encodePrompts(prompts: readonly string[]): SdxlTextEncoding;
  /** Free every GPU tensor of the models. */
  dispose(): void;
}

/** A diffusers folder's tokenizer (`tokenizer/` or `tokenizer_2/`), else the built-in vocabulary. */
async function tokenizerFor(ckpt: LoadedSdxlCheckpoint, dir: string): Promise<ClipTokenizer> {
  if (ckpt.format === "diffusers" && (await exists(joinPath(ckpt.path, dir)))) {
    return await ClipTokenizer.load(joinPath(ckpt.path, dir));
  }
  return await ClipTokenizer.load();
}

/**
 * Load an SDXL checkpoint (file or diffusers folder) onto the GPU. Errors name the file and
 * tensor (see `loadSdxlCheckpoint`); nothing stays allocated when loading fails.
 */
export async function loadStableDiffusionXL(
  path: string,
  opts: LoadStableDiffusionXLOptions = {},
): Promise<StableDiffusionXL> {
  const ckpt = await loadSdxlCheckpoint(path, {
    vPrediction: opts.vPrediction,
    yamlPath: opts.yamlPath,
  });
  const loaded: ModelWeights[] = [];
  try {
    const config = ckpt.config;
    const want = new Set(opts.parts ?? ["text_encoder", "text_encoder_2", "unet", "vae"]);
    const tokenizer = (await tokenizerFor(ckpt, "tokenizer")).withPadding("eos");
    // laion bigG's tokenizer pads with `!` (id 0); kohya forces pad_token_id 0.
    const tokenizer2 = (await tokenizerFor(ckpt, "tokenizer_2")).withPadding("zero");
    const part = async (p: ModelPart): Promise<ModelWeights | null> => {
      if (!want.has(p)) return null;
      const w = await uploadWeights(ckpt, p, { dtype: opts.dtype ?? "f32" });
      loaded.push(w);
      return w;
    };
    const t1 = await part("text_encoder");
    const t2 = await part("text_encoder_2");
    const un = await part("unet");
    const va = await part("vae");
    const te1 = t1 ? new ClipTextEncoder(t1, config.textEncoder) : null;
    const te2 = t2 ? new ClipTextEncoder(t2, config.textEncoder2, "text_encoder_2") : null;
    const unet = un ? new UNet2DConditionModel(un, config.unet) : null;
    const vae = va ? new AutoencoderKL(va, config.vae) : null;
    const absent = (p: ModelPart): never => {
      throw new LorakitError(`${path}: the ${p} was not loaded (not in the 'parts' option)`);
    };
    const sdxl: StableDiffusionXL = {
      config,
      tokenizer,
      tokenizer2,
      get textEncoder() {
        return te1 ?? absent("text_encoder");
      },
      get textEncoder2() {
        return te2 ?? absent("text_encoder_2");
      },
      get unet() {
        return unet ?? absent("unet");
      },
      get vae() {
        return vae ?? absent("vae");
      },
      encodePrompts(prompts) {
        const ids = (tok: ClipTokenizer) => {
          const t = CLIP_CONTEXT_LENGTH;
          const out = new Int32Array(prompts.length * t);
          prompts.forEach((p, i) => out.set(tok.tokenize(p, t), i * t));
          return out;
        };
        return encodeSdxlText(
          sdxl.textEncoder,
          sdxl.textEncoder2,
          ids(tokenizer),
          ids(tokenizer2),
        );
      },
      dispose() {
        te1?.dispose();
        te2?.dispose();
        unet?.dispose();
        vae?.dispose();
      },
    };
    return sdxl;
  } catch (e) {
    for (const w of loaded) w.dispose();
    throw e;
  } finally {
    ckpt.close();
  }
}
