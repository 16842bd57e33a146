/**
 * Seeded noise for generation, drawn up front per seed the way kohya's gen_img does it: for each
 * image, seed a generator, draw its starting noise, then `steps * noisesPerStep` sampler noises,
 * then (img2img) the noise that noises the init latents; a batch stacks its images' draws. So a
 * seed gives the same image whatever the batch size or the image's position in the batch.
 *
 * The generator is NOT PyTorch's (`torch.manual_seed` + `torch.randn`, a Mersenne Twister with
 * its own Box-Muller layout): the same seed gives different numbers here than in kohya, so images
 * match kohya's only when its noises are supplied (the golden fixtures do that). Ours is sfc32
 * (seeded through splitmix32 from the 32-bit seed) with the Box-Muller transform in float64;
 * deterministic across platforms since it uses only 32-bit integer math and IEEE doubles.
 *
 * @module
 */
import { Tensor } from "../../gpu/mod.ts";
import { boxMuller, type Random } from "../../gpu/random.ts";
import { LorakitError } from "../errors.ts";

/** A deterministic standard-normal generator seeded by a 32-bit integer. */
export class GaussianGenerator {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  /** Box-Muller over {@link nextUniform}. */
  #normal: Random = boxMuller(() => this.nextUniform());

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new LorakitError(`seed: expected an integer from 0 to 4294967295, found ${seed}`);
    }
    let s = seed >>> 0;
    const next = (): number => {
      // splitmix32: spreads one 32-bit seed over sfc32's four words.
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = next();
    this.#b = next();
    this.#c = next();
    this.#d = next();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** The next raw 32-bit value (sfc32). */
  nextUint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** A uniform double in (0, 1) from 53 random bits (never 0, so log() is finite). */
  nextUniform(): number {
    const hi = this.nextUint32() >>> 5, lo = this.nextUint32() >>> 6;
    return (hi * 67108864 + lo + 0.5) / 9007199254740992;
  }

  /** One standard-normal value (Box-Muller; the pair's second value is kept for the next call). */
  nextGaussian(): number {
    return this.#normal();
  }

  /** `count` standard-normal values as float32. */
  gaussian(count: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.nextGaussian();
    return out;
  }
}

/** One image's draws, in kohya's order. */
export interface SeedNoises {
  /** Starting noise (kohya's `start_code`), one latent [C, h, w]. */
  start: Float32Array;
  /** Sampler noises, `steps * noisesPerStep` latents. */
  sampler: Float32Array[];
  /** img2img noise when asked for. */
  img2img: Float32Array | null;
}

/** What to draw per seed. */
export interface NoisePlan {
  /** Latent shape of one image [C, h, w]. */
  latentShape: readonly [number, number, number];
  /** `--steps`. */
  steps: number;
  /** `noisesPerStep(sampler)`. */
  noisesPerStep: number;
  /** Draw the img2img noise too. */
  img2img?: boolean;
}

/** The draws for one seed. */
export function seedNoises(seed: number, plan: NoisePlan): SeedNoises {
  const [c, h, w] = plan.latentShape;
  const n = c * h * w;
  const g = new GaussianGenerator(seed);
  const start = g.gaussian(n);
  const sampler = Array.from({ length: plan.steps * plan.noisesPerStep }, () => g.gaussian(n));
  return { start, sampler, img2img: plan.img2img ? g.gaussian(n) : null };
}

/** A batch's noises on the GPU, each [B, C, h, w] with image b drawn from `seeds[b]`. */
export interface NoiseBatch {
  initNoise: Tensor;
  noises: Tensor[];
  img2imgNoise: Tensor | null;
  /** Free all of them. */
  dispose(): void;
}

/** Draw every seed's noises and stack them per draw into batch tensors. */
export function noiseBatch(seeds: readonly number[], plan: NoisePlan): NoiseBatch {
  const per = seeds.map((s) => seedNoises(s, plan));
  const shape = [seeds.length, ...plan.latentShape];
  const stack = (pick: (s: SeedNoises) => Float32Array): Tensor => {
    const n = plan.latentShape[0] * plan.latentShape[1] * plan.latentShape[2];
    const out = new Float32Array(n * seeds.length);
    per.forEach((s, b) => out.set(pick(s), b * n));
    return Tensor.fromArray(out, shape);
  };
  const initNoise = stack((s) => s.start);
  const noises = per[0].sampler.map((_, j) => stack((s) => s.sampler[j]));
  const img2imgNoise = plan.img2img ? stack((s) => s.img2img!) : null;
  return {
    initNoise,
    noises,
    img2imgNoise,
    dispose() {
      initNoise.dispose();
      for (const n of noises) n.dispose();
      img2imgNoise?.dispose();
    },
  };
}
