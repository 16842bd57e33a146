/**
 * Text-to-image for the demo's sample grids: a batch of prompts, one seed each, through kohya's
 * prompt weighting, classifier-free guidance, a sampler and the VAE; the images come back as
 * float32 `[3, h, w]` arrays in about [-1, 1] (for exact comparisons) and as RGB rasters.
 *
 * @module
 */
import { scope, type Tensor } from "../../gpu/mod.ts";
import { makeImage, type RasterImage } from "../image/image.ts";
import type { StableDiffusion } from "../models/stable_diffusion.ts";
import { encodeConditioning } from "../sample/conditioning.ts";
import { noiseBatch } from "../sample/noise.ts";
import { createScheduler, noisesPerStep } from "../sample/sampler_registry.ts";
import { decodeLatents, denoise } from "../sample/txt2img.ts";

/** What to generate. */
export interface GenerateOptions {
  prompts: readonly string[];
  /** One seed per prompt. */
  seeds: readonly number[];
  negativePrompt: string;
  width: number;
  height: number;
  steps: number;
  sampler: string;
  guidanceScale: number;
}

/** One generated image. */
export interface GeneratedImage {
  prompt: string;
  seed: number;
  width: number;
  height: number;
  /** `[3, h, w]` float32, about [-1, 1]. */
  pixels: Float32Array;
}

/** Generate one image per prompt, all in one batch. */
export async function generateImages(
  sd: Pick<StableDiffusion, "tokenizer" | "textEncoder" | "unet" | "vae">,
  opts: GenerateOptions,
): Promise<GeneratedImage[]> {
  const { prompts, seeds, width, height } = opts;
  const latentShape = [4, Math.floor(height / 8), Math.floor(width / 8)] as const;
  const noise = noiseBatch(seeds, {
    latentShape,
    steps: opts.steps,
    noisesPerStep: noisesPerStep(opts.sampler),
  });
  const cond = encodeConditioning(
    sd.tokenizer,
    sd.textEncoder,
    prompts,
    prompts.map(() => opts.negativePrompt),
    { guidanceScale: opts.guidanceScale },
  );
  let latents: Tensor | null = null;
  try {
    latents = await denoise(sd.unet, {
      scheduler: createScheduler(opts.sampler),
      steps: opts.steps,
      initNoise: noise.initNoise,
      context: cond.context,
      guidanceScale: opts.guidanceScale,
      noises: noise.noises,
    });
    const lat = latents;
    const image = scope(() => decodeLatents(sd.vae, lat));
    const all = await image.toArray();
    image.dispose();
    const n = 3 * height * width;
    return prompts.map((prompt, i) => ({
      prompt,
      seed: seeds[i],
      width,
      height,
      pixels: all.slice(i * n, (i + 1) * n),
    }));
  } finally {
    latents?.dispose();
    cond.context.dispose();
    noise.dispose();
  }
}

/** An RGB raster from a `[3, h, w]` image in [-1, 1] (clamped, rounded as kohya's gen_img). */
export function toRaster(img: Pick<GeneratedImage, "pixels" | "width" | "height">): RasterImage {
  const { width, height, pixels } = img;
  const out = makeImage(width, height, 3);
  const plane = width * height;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < plane; i++) {
      const v = Math.min(1, Math.max(0, pixels[c * plane + i] / 2 + 0.5));
      out.data[i * 3 + c] = Math.round(v * 255);
    }
  }
  return out;
}

/** max |a - b| over two images of the same shape. */
export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** Root mean square of `a - b`. */
export function rmsDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2;
  return Math.sqrt(s / Math.max(1, a.length));
}
