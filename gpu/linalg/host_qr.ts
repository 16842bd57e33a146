/**
 * Host-side (float64) helpers for the randomized SVD: a seeded Gaussian generator and the
 * orthonormalisation of a small set of long vectors (modified Gram-Schmidt, twice: "twice is
 * enough"), which replaces a vector that collapses (a rank-deficient block) by a fresh random one
 * orthogonal to the rest, so a basis always has its full width.
 *
 * Vectors are the rows of a row-major [count, len] Float64Array.
 *
 * @module
 */
import { normalRandom, type Random } from "../random.ts";

/** A deterministic normal generator (mulberry32 + Box-Muller: {@link normalRandom}), f64. */
export class Gaussian {
  private readonly draw: Random;
  constructor(seed: number) {
    this.draw = normalRandom(seed);
  }
  /** One standard normal sample. */
  next(): number {
    return this.draw();
  }
  /** `n` samples. */
  fill(n: number): Float64Array {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = this.next();
    return out;
  }
}

function dot(a: Float64Array, ao: number, b: Float64Array, bo: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i++) s += a[ao + i] * b[bo + i];
  return s;
}

/** Subtract from row `j` its projections on rows 0..j-1 (one MGS pass); returns its new norm. */
function project(x: Float64Array, j: number, len: number): number {
  const oj = j * len;
  for (let i = 0; i < j; i++) {
    const oi = i * len;
    const c = dot(x, oi, x, oj, len);
    if (c !== 0) { for (let t = 0; t < len; t++) x[oj + t] -= c * x[oi + t]; }
  }
  return Math.sqrt(dot(x, oj, x, oj, len));
}

/**
 * Orthonormalise the `count` rows of `x` (each of length `len`) in place, in order, so the span
 * of the first j rows is kept for every j (as in a QR factorisation). A row whose norm drops
 * below 1e-10 of its original norm after projection (it was in the span of earlier rows) is
 * replaced by a random vector from `rng`, orthogonalised in turn. Returns the number of rows that
 * were replaced.
 */
export function orthonormalizeRows(
  x: Float64Array,
  count: number,
  len: number,
  rng: Gaussian,
): number {
  if (count > len) throw new Error(`orthonormalizeRows: ${count} vectors in dimension ${len}`);
  let replaced = 0;
  for (let j = 0; j < count; j++) {
    const oj = j * len;
    let before = Math.sqrt(dot(x, oj, x, oj, len));
    let tries = 0;
    for (;;) {
      let after = before === 0 ? 0 : project(x, j, len);
      if (after > 0) after = project(x, j, len); // reorthogonalise (CGS2/MGS2)
      if (after > 1e-10 * before && after > 0) {
        for (let t = 0; t < len; t++) x[oj + t] /= after;
        break;
      }
      if (++tries > 8) throw new Error("orthonormalizeRows: cannot complete the basis");
      replaced++;
      for (let t = 0; t < len; t++) x[oj + t] = rng.next();
      before = Math.sqrt(dot(x, oj, x, oj, len));
    }
  }
  return replaced;
}
