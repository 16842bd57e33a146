/**
 * One batch of kohya gen_img (`process_batch`): set the applied networks' multipliers, encode the
 * prompts, draw every image's noises from its seed up front (so an image does not depend on its
 * batch), encode img2img sources, run the sampler, decode. With the highres fix a batch runs
 * twice: a first stage at `--highres_fix_scale` of the size (rounded, then down to multiples of
 * 32) with `--highres_fix_steps`, whose images are upscaled (Lanczos) to the full size and used as
 * img2img sources of the second stage, which uses seed + 1, `--steps` and the strength.
 *
 * img2img encodes a source to the mean of the VAE's latent distribution. kohya samples it with
 * torch's global generator in whatever state the batch's noise draws left it, which makes the
 * result depend on the batch; the mean does not (the difference is the VAE's small std).
 * Sources are resized to the generated size with OpenCV's Lanczos-4 (kohya: Pillow's Lanczos).
 *
 * @module
 */
import { concat, scale, slice, type Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { RasterImage } from "../image/image.ts";
import { resize } from "../image/resample.ts";
import type { EmbNormalizeMode, WeightingTokenizer } from "../text/prompt_weighting.ts";
import { type ConditioningEncoder, type GenConditioner, textConditioner } from "./conditioning.ts";
import type { HighresPrefix } from "./file_naming.ts";
import type { GenJob } from "./gen_plan.ts";
import { noiseBatch } from "./noise.ts";
import { imagesToTensor, tensorDataToImages } from "./pixels.ts";
import { createScheduler, noisesPerStep } from "./sampler_registry.ts";
import { decodeLatents, denoise, type DenoiseUNet, LATENT_SCALE } from "./txt2img.ts";

/**
 * The models a run needs (a loaded `StableDiffusion` has them). The conditioning step is
 * `conditioner` when given (SDXL's), else SD 1.x/2.x's from `tokenizer` and `textEncoder` with
 * the loop options' text settings.
 */
export interface GenModels {
  tokenizer?: WeightingTokenizer;
  textEncoder?: ConditioningEncoder;
  conditioner?: GenConditioner;
  /** The VAE's latent scale (default SD's 0.18215; SDXL 0.13025). */
  latentScale?: number;
  unet: DenoiseUNet;
  vae: {
    encode(images: Tensor): { mean: Tensor; logvar: Tensor };
    decode(latents: Tensor): Tensor;
  };
}

/** An applied (not merged) network whose strength can change per batch. */
export interface GenNetwork {
  setMultiplier(m: number): void;
}

/** `--highres_fix_*`. */
export interface HighresOptions {
  /** `--highres_fix_scale` (first-stage size / final size). */
  scale: number;
  /** `--highres_fix_steps`. */
  steps: number;
  /** `--highres_fix_strength` (default: the image's strength). */
  strength: number | null;
  /** `--highres_fix_save_1st`. */
  save1st: boolean;
}

/** Run-wide options of {@link generateBatch}. */
export interface GenLoopOptions {
  sampler: string;
  vPrediction: boolean;
  /** SD 1.x/2.x's text settings (unused with the models' own `conditioner`). */
  maxEmbeddingsMultiples: number;
  clipSkip: number;
  embNormalizeMode: EmbNormalizeMode;
  /** `--vae_batch_size` (>= 1: images per VAE call; < 1: that share of the batch), or null. */
  vaeBatchSize: number | null;
  highres: HighresOptions | null;
  /** Applied networks and their `--network_mul` (used when a prompt has no `--am`). */
  networks: readonly GenNetwork[];
  networkDefaultMuls: readonly number[];
  /** img2img sources, indexed by `GenJob.initImage`. */
  initImages: readonly RasterImage[] | null;
  /** Progress: called after each sampler step. */
  onStep?: (stage: StageLabel, step: number, steps: number) => void | Promise<void>;
}

/** Which pass a step belongs to. */
export type StageLabel = "txt2img" | "img2img" | "highres 1st" | "highres 2nd";

/** A generated image and what it was generated with. */
export interface GeneratedImage {
  job: GenJob;
  image: RasterImage;
  highresPrefix: HighresPrefix;
  /** Sampler steps of the pass that made it. */
  steps: number;
  /** Strength when it came from img2img (or the highres second stage), else null. */
  strength: number | null;
}

interface StageInput {
  label: StageLabel;
  /** The highres fix's first pass: its scale (SDXL scales the size conditioning), else null. */
  sizeScale: number | null;
  seeds: number[];
  width: number;
  height: number;
  steps: number;
  strength: number;
  init: RasterImage[] | null;
}

/** kohya's `vae_batch_size` rule. */
export function vaeBatchFor(batch: number, vaeBatchSize: number | null): number {
  if (vaeBatchSize === null) return batch;
  if (vaeBatchSize >= 1) return Math.floor(vaeBatchSize);
  return Math.max(1, Math.floor(batch * vaeBatchSize));
}

/** Run `fn` on consecutive slices of `x` along dim 0 and stack the results. */
function chunked(x: Tensor, size: number, fn: (part: Tensor) => Tensor): Tensor {
  const n = x.shape[0];
  if (size >= n) return fn(x);
  const parts: Tensor[] = [];
  try {
    for (let i = 0; i < n; i += size) {
      const part = slice(x, 0, i, Math.min(n, i + size));
      parts.push(fn(part));
      part.dispose();
    }
    return concat(parts, 0);
  } finally {
    for (const p of parts) p.dispose();
  }
}

/** The run's conditioning step: the models' own, else SD 1.x/2.x's text conditioning. */
function conditionerOf(m: GenModels, o: GenLoopOptions): GenConditioner {
  if (m.conditioner) return m.conditioner;
  if (!m.tokenizer || !m.textEncoder) {
    throw new LorakitError("generation: expected a conditioner or a tokenizer and text encoder");
  }
  return textConditioner(m.tokenizer, m.textEncoder, {
    maxEmbeddingsMultiples: o.maxEmbeddingsMultiples,
    clipSkip: o.clipSkip,
    embNormalizeMode: o.embNormalizeMode,
  });
}

async function runStage(
  m: GenModels,
  jobs: readonly GenJob[],
  s: StageInput,
  o: GenLoopOptions,
): Promise<RasterImage[]> {
  const set = jobs[0].settings;
  const muls = set.networkMuls ?? o.networkDefaultMuls;
  o.networks.forEach((n, i) => n.setMultiplier(muls[i] ?? 1));
  const cond = conditionerOf(m, o).encode(jobs, {
    width: s.width,
    height: s.height,
    sizeScale: s.sizeScale,
  });
  const latentScale = m.latentScale ?? LATENT_SCALE;
  const noise = noiseBatch(s.seeds, {
    latentShape: [4, s.height / 8, s.width / 8],
    steps: s.steps,
    noisesPerStep: noisesPerStep(o.sampler),
    img2img: s.init !== null,
  });
  const vaeBatch = vaeBatchFor(jobs.length, o.vaeBatchSize);
  let initLatents: Tensor | null = null;
  let latents: Tensor | null = null;
  try {
    if (s.init !== null) {
      const sized = s.init.map((img) => resize(img, s.width, s.height, "lanczos4"));
      const pixels = imagesToTensor(sized);
      try {
        initLatents = chunked(pixels, vaeBatch, (part) => {
          const d = m.vae.encode(part);
          d.logvar.dispose();
          const scaled = scale(d.mean, latentScale);
          d.mean.dispose();
          return scaled;
        });
      } finally {
        pixels.dispose();
      }
    }
    latents = await denoise(m.unet, {
      scheduler: createScheduler(o.sampler, { vPrediction: o.vPrediction }),
      steps: s.steps,
      initNoise: noise.initNoise,
      context: cond.context,
      vector: cond.vector ?? undefined,
      guidanceScale: set.scale,
      negativeScale: set.negativeScale,
      noises: noise.noises,
      img2img: initLatents === null
        ? undefined
        : { latents: initLatents, noise: noise.img2imgNoise!, strength: s.strength },
      onStep: (i) => o.onStep?.(s.label, i + 1, s.steps),
    });
    const images = chunked(latents, vaeBatch, (part) => decodeLatents(m.vae, part, latentScale));
    try {
      return tensorDataToImages(await images.toArray(), images.shape);
    } finally {
      images.dispose();
    }
  } finally {
    cond.context.dispose();
    cond.vector?.dispose();
    noise.dispose();
    initLatents?.dispose();
    latents?.dispose();
  }
}

/** kohya's first-stage size: `int(x * scale + 0.5)` rounded down to a multiple of 32. */
export function highresFirstSize(x: number, scale: number): number {
  const v = Math.floor(x * scale + 0.5);
  return v - (v % 32);
}

/** Generate one batch (jobs sharing their settings); images in the batch's order. */
export async function generateBatch(
  m: GenModels,
  jobs: readonly GenJob[],
  o: GenLoopOptions,
): Promise<GeneratedImage[]> {
  const set = jobs[0].settings;
  const seeds = jobs.map((j) => j.seed);
  const sources = o.initImages === null ? null : jobs.map((j) => o.initImages![j.initImage ?? 0]);
  if (o.highres === null) {
    const images = await runStage(m, jobs, {
      label: sources ? "img2img" : "txt2img",
      sizeScale: null,
      seeds,
      width: set.width,
      height: set.height,
      steps: set.steps,
      strength: set.strength,
      init: sources,
    }, o);
    return images.map((image, i) => ({
      job: jobs[i],
      image,
      highresPrefix: "",
      steps: set.steps,
      strength: sources ? set.strength : null,
    }));
  }
  const h = o.highres;
  const w1 = highresFirstSize(set.width, h.scale), h1 = highresFirstSize(set.height, h.scale);
  const strength1 = h.strength ?? set.strength;
  const first = await runStage(m, jobs, {
    label: "highres 1st",
    sizeScale: h.scale,
    seeds,
    width: w1,
    height: h1,
    steps: h.steps,
    strength: strength1,
    init: sources,
  }, o);
  const out: GeneratedImage[] = [];
  if (h.save1st) {
    first.forEach((image, i) =>
      out.push({
        job: jobs[i],
        image,
        highresPrefix: "0",
        steps: h.steps,
        strength: sources ? strength1 : null,
      })
    );
  }
  const upscaled = first.map((img) => resize(img, set.width, set.height, "lanczos4"));
  const second = await runStage(m, jobs, {
    label: "highres 2nd",
    sizeScale: null,
    seeds: seeds.map((s) => (s + 1) >>> 0),
    width: set.width,
    height: set.height,
    steps: set.steps,
    strength: set.strength,
    init: upscaled,
  }, o);
  second.forEach((image, i) =>
    out.push({
      job: jobs[i],
      image,
      highresPrefix: "1",
      steps: set.steps,
      strength: set.strength,
    })
  );
  return out;
}
