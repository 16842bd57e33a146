/**
 * Checks of the demo base model, run through lorakit's own models: the VAE's reconstruction of
 * held-out world images (PSNR), and whether generated images follow the caption — for
 * "a <colour> <shape> on a <colour> background", the background colour (the border's majority)
 * and the object colour (the majority of the rest) read back by the pixel-colour test in
 * `world.ts`.
 *
 * @module
 */
import { scope, Tensor } from "../../gpu/mod.ts";
import type { RasterImage } from "../image/image.ts";
import type { StableDiffusion } from "../models/stable_diffusion.ts";
import { generateImages, toRaster } from "./generate.ts";
import {
  baseTrainingScenes,
  drawScene,
  type PlainPrompt,
  readScene,
  type SceneReading,
} from "./world.ts";

/** The seed of the held-out validation images (never in the training set). */
export const VAL_SEED = 2002;

/** PSNR (dB, pixels in [0, 1] after 8-bit rounding) of VAE encode (mean) and decode. */
export async function vaePsnr(
  sd: Pick<StableDiffusion, "vae">,
  images: RasterImage[],
  batch = 8,
): Promise<number> {
  let err = 0, n = 0;
  for (let i = 0; i < images.length; i += batch) {
    const chunk = images.slice(i, i + batch);
    const { width: w, height: h } = chunk[0];
    const plane = w * h;
    const x = new Float32Array(chunk.length * 3 * plane);
    chunk.forEach((img, b) => {
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) x[(b * 3 + c) * plane + p] = img.data[p * 3 + c] / 127.5 - 1;
      }
    });
    const input = Tensor.fromArray(x, [chunk.length, 3, h, w]);
    const out = scope(() => sd.vae.decode(sd.vae.encode(input).mean));
    const y = await out.toArray();
    out.dispose();
    input.dispose();
    chunk.forEach((_, b) => {
      const raster = toRaster({
        pixels: y.subarray(b * 3 * plane, (b + 1) * 3 * plane),
        width: w,
        height: h,
      });
      for (let p = 0; p < plane * 3; p++) {
        err += ((raster.data[p] - chunk[b].data[p]) / 255) ** 2;
        n++;
      }
    });
  }
  return 10 * Math.log10(1 / (err / n));
}

/** Held-out world images (validation seed). */
export function heldOutImages(count: number): RasterImage[] {
  return baseTrainingScenes(count, VAL_SEED).map((s) => drawScene(s));
}

/** Generation settings of the caption check. */
export interface CaptionCheckSettings {
  steps: number;
  sampler: string;
  guidanceScale: number;
  /** Prompts generated per batch. */
  batch: number;
  /** Seed of the first prompt; the k-th gets seed + k. */
  seed: number;
}

/** Default settings: DDIM, 20 steps, guidance 5. */
export const CAPTION_CHECK_DEFAULTS: CaptionCheckSettings = {
  steps: 20,
  sampler: "ddim",
  guidanceScale: 5,
  batch: 10,
  seed: 1000,
};

/** One prompt's outcome. */
export interface CaptionCheck {
  prompt: PlainPrompt;
  seed: number;
  reading: SceneReading;
  correct: boolean;
  image: RasterImage;
}

/** Generate each prompt once and read back its colours. */
export async function captionChecks(
  sd: Pick<StableDiffusion, "tokenizer" | "textEncoder" | "unet" | "vae">,
  prompts: readonly PlainPrompt[],
  settings: CaptionCheckSettings = CAPTION_CHECK_DEFAULTS,
): Promise<CaptionCheck[]> {
  const out: CaptionCheck[] = [];
  for (let i = 0; i < prompts.length; i += settings.batch) {
    const chunk = prompts.slice(i, i + settings.batch);
    const seeds = chunk.map((_, k) => settings.seed + i + k);
    const images = await generateImages(sd, {
      prompts: chunk.map((p) => p.caption),
      seeds,
      negativePrompt: "",
      width: 64,
      height: 64,
      steps: settings.steps,
      sampler: settings.sampler,
      guidanceScale: settings.guidanceScale,
    });
    images.forEach((g, k) => {
      const image = toRaster(g);
      const reading = readScene(image);
      const p = chunk[k];
      out.push({
        prompt: p,
        seed: seeds[k],
        reading,
        correct: reading.background === p.background && reading.object === p.colour,
        image,
      });
    });
  }
  return out;
}
