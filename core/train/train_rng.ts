/**
 * The training run's randomness, derived instead of carried: every draw (noise, timesteps, noise
 * offset, caption shuffles, flips, LoRA dropout and DyLoRA ranks, VAE latent samples) comes from a
 * generator seeded by a hash of `(--seed, what, step, index)`. Nothing random has hidden state
 * that lives across steps, so `--resume` only needs the step number to continue the exact stream
 * an uninterrupted run would have drawn, and data loading can run ahead in any order.
 *
 * The streams are not PyTorch's: the same `--seed` gives different numbers than kohya's run.
 *
 * @module
 */
import { GaussianGenerator } from "../sample/noise.ts";
import { type Random, seededRandom } from "./buckets.ts";

/** What a stream is for (mixed into its seed). */
export const STREAM = {
  noise: 1,
  timesteps: 2,
  noiseOffset: 3,
  caption: 4,
  flip: 5,
  network: 6,
  latentSample: 7,
  crop: 8,
  batchOrder: 9,
  colorAug: 10,
} as const;

/** One of {@link STREAM}'s values. */
export type StreamId = typeof STREAM[keyof typeof STREAM];

/** murmur3's 32-bit finalizer. */
function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** A 32-bit seed from the run seed and any number of integers (order matters). */
export function mixSeed(seed: number, ...parts: number[]): number {
  let h = fmix((Math.trunc(seed) >>> 0) ^ 0x9e3779b9);
  for (const p of parts) {
    const lo = p >>> 0, hi = Math.floor(p / 4294967296) >>> 0;
    h = fmix((h ^ lo) + 0x7f4a7c15);
    h = fmix((h ^ hi) + 0x6a09e667);
  }
  return h;
}

/** A uniform [0, 1) generator for `(seed, stream, parts...)`. */
export function streamRandom(seed: number, stream: StreamId, ...parts: number[]): Random {
  return seededRandom(mixSeed(seed, stream, ...parts));
}

/** A standard-normal generator for `(seed, stream, parts...)`. */
export function streamGaussian(
  seed: number,
  stream: StreamId,
  ...parts: number[]
): GaussianGenerator {
  return new GaussianGenerator(mixSeed(seed, stream, ...parts));
}

/** A stable 32-bit number for a string (FNV-1a), e.g. an image key in a stream's parts. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
