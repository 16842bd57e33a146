/**
 * Text conditioning for generation: prompts and negative prompts through kohya's prompt
 * weighting and the text encoder, stacked in the order the guidance loop expects
 * ([negative; prompt], plus [empty] with a negative scale, or [prompt] alone without guidance).
 * Everything stacked is encoded together, so all share one chunk count (kohya encodes the empty
 * prompt of `--negative_scale` separately against the prompt; the result is the same whenever
 * kohya's own shapes agree).
 *
 * A generation run conditions each batch through a {@link GenConditioner}: SD 1.x/2.x's
 * ({@link textConditioner}) gives the context alone; SDXL's (`sdxl_conditioner.ts`) also gives
 * the U-Net's vector `y`.
 *
 * @module
 */
import { reshape, scope, type Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import {
  applyPromptWeights,
  CHUNK_LENGTH,
  type EmbNormalizeMode,
  weightedTokens,
  type WeightingTokenizer,
} from "../text/prompt_weighting.ts";
import type { GenJob } from "./gen_plan.ts";
import { contextMultiplicity } from "./txt2img.ts";

/** The text-encoder part `encodeConditioning` needs (`ClipTextEncoder` has it). */
export interface ConditioningEncoder {
  forward(ids: Int32Array, opts?: { clipSkip?: number }): Tensor;
}

/** Options of {@link encodeConditioning}. */
export interface ConditioningOptions {
  /** `--scale`; guidance (and negatives) only above 1. */
  guidanceScale: number;
  /** `--negative_scale`. */
  negativeScale?: number | null;
  /** `--max_embeddings_multiples` (kohya's default 1: 75 tokens). */
  maxEmbeddingsMultiples?: number;
  /** `--clip_skip` (1: last layer). */
  clipSkip?: number;
  /** `--emb_normalize_mode` (default "original"). */
  embNormalizeMode?: EmbNormalizeMode;
}

/** The stacked context [k * B, 77 * chunks, C] and whether a prompt was truncated. */
export interface Conditioning {
  context: Tensor;
  truncated: boolean;
}

/** Encode a batch's prompts and negatives into the guidance loop's context. */
export function encodeConditioning(
  tokenizer: WeightingTokenizer,
  encoder: ConditioningEncoder,
  prompts: readonly string[],
  negatives: readonly string[],
  opts: ConditioningOptions,
): Conditioning {
  const k = contextMultiplicity(opts.guidanceScale, opts.negativeScale);
  if (k > 1 && negatives.length !== prompts.length) {
    throw new LorakitError(
      `negative prompts: expected ${prompts.length} (one per prompt), found ${negatives.length}`,
    );
  }
  const texts = k === 1
    ? [...prompts]
    : k === 2
    ? [...negatives, ...prompts]
    : [...negatives, ...prompts, ...prompts.map(() => "")];
  const tok = weightedTokens(tokenizer, texts, opts.maxEmbeddingsMultiples ?? 1);
  const context = scope(() => {
    const states = encoder.forward(tok.ids, { clipSkip: opts.clipSkip });
    const c = states.shape[states.rank - 1];
    const joined = reshape(states, [tok.batch, tok.chunks * CHUNK_LENGTH, c]);
    return applyPromptWeights(joined, tok.weights, opts.embNormalizeMode ?? "original");
  });
  return { context, truncated: tok.truncated };
}

/** The pass a batch is conditioned for. */
export interface ConditioningStage {
  /** Generated size of this pass. */
  width: number;
  height: number;
  /**
   * The highres fix's first pass: `--highres_fix_scale` (SDXL scales its size conditioning by
   * it, as kohya does), else null.
   */
  sizeScale: number | null;
}

/** A batch's conditioning, stacked in the guidance loop's order. */
export interface StageConditioning {
  /** [k * B, T, C]. */
  context: Tensor;
  /** SDXL's `y` [k * B, adm], or null for SD 1.x/2.x. */
  vector: Tensor | null;
}

/** The model-specific conditioning step of generation. */
export interface GenConditioner {
  /** Encode the jobs' prompts and negatives (guidance from the batch's shared settings). */
  encode(jobs: readonly GenJob[], stage: ConditioningStage): StageConditioning;
}

/** Run-wide text options of the conditioning. */
export interface TextConditionerOptions {
  maxEmbeddingsMultiples: number;
  clipSkip: number;
  embNormalizeMode: EmbNormalizeMode;
}

/** SD 1.x/2.x's conditioning: {@link encodeConditioning} on the batch, no vector. */
export function textConditioner(
  tokenizer: WeightingTokenizer,
  encoder: ConditioningEncoder,
  opts: TextConditionerOptions,
): GenConditioner {
  return {
    encode(jobs) {
      const set = jobs[0].settings;
      const { context } = encodeConditioning(
        tokenizer,
        encoder,
        jobs.map((j) => j.prompt),
        jobs.map((j) => j.negativePrompt),
        { guidanceScale: set.scale, negativeScale: set.negativeScale, ...opts },
      );
      return { context, vector: null };
    },
  };
}
