/**
 * SDXL's conditioning step of generation, as kohya's sdxl_gen_img pipeline computes it:
 * - each text encoder's context from kohya's prompt weighting (`get_weighted_text_embeddings`
 *   per encoder: 75-token windows, each window's `hidden_states[-2]`, weighted and rescaled per
 *   encoder), the two concatenated along the width; prompts and negatives share the chunk count;
 * - the pooled embedding: TE2's last hidden state at the EOS of each text's first window through
 *   `text_projection` (unweighted; diffusers'/SGM's convention, see `sdxl_conditioning.ts`);
 * - the vector `y`: `cat(pooled, emb(original h, w), emb(crop top, left), emb(target h, w))`; the
 *   negative rows use the negative's original size (`--original_height_negative ...`). The
 *   defaults are kohya's: original = generated size, negative original = original, crop 0; the
 *   highres fix's first pass scales given values by `int(x * scale + 0.5)` as kohya does.
 * sdxl_gen_img always takes the penultimate layer; kohya's gen_img takes `--clip_skip` (default 2)
 * for both encoders (`clipSkip`). kohya's " AND " split (regional prompts) is not done.
 *
 * @module
 */
import { concat, reshape, scope, type Tensor } from "../../gpu/mod.ts";
import type { AddEmbeddingConfig } from "../model_config/config.ts";
import type { ClipTextEncoder } from "../models/clip.ts";
import { gatherRows, toDtype } from "../models/ops.ts";
import { encodeTe2, sdxlVector } from "../models/sdxl_conditioning.ts";
import {
  applyPromptWeights,
  CHUNK_LENGTH,
  type EmbNormalizeMode,
  weightedTokens,
  type WeightingTokenizer,
} from "../text/prompt_weighting.ts";
import type { ConditioningStage, GenConditioner, StageConditioning } from "./conditioning.ts";
import type { SizeConditioning } from "./gen_plan.ts";
import { contextMultiplicity } from "./txt2img.ts";

/** What SDXL's conditioning needs of the loaded models (`StableDiffusionXL` has it). */
export interface SdxlConditioningModels {
  tokenizer: WeightingTokenizer;
  tokenizer2: WeightingTokenizer;
  textEncoder: ClipTextEncoder;
  textEncoder2: ClipTextEncoder;
  /** The U-Net's added embedding (`config.unet.addEmbedding`). */
  addEmbedding: AddEmbeddingConfig;
}

/** Run-wide options of {@link sdxlConditioner}. */
export interface SdxlConditionerOptions {
  /** `--max_embeddings_multiples` (default 1). */
  maxEmbeddingsMultiples?: number;
  /** `--emb_normalize_mode` (kohya's SDXL pipeline: "original"). */
  embNormalizeMode?: EmbNormalizeMode;
  /**
   * kohya gen_img's `--clip_skip` on SDXL: both encoders' `hidden_states[-clipSkip]` (default 2,
   * the penultimate layer, which sdxl_gen_img always uses).
   */
  clipSkip?: number;
}

/** No size flags: every value takes kohya's default. */
export const DEFAULT_SIZE_CONDITIONING: Readonly<SizeConditioning> = Object.freeze({
  originalWidth: null,
  originalHeight: null,
  originalWidthNegative: null,
  originalHeightNegative: null,
  cropTop: null,
  cropLeft: null,
});

/** The six time ids (original h, w, crop top, left, target h, w) of prompt and negative rows. */
export interface SdxlTimeIds {
  cond: number[];
  uncond: number[];
}

/** kohya's time ids for a batch's size settings at a pass (see the module comment). */
export function sdxlTimeIds(
  size: SizeConditioning | undefined,
  stage: ConditioningStage,
): SdxlTimeIds {
  const s = size ?? DEFAULT_SIZE_CONDITIONING;
  const k = stage.sizeScale;
  const scaled = (x: number | null) => x === null || k === null ? x : Math.floor(x * k + 0.5);
  const oh = scaled(s.originalHeight) ?? stage.height;
  const ow = scaled(s.originalWidth) ?? stage.width;
  const ohn = scaled(s.originalHeightNegative) ?? oh;
  const own = scaled(s.originalWidthNegative) ?? ow;
  const ct = scaled(s.cropTop) ?? 0, cl = scaled(s.cropLeft) ?? 0;
  return {
    cond: [oh, ow, ct, cl, stage.height, stage.width],
    uncond: [ohn, own, ct, cl, stage.height, stage.width],
  };
}

/** One encoder's weighted context [n, chunks * 77, C] (and TE2's pooled [n, P]). */
function encodeOne(
  tokenizer: WeightingTokenizer,
  encoder: ClipTextEncoder,
  texts: readonly string[],
  withPool: boolean,
  o: SdxlConditionerOptions,
): { context: Tensor; pooled: Tensor | null } {
  const tok = weightedTokens(tokenizer, texts, o.maxEmbeddingsMultiples ?? 1);
  const layers = encoder.config.numLayers + 1 - (o.clipSkip ?? 2);
  return scope(() => {
    let states: Tensor, pooled: Tensor | null = null;
    if (withPool) {
      const out = encodeTe2(encoder, tok.ids, layers);
      states = out.penultimate;
      // kohya pools the first window of each text.
      const rows = Int32Array.from({ length: tok.batch }, (_, b) => b * tok.chunks);
      pooled = gatherRows(out.pooled, rows, [tok.batch, out.pooled.shape[1]]);
    } else {
      [states] = encoder.hiddenStates(tok.ids, [layers]);
    }
    const c = states.shape[states.rank - 1];
    const joined = reshape(states, [tok.batch, tok.chunks * CHUNK_LENGTH, c]);
    const context = applyPromptWeights(joined, tok.weights, o.embNormalizeMode ?? "original");
    return { context, pooled };
  });
}

/**
 * SDXL's conditioning of prompts and negatives: context [k * B, T, C1 + C2] and vector
 * [k * B, adm], stacked [negative; prompt] with guidance (`guidanceScale` > 1), else [prompt].
 * A negative scale (k = 3) is not supported (kohya's SDXL pipeline fails with it).
 */
export function encodeSdxlConditioning(
  m: SdxlConditioningModels,
  prompts: readonly string[],
  negatives: readonly string[],
  guidanceScale: number,
  ids: SdxlTimeIds,
  o: SdxlConditionerOptions = {},
): StageConditioning {
  const guided = contextMultiplicity(guidanceScale) > 1;
  const texts = guided ? [...negatives, ...prompts] : [...prompts];
  return scope(() => {
    const first = encodeOne(m.tokenizer, m.textEncoder, texts, false, o);
    const second = encodeOne(m.tokenizer2, m.textEncoder2, texts, true, o);
    const context = concat([first.context, toDtype(second.context, first.context.dtype)], 2);
    const rows = [
      ...(guided ? negatives.map(() => ids.uncond) : []),
      ...prompts.map(() => ids.cond),
    ];
    const vector = sdxlVector(second.pooled!, rows, m.addEmbedding);
    return { context, vector };
  });
}

/** SDXL's {@link GenConditioner}. */
export function sdxlConditioner(
  m: SdxlConditioningModels,
  o: SdxlConditionerOptions = {},
): GenConditioner {
  return {
    encode(jobs, stage) {
      const set = jobs[0].settings;
      return encodeSdxlConditioning(
        m,
        jobs.map((j) => j.prompt),
        jobs.map((j) => j.negativePrompt),
        set.scale,
        sdxlTimeIds(set.sizeConditioning, stage),
        o,
      );
    },
  };
}
