/**
 * The dataset scan's verification: every image is decoded once before training, so that a
 * corrupt, truncated or undecodable file is left out of the image counts and the buckets and
 * listed in one summary, instead of surfacing mid-run (kohya stops with a trace there). The
 * decodes run on data loader workers when there are enough images to pay for starting them.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { readImage } from "../image/decode.ts";
import { DecodePool } from "./worker_pool.ts";

/** Decodes image files to see that they can be: the reason per path that cannot. */
export interface ImageChecker {
  check(paths: readonly string[]): Promise<Map<string, string>>;
  /** Stop any workers (safe to call more than once). */
  close(): void;
}

/** Below this many images a worker's start-up costs more than the decodes it would take over. */
const MIN_IMAGES_FOR_WORKERS = 8;

/** In-process checks, or up to `workers` Web Workers (at most one per CPU core). */
export function imageChecker(workers: number): ImageChecker {
  const cores = globalThis.navigator?.hardwareConcurrency ?? 1;
  let pool: DecodePool | null = null;
  const checkOne = async (path: string): Promise<string | null> => {
    try {
      await readImage(path, { applyOrientation: false });
      return null;
    } catch (e) {
      if (e instanceof LorakitError) return e.message;
      throw e;
    }
  };
  return {
    async check(paths) {
      const bad = new Map<string, string>();
      const n = Math.min(Math.max(0, Math.floor(workers)), cores, paths.length);
      if (n < 1 || paths.length < MIN_IMAGES_FOR_WORKERS) {
        for (const p of paths) {
          const reason = await checkOne(p);
          if (reason !== null) bad.set(p, reason);
        }
        return bad;
      }
      if (pool === null || pool.size < n) {
        pool?.terminate();
        pool = new DecodePool(n);
      }
      const active = pool;
      const results = await Promise.allSettled(paths.map((p) => active.check(p)));
      for (const [i, r] of results.entries()) {
        if (r.status === "fulfilled") continue;
        if (!(r.reason instanceof LorakitError)) throw r.reason;
        bad.set(paths[i], r.reason.message);
      }
      return bad;
    },
    close() {
      pool?.terminate();
      pool = null;
    },
  };
}

/** One summary of the images left out: a count line and up to `limit` `path: reason` lines. */
export function skippedSummary(
  skipped: readonly { path: string; reason: string }[],
  total: number,
  limit = 20,
): string {
  const lines = skipped.slice(0, limit).map((s) =>
    `  ${s.reason.startsWith(s.path) ? s.reason : `${s.path}: ${s.reason}`}`
  );
  if (skipped.length > limit) lines.push(`  ... and ${skipped.length - limit} more`);
  return `left out ${skipped.length} of ${total} images that cannot be used ` +
    `(not counted, not in any bucket):\n${lines.join("\n")}`;
}
