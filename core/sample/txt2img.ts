/**
 * kohya gen_img's denoising loop (`PipelineLike.__call__`) for any model with a U-Net `forward`:
 * start from `noise * init_noise_sigma` (txt2img) or from the init latents noised to the
 * strength's timestep (img2img, with kohya's own timestep arithmetic); per step, scale
 * `concat(latents x k)`, run the U-Net once on the k stacked contexts (SDXL: and vectors `y`),
 * combine with classifier-free guidance, and let the scheduler step. k is 2 ([negative, prompt])
 * for `--scale` > 1, 3 with `--negative_scale` ([negative, prompt, empty]), and 1 without
 * guidance. Decoding divides by the latent scale (SD's 0.18215 unless given) before the VAE.
 *
 * @module
 */
import { cast, concat, rt, scale, scope, slice, type Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { lincomb, type Scheduler } from "./schedulers/scheduler.ts";

/** SD 1.x/2.x latent scale factor (`0.18215`). */
export const LATENT_SCALE = 0.18215;

/** The U-Net part of a model the loop needs (`y`: SDXL's added conditioning vector). */
export interface DenoiseUNet {
  forward(sample: Tensor, timesteps: readonly number[], context: Tensor, y?: Tensor): Tensor;
}

/** The VAE part `decodeLatents` needs. */
export interface DecodeVae {
  decode(latents: Tensor): Tensor;
}

/** img2img input: kohya's `init_image` path after VAE encoding. */
export interface Img2ImgInput {
  /** Init latents [B, 4, h, w], already multiplied by 0.18215. */
  latents: Tensor;
  /** The seed's img2img noise [B, 4, h, w] (kohya's `i2i_noises`). */
  noise: Tensor;
  /** `--strength` in [0, 1] (kohya's default 0.8). */
  strength: number;
}

/** Inputs of {@link denoise}. */
export interface DenoiseOptions {
  /** A fresh scheduler (its timesteps are set here). */
  scheduler: Scheduler;
  /** `--steps`. */
  steps: number;
  /** The seed's starting noise [B, 4, h, w] (kohya's `start_code`), before init_noise_sigma. */
  initNoise: Tensor;
  /**
   * Text conditioning [k * B, T, C]: [negative; prompt] with guidance, plus [empty] after them
   * with a negative scale, or [prompt] alone without guidance.
   */
  context: Tensor;
  /**
   * SDXL's added conditioning vector `y` [k * B, adm], stacked as `context` is (pooled text
   * embedding and size embeddings); absent for SD 1.x/2.x.
   */
  vector?: Tensor;
  /** `--scale` (guidance is off at 1 or below, as in kohya). */
  guidanceScale: number;
  /** `--negative_scale` (ignored without guidance). */
  negativeScale?: number | null;
  /**
   * The seed's sampler noises, one per scheduler `step` call in order (kohya draws
   * `steps * noisesPerStep(sampler)` of them up front); needed when the sampler draws noise.
   */
  noises?: readonly Tensor[];
  /** img2img instead of txt2img. */
  img2img?: Img2ImgInput;
  /** Called after each step with the step number (from 0) and timestep. */
  onStep?: (index: number, timestep: number) => void | Promise<void>;
}

/** How many contexts are stacked per latent: 1 (no guidance), 2, or 3 (negative scale). */
export function contextMultiplicity(guidanceScale: number, negativeScale?: number | null): number {
  if (!(guidanceScale > 1)) return 1;
  return negativeScale === null || negativeScale === undefined ? 2 : 3;
}

/**
 * kohya's img2img schedule: `init = min(floor(steps * strength) + offset, steps)`, the noising
 * timestep `timesteps[-init]`, and the run from `max(steps - init + offset, 0)` (offset is the
 * scheduler's steps_offset; kohya's arithmetic, kept as is).
 */
export function img2imgTimesteps(
  timesteps: Float64Array,
  steps: number,
  strength: number,
  offset: number,
): { noiseTimestep: number; run: Float64Array } {
  if (!(strength >= 0 && strength <= 1)) {
    throw new LorakitError(`--strength: expected a value in [0, 1], found ${strength}`);
  }
  const init = Math.min(Math.floor(steps * strength) + offset, steps);
  const at = init === 0 ? 0 : timesteps.length - init;
  const start = Math.max(steps - init + offset, 0);
  return { noiseTimestep: timesteps[at], run: timesteps.slice(start) };
}

/** The guided noise prediction from the U-Net output [k * B, ...]. */
function guide(pred: Tensor, k: number, g: number, neg: number | null | undefined): Tensor {
  if (k === 1) return pred.retain();
  const b = pred.shape[0] / k;
  const uncond = slice(pred, 0, 0, b), cond = slice(pred, 0, b, 2 * b);
  if (k === 2) return lincomb([[1 - g, uncond], [g, cond]]);
  // uncond + g (text - uncond) - n (negative - uncond), with uncond the empty prompt's.
  const real = slice(pred, 0, 2 * b, 3 * b), n = neg!;
  return lincomb([[1 - g + n, real], [g, cond], [-n, uncond]]);
}

/** Run the sampling loop; returns the final latents [B, 4, h, w] (f32). */
export async function denoise(unet: DenoiseUNet, opts: DenoiseOptions): Promise<Tensor> {
  const { scheduler, steps, context } = opts;
  const k = contextMultiplicity(opts.guidanceScale, opts.negativeScale);
  const batch = opts.initNoise.shape[0];
  for (const [what, t] of [["text contexts", context], ["vectors y", opts.vector]] as const) {
    if (t !== undefined && t.shape[0] !== k * batch) {
      throw new LorakitError(
        `generation: expected ${k} x ${batch} ${what} for guidance scale ` +
          `${opts.guidanceScale}${k === 3 ? " with a negative scale" : ""}, found ${t.shape[0]}`,
      );
    }
  }
  scheduler.setTimesteps(steps);
  let latents: Tensor;
  let timesteps = scheduler.timesteps;
  if (opts.img2img) {
    const { noiseTimestep, run } = img2imgTimesteps(
      timesteps,
      steps,
      opts.img2img.strength,
      scheduler.config.stepsOffset,
    );
    latents = scheduler.addNoise(opts.img2img.latents, opts.img2img.noise, noiseTimestep);
    timesteps = run;
  } else {
    latents = scale(opts.initNoise, scheduler.initNoiseSigma);
  }
  try {
    for (let i = 0; i < timesteps.length; i++) {
      const t = timesteps[i];
      const noise = scheduler.drawsNoise ? opts.noises?.[i] : undefined;
      if (scheduler.drawsNoise && !noise) {
        throw new LorakitError(
          `sampler ${scheduler.name}: step ${i + 1} of ${timesteps.length} draws noise but only ` +
            `${opts.noises?.length ?? 0} noises were supplied`,
        );
      }
      const next = scope(() => {
        const stacked = k === 1 ? latents : concat(new Array(k).fill(latents), 0);
        const input = scheduler.scaleModelInput(stacked, t);
        let pred = opts.vector === undefined
          ? unet.forward(input, [t], context)
          : unet.forward(input, [t], context, opts.vector);
        if (pred.dtype !== "f32") pred = cast(pred, "f32");
        return scheduler.step(
          guide(pred, k, opts.guidanceScale, opts.negativeScale),
          t,
          latents,
          noise,
        );
      });
      latents.dispose();
      latents = next;
      rt().flush();
      await opts.onStep?.(i, t);
    }
  } catch (e) {
    latents.dispose();
    throw e;
  } finally {
    scheduler.dispose();
  }
  return latents;
}

/**
 * Images [B, 3, 8h, 8w] in about [-1, 1] from latents (`vae.decode(latents / latentScale)`;
 * SD's 0.18215 by default, SDXL's VAE 0.13025).
 */
export function decodeLatents(vae: DecodeVae, latents: Tensor, latentScale = LATENT_SCALE): Tensor {
  return scope(() => {
    const img = vae.decode(scale(latents, 1 / latentScale));
    return img.dtype === "f32" ? img : cast(img, "f32");
  });
}
