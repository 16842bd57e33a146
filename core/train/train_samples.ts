/**
 * Sample images during training (`--sample_prompts` with `--sample_every_n_steps`,
 * `--sample_every_n_epochs`, `--sample_at_first`), as kohya's `sample_images`: each non-empty,
 * non-`#` line of the prompt file is a prompt with gen_img options (`--n` negative, `--w`/`--h`
 * size, default 512, rounded down to a multiple of 8, `--d` seed, `--l` guidance scale default 7.5,
 * `--s` steps default 30), generated with the network applied at multiplier 1 with
 * `--sample_sampler`, written as PNG to `<output_dir>/sample/` under kohya's file names. A prompt
 * without `--d` gets a seed derived from the run's seed, the step and the prompt's index.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { noGrad } from "../../gpu/mod.ts";
import { encodePng } from "../image/encode.ts";
import { makeImage } from "../image/image.ts";
import { joinPath, makeDir, readText, writeFileAtomic } from "../io/fs.ts";
import type { LoraNetwork } from "../lora/network.ts";
import type { StableDiffusion } from "../models/stable_diffusion.ts";
import { encodeConditioning } from "../sample/conditioning.ts";
import { noiseBatch } from "../sample/noise.ts";
import { createScheduler, noisesPerStep } from "../sample/sampler_registry.ts";
import { decodeLatents, type DecodeVae, denoise } from "../sample/txt2img.ts";
import { encodeSdxlConditioning, sdxlTimeIds } from "../sample/sdxl_conditioner.ts";
import type { StableDiffusionXL } from "../models/stable_diffusion_xl.ts";
import { parsePromptOptions, type PromptOptions } from "../text/prompt_options.ts";
import { mixSeed } from "./train_rng.ts";

/** Where samples come from and go, and how they are drawn. */
export interface SampleSettings {
  /** The prompt file. */
  prompts: string;
  sampler: string;
  outputDir: string;
  outputName: string | null;
  clipSkip: number;
  vParameterization: boolean;
  seed: number;
  /** The VAE that decodes (default the model's) and its latent scale (default SD's). */
  vae?: DecodeVae;
  latentScale?: number;
}

/** The largest sample side (`--w`, `--h`): a bigger one would only fail for memory mid-run. */
export const MAX_SAMPLE_SIDE = 4096;

/** The prompts of a kohya prompt file (.txt). */
export async function readSamplePrompts(path: string): Promise<PromptOptions[]> {
  return parseSamplePrompts(await readText(path), path);
}

/**
 * The prompts of a kohya prompt file's text: each trimmed line not blank and not a `#` comment.
 * A `--w`/`--h` beyond {@link MAX_SAMPLE_SIDE} is an error naming `file` and the line.
 */
export function parseSamplePrompts(text: string, file = "--sample_prompts"): PromptOptions[] {
  const out: PromptOptions[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line.length === 0 || line.startsWith("#")) continue;
    const p = parsePromptOptions(line);
    for (const [flag, v] of [["--w", p.width], ["--h", p.height]] as const) {
      if (v !== undefined && v > MAX_SAMPLE_SIDE) {
        throw new LorakitError(
          `${file} line ${i + 1}: ${flag} ${v}: expected at most ${MAX_SAMPLE_SIDE} pixels`,
        );
      }
    }
    out.push(p);
  }
  return out;
}

function stamp(d: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}${two(d.getHours())}${
    two(d.getMinutes())
  }${two(d.getSeconds())}`;
}

/**
 * Generate one image per prompt; returns the files written. `epoch` set: kohya's epoch naming
 * (`e000001`); else the step (`000010`).
 */
export async function sampleImages(
  sd: StableDiffusion | StableDiffusionXL,
  net: LoraNetwork,
  s: SampleSettings,
  at: { step: number; epoch: number | null; onWritten?: (path: string, prompt: string) => void },
): Promise<string[]> {
  const prompts = await readSamplePrompts(s.prompts);
  const dir = joinPath(s.outputDir, "sample");
  await makeDir(dir);
  const files: string[] = [];
  const wasTraining = net.modules.some((m) => m.training);
  net.setTraining(false);
  // denoise is async, so noGrad cannot cover it: freeze the factors so nothing records.
  const params = net.parameters();
  const flags = params.map((t) => t.requiresGrad);
  for (const t of params) t.requiresGrad = false;
  try {
    for (const [i, p] of prompts.entries()) {
      const width = Math.max(64, (p.width ?? 512) - ((p.width ?? 512) % 8));
      const height = Math.max(64, (p.height ?? 512) - ((p.height ?? 512) % 8));
      const steps = p.steps ?? 30;
      const scale = p.scale ?? 7.5;
      const seed = p.seeds?.[0] ?? mixSeed(s.seed, 0x5a, at.step, i);
      const sampler = s.sampler;
      const noise = noiseBatch([seed], {
        latentShape: [4, height / 8, width / 8],
        steps,
        noisesPerStep: noisesPerStep(sampler),
      });
      let pixels: Float32Array;
      try {
        const negative = p.negativePrompt ?? "";
        const { context, vector } = noGrad(() =>
          "textEncoder2" in sd
            ? encodeSdxlConditioning(
              { ...sd, addEmbedding: sd.config.unet.addEmbedding! },
              [p.prompt],
              [negative],
              scale,
              // kohya's SDXL sampling: original and target size the image's, no crop.
              sdxlTimeIds(undefined, { width, height, sizeScale: null }),
            )
            : {
              context: encodeConditioning(sd.tokenizer, sd.textEncoder, [p.prompt], [negative], {
                guidanceScale: scale,
                clipSkip: s.clipSkip,
              }).context,
              vector: null,
            }
        );
        try {
          const latents = await denoise(sd.unet, {
            scheduler: createScheduler(sampler, { vPrediction: s.vParameterization }),
            steps,
            initNoise: noise.initNoise,
            context,
            vector: vector ?? undefined,
            guidanceScale: scale,
            noises: noise.noises,
          });
          const img = noGrad(() => decodeLatents(s.vae ?? sd.vae, latents, s.latentScale));
          latents.dispose();
          pixels = await img.toArray();
          img.dispose();
        } finally {
          context.dispose();
          vector?.dispose();
        }
      } finally {
        noise.dispose();
      }
      const rgb = new Uint8Array(width * height * 3);
      const plane = width * height;
      for (let k = 0; k < plane; k++) {
        for (let c = 0; c < 3; c++) {
          const v = (pixels[c * plane + k] + 1) * 127.5;
          rgb[k * 3 + c] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
      const num = at.epoch !== null
        ? `e${String(at.epoch).padStart(6, "0")}`
        : String(at.step).padStart(6, "0");
      const name = `${s.outputName ? s.outputName + "_" : ""}${num}_${String(i).padStart(2, "0")}` +
        `_${stamp(new Date())}_${seed}.png`;
      const path = joinPath(dir, name);
      await writeFileAtomic(path, await encodePng(makeImage(width, height, 3, rgb)));
      files.push(path);
      at.onWritten?.(path, p.prompt);
    }
  } finally {
    params.forEach((t, k) => (t.requiresGrad = flags[k]));
    net.setTraining(wasTraining);
  }
  return files;
}
