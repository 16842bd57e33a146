/**
 * The fuzzer's random numbers: xorshift32, seeded per case from the campaign seed and the case
 * index, so any case replays alone from `--seed S --case I` without running the ones before it.
 *
 * @module
 */

/** A source of random numbers for one case. */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform integer in [0, n). */
  int(n: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
}

/** A 32-bit avalanche mix (murmur3's finaliser), so neighbouring indices get unrelated seeds. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

/** The xorshift32 state for case `index` of a campaign started from `seed` (never 0). */
export function caseSeed(seed: number, index: number): number {
  return mix32((mix32(seed >>> 0) ^ Math.imul(index + 1, 0x9e3779b9)) >>> 0) || 0x6d2b79f5;
}

/** xorshift32 (Marsaglia 2003) from `state`. */
export function xorshift32(state: number): Rng {
  let x = state >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)],
  };
}

/** The generator of case `index` of the campaign `seed`. */
export function caseRng(seed: number, index: number): Rng {
  return xorshift32(caseSeed(seed, index));
}
