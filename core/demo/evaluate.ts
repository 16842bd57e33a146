/**
 * The demo's checks on a trained LoRA: sample images across multipliers with the LoRA applied
 * to the base model, the U-Net's response to the multiplier, and the merge/extract round trip
 * (merge into the checkpoint, extract from merged − base, compare the deltas, and compare the
 * merged model's images with the LoRA-applied ones at multiplier 1).
 *
 * @module
 */
import { encodePng } from "../image/encode.ts";
import { loadCheckpoint } from "../io/checkpoint.ts";
import { exists, readText, writeFileAtomic } from "../io/fs.ts";
import { extractLoraFromModels } from "../lora/extract.ts";
import { mergeIntoCheckpoint } from "../lora/merge_model.ts";
import { createNetworkFromWeights } from "../lora/network.ts";
import { loadStableDiffusion } from "../models/stable_diffusion.ts";
import {
  type GeneratedImage,
  generateImages,
  type GenerateOptions,
  maxAbsDiff,
  rmsDiff,
  toRaster,
} from "./generate.ts";
import { compareLoraDeltas } from "./lora_compare.ts";
import { checkMergedWeights } from "./merge_check.ts";
import { type MultiplierResponse, multiplierResponse } from "./lora_effect.ts";
import type { RoundTripResult, SampleGrid } from "./report.ts";
import { yamlPathFor } from "./tiny_model.ts";
import { formatInfotext } from "../sample/infotext.ts";
import { readScene } from "./world.ts";

/** What {@link sampleAcrossMultipliers} produces. */
export interface MultiplierSamples {
  grid: SampleGrid;
  /** The float images at multiplier 1 (for the merged-model comparison), one per prompt. */
  atOne: GeneratedImage[] | null;
  response: MultiplierResponse[];
}

/** Generation settings shared by the grid and the merged model's images. */
export type SampleSettings = Omit<GenerateOptions, "prompts" | "seeds">;

function describe(s: SampleSettings): string {
  return `${s.width}x${s.height}, sampler ${s.sampler}, ${s.steps} steps, guidance scale ` +
    `${s.guidanceScale}${s.negativePrompt ? `, negative prompt "${s.negativePrompt}"` : ""}`;
}

/** What the sampled images carry in their PNG text, as gen_img writes it. */
interface PngInfo {
  settings: SampleSettings;
  /** Checkpoint name (file stem). */
  model: string;
  /** The LoRA applied and its multiplier, if any. */
  lora: { name: string; multiplier: number } | null;
}

/** PNGs with A1111's `parameters` text (and kohya's keys), as gen_img writes them. */
async function pngs(images: GeneratedImage[], info: PngInfo): Promise<Uint8Array[]> {
  const s = info.settings;
  return await Promise.all(images.map((g) => {
    const parameters = formatInfotext({
      prompt: g.prompt,
      negativePrompt: s.negativePrompt,
      steps: s.steps,
      sampler: s.sampler,
      cfgScale: s.guidanceScale,
      seed: g.seed,
      width: g.width,
      height: g.height,
      model: info.model,
      loras: info.lora ? [info.lora] : [],
      version: "lorakit",
    });
    return encodePng(toRaster(g), {
      text: {
        parameters,
        prompt: g.prompt,
        seed: String(g.seed),
        sampler: s.sampler,
        steps: String(s.steps),
        scale: String(s.guidanceScale),
        "negative-prompt": s.negativePrompt,
      },
    });
  }));
}

/** Fraction of orange pixels in each image (the LoRA's colour; see `world.ts`). */
function orangeFractions(images: GeneratedImage[]): number[] {
  return images.map((g) => readScene(toRaster(g)).orangeFraction);
}

/** A file path's stem. */
function stem(path: string): string {
  return path.replace(/^.*[/\\]/, "").replace(/\.[^.]*$/, "");
}

/**
 * Load the base model, apply the LoRA, and generate every prompt at every multiplier (same
 * seeds), then measure the U-Net's response at `responseMultipliers`.
 */
export async function sampleAcrossMultipliers(
  modelPath: string,
  loraPath: string,
  opts: {
    prompts: string[];
    seeds: number[];
    multipliers: number[];
    responseMultipliers: number[];
    settings: SampleSettings;
    onProgress?: (what: string) => void;
  },
): Promise<MultiplierSamples> {
  const sd = await loadStableDiffusion(modelPath);
  try {
    const net = await createNetworkFromWeights(1, loraPath, sd);
    try {
      net.applyTo(sd);
      const columns: Uint8Array[][] = [];
      const orange: number[][] = [];
      let atOne: GeneratedImage[] | null = null;
      for (const m of opts.multipliers) {
        opts.onProgress?.(`multiplier ${m}`);
        net.setMultiplier(m);
        const images = await generateImages(sd, {
          ...opts.settings,
          prompts: opts.prompts,
          seeds: opts.seeds,
        });
        if (m === 1) atOne = images;
        columns.push(
          await pngs(images, {
            settings: opts.settings,
            model: stem(modelPath),
            lora: { name: stem(loraPath), multiplier: m },
          }),
        );
        orange.push(orangeFractions(images));
      }
      opts.onProgress?.("U-Net response to the multiplier");
      const response = await multiplierResponse(sd, net, {
        prompt: opts.prompts[0],
        seed: opts.seeds[0],
        timestep: 500,
        latentSize: [opts.settings.height / 8, opts.settings.width / 8],
        multipliers: opts.responseMultipliers,
      });
      const grid: SampleGrid = {
        multipliers: opts.multipliers,
        settings: describe(opts.settings),
        rows: opts.prompts.map((prompt, i) => ({
          prompt,
          seed: opts.seeds[i],
          images: columns.map((c) => c[i]),
          orange: orange.map((c) => c[i]),
        })),
      };
      return { grid, atOne, response };
    } finally {
      net.dispose();
    }
  } finally {
    sd.dispose();
  }
}

/**
 * The extraction's clamp: off (null). kohya's `--clamp_quantile` clips both factors to a quantile
 * of their signed values, which is lossy even at 1; without it the round trip is exact.
 */
export const EXTRACT_CLAMP_QUANTILE: number | null = null;

/** Options of {@link mergeExtractRoundTrip}. */
export interface RoundTripOptions {
  baseModel: string;
  lora: string;
  mergedPath: string;
  extractedPath: string;
  /** Rank of the extraction (the trained LoRA's rank recovers it exactly up to rounding). */
  dim: number;
  /** Prompts and seeds to render with the merged model; skipped when `atOne` is null. */
  prompts: string[];
  seeds: number[];
  settings: SampleSettings;
  /** The LoRA-applied images at multiplier 1, same prompts and seeds. */
  atOne: GeneratedImage[] | null;
  onProgress?: (what: string) => void;
}

/** Merge, extract, compare; also renders the merged model's images (returned as PNGs). */
export async function mergeExtractRoundTrip(
  opts: RoundTripOptions,
): Promise<
  { result: RoundTripResult; mergedPngs: Uint8Array[] | null; mergedOrange: number[] | null }
> {
  opts.onProgress?.("merge into the checkpoint");
  const merged = await mergeIntoCheckpoint({
    sdModel: opts.baseModel,
    models: [opts.lora],
    ratios: [1],
    saveTo: opts.mergedPath,
    precision: "float",
    savePrecision: "float",
  });
  // What the weights cannot say (the head counts) travels with the merged file, as A1111 expects.
  const yaml = yamlPathFor(opts.baseModel);
  if (await exists(yaml)) await writeFileAtomic(yamlPathFor(opts.mergedPath), await readText(yaml));
  opts.onProgress?.("check merged - base against the LoRA's deltas");
  const mergeCheck = await checkMergedWeights(opts.baseModel, opts.mergedPath, opts.lora, 1);
  opts.onProgress?.("extract from merged - base");
  const org = await loadCheckpoint(opts.baseModel);
  let extracted;
  try {
    const tuned = await loadCheckpoint(opts.mergedPath);
    try {
      // clamp_quantile 1, the least clamping kohya's rule allows (see the report), and
      // min_diff 0, so the text encoder is kept whenever the LoRA changed it.
      extracted = await extractLoraFromModels(org, tuned, {
        saveTo: opts.extractedPath,
        dim: opts.dim,
        clampQuantile: EXTRACT_CLAMP_QUANTILE,
        minDiff: 0,
        savePrecision: "float",
      });
    } finally {
      tuned.close();
    }
  } finally {
    org.close();
  }
  opts.onProgress?.("compare the deltas");
  const comparison = await compareLoraDeltas(opts.lora, opts.extractedPath);
  let mergedVsApplied: RoundTripResult["mergedVsApplied"] = null;
  let mergedPngs: Uint8Array[] | null = null;
  let mergedOrange: number[] | null = null;
  if (opts.atOne !== null) {
    opts.onProgress?.("render with the merged model");
    const sd = await loadStableDiffusion(opts.mergedPath);
    try {
      const images = await generateImages(sd, {
        ...opts.settings,
        prompts: opts.prompts,
        seeds: opts.seeds,
      });
      let maxAbs = 0, sq = 0, n = 0;
      images.forEach((img, i) => {
        const ref = opts.atOne![i].pixels;
        maxAbs = Math.max(maxAbs, maxAbsDiff(img.pixels, ref));
        sq += rmsDiff(img.pixels, ref) ** 2 * ref.length;
        n += ref.length;
      });
      mergedVsApplied = { maxAbs, rms: Math.sqrt(sq / Math.max(1, n)) };
      mergedPngs = await pngs(images, {
        settings: opts.settings,
        model: stem(opts.mergedPath),
        lora: null,
      });
      mergedOrange = orangeFractions(images);
    } finally {
      sd.dispose();
    }
  }
  return {
    result: {
      modulesMerged: merged.modulesApplied,
      weightsChanged: merged.weightsChanged,
      mergeCheck,
      extractDim: opts.dim,
      clampQuantile: EXTRACT_CLAMP_QUANTILE,
      extractedModules: extracted.modules,
      textEncoderIncluded: extracted.textEncoderIncluded,
      comparison,
      mergedVsApplied,
    },
    mergedPngs,
    mergedOrange,
  };
}
