/**
 * The seeded pseudo-random generator everything host-side draws from where a stream must be
 * reproducible (LoRA initialisation and dropouts, bucket shuffles, the demo world, the tiny
 * model's weights, the randomized SVD's test matrix): mulberry32, a small 32-bit generator with a
 * full 2^32 period that uses only 32-bit integer math and IEEE doubles, so a seed gives the same
 * numbers on every platform; and a Box-Muller normal draw on top of it.
 *
 * Seeded outputs are pinned by tests and by committed files (the demo world, the demo base
 * model's data): any change here changes them.
 *
 * @module
 */

/** A generator of numbers in [0, 1) (or (0, 1), or normal values): each call draws the next. */
export type Random = () => number;

/** mulberry32's raw 32-bit outputs (unsigned integers); `seed` is reduced modulo 2^32. */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Uniform in [0, 1): mulberry32's output over 2^32. */
export function uniformRandom(seed: number): Random {
  const next = mulberry32(seed);
  return () => next() / 4294967296;
}

/** Uniform in (0, 1), never 0 (so `log` is finite): mulberry32's output plus 1/2, over 2^32. */
export function openUniformRandom(seed: number): Random {
  const next = mulberry32(seed);
  return () => (next() + 0.5) / 4294967296;
}

/** How {@link boxMuller} turns uniforms into normal values. */
export interface NormalOptions {
  /** Standard deviation (default 1); it multiplies the radius before the angle's cosine/sine. */
  scale?: number;
  /**
   * Use both values of each Box-Muller pair, the sine one for the next call (default); false
   * draws two uniforms for every value and keeps the cosine one only.
   */
  pairs?: boolean;
}

/**
 * Normal values by the Box-Muller transform of `uniform`, which must never give 0: each pair of
 * uniforms u1, u2 gives `r cos θ` (then, with `pairs`, `r sin θ`) with
 * `r = scale * sqrt(-2 ln u1)`, `θ = 2π u2`.
 */
export function boxMuller(uniform: Random, options: NormalOptions = {}): Random {
  const scale = options.scale ?? 1, pairs = options.pairs ?? true;
  let spare: number | null = null;
  return () => {
    if (spare !== null) {
      const v = spare;
      spare = null;
      return v;
    }
    const r = scale * Math.sqrt(-2 * Math.log(uniform())), theta = 2 * Math.PI * uniform();
    if (pairs) spare = r * Math.sin(theta);
    return r * Math.cos(theta);
  };
}

/** Normal values from mulberry32: {@link boxMuller} of {@link openUniformRandom}. */
export function normalRandom(seed: number, options: NormalOptions = {}): Random {
  return boxMuller(openUniformRandom(seed), options);
}

/** `n` normal values from {@link normalRandom} as float32 (e.g. a test's or a bench's input). */
export function randomNormals(n: number, seed: number, options: NormalOptions = {}): Float32Array {
  const next = normalRandom(seed, options), out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = next();
  return out;
}
