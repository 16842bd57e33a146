/**
 * kohya's `resize_lora.py`: re-factor each module's product `up @ down` at a new rank by SVD,
 * either a fixed rank (`--new_rank`, `--new_conv_rank` for 3x3 convs) or one chosen per module
 * from the singular values (`--dynamic_method sv_ratio | sv_fro | sv_cumulative` with
 * `--dynamic_param`, capped by the fixed rank). The new alpha keeps the module's scale:
 * `alpha' = (alpha / old_rank) · new_rank` (scale 1 when the file has no alpha). Factors are
 * `up = U·S`, `down = Vh` in lorakit's sign rule, without a clamp (kohya clamps only in extract and
 * SVD merge).
 *
 * The product has rank <= old rank r, so its spectrum is the top r singular values followed by
 * zeros: the SVD computes max(r, new rank) triplets and the rank rules read that spectrum padded
 * with zeros to min(out, in·kh·kw), which is what kohya's full SVD returns up to rounding noise.
 *
 * SD 1.x/2.x and SDXL files alike (kohya's script reads no model): the modules keep their names
 * and the input's metadata is kept apart from the keys kohya rewrites, so an SDXL file stays
 * `sdxl_base_v1-0` with its SDXL modelspec.
 *
 * @module
 */
import { initGpu } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { compareUtf8 } from "../io/safetensors_write.ts";
import { type LoraWeightsToSave, openLoraFile, saveLoraFile } from "./lora_file.ts";
import { pyFloatRepr } from "./metadata.ts";
import { mapInFlight, MODULES_IN_FLIGHT } from "./pipeline.ts";
import {
  addLoraProduct,
  factorsAsLora,
  type LowRankFactors,
  lowRankFactors,
  type Precision,
} from "./svd_ops.ts";

/** kohya's dynamic rank rules. */
export type DynamicMethod = "sv_ratio" | "sv_fro" | "sv_cumulative";

/** kohya's `MIN_SV`: a module whose largest singular value is at most this gets rank 1. */
export const MIN_SV = 1e-6;

/** kohya's `rank_resize` result for one module. */
export interface RankChoice {
  newRank: number;
  newAlpha: number;
  /** Σ S[:k] / Σ S. */
  sumRetained: number;
  /** ‖S[:k]‖ / ‖S‖. */
  froRetained: number;
  /** S[0] / S[k-1]. */
  maxRatio: number;
}

/** First index i with `sorted[i] >= v` (torch.searchsorted, left side). */
function searchsorted(sorted: Float64Array, v: number): number {
  let lo = 0, hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function cumulative(values: Float64Array): Float64Array {
  const out = new Float64Array(values.length);
  let s = 0;
  values.forEach((v, i) => (out[i] = s += v));
  return out;
}

/**
 * kohya's `rank_resize`: the rank (and alpha = scale·rank) a module gets from its singular
 * values `S` (descending, the full spectrum), the fixed rank cap and the dynamic rule.
 */
export function chooseRank(
  S: Float64Array,
  rank: number,
  method: DynamicMethod | null,
  param: number | null,
  scale: number,
): RankChoice {
  const n = S.length;
  // kohya's index_sv_* return a count clamped to [1, n - 1], and rank_resize adds one to it:
  // the dynamic rank is one more than the number of values the rule keeps (sv_ratio keeping 3
  // values gives rank 4), which its fixtures confirm.
  const index = (i: number) => Math.max(1, Math.min(i, n - 1));
  let newRank = rank;
  if (method === "sv_ratio") {
    const min = S[0] / param!;
    newRank = index(S.filter((s) => s > min).length) + 1;
  } else if (method === "sv_cumulative") {
    const cum = cumulative(S);
    const total = cum[n - 1];
    newRank = index(searchsorted(cum.map((c) => c / total), param!) + 1) + 1;
  } else if (method === "sv_fro") {
    const cum = cumulative(S.map((s) => s * s));
    const total = cum[n - 1];
    newRank = index(searchsorted(cum.map((c) => c / total), param! * param!) + 1) + 1;
  }
  if (S[0] <= MIN_SV) newRank = 1;
  else if (newRank > rank) newRank = rank;
  // float(scale * new_rank): scale is a float32 tensor in kohya when the file has an alpha.
  const newAlpha = Math.fround(scale * newRank);
  let sumAll = 0, sumK = 0, sqAll = 0, sqK = 0;
  S.forEach((s, i) => {
    sumAll += Math.abs(s);
    sqAll += s * s;
    if (i < newRank) (sumK += Math.abs(s), sqK += s * s);
  });
  return {
    newRank,
    newAlpha,
    sumRetained: sumK / sumAll,
    froRetained: Math.sqrt(sqK) / Math.sqrt(sqAll),
    maxRatio: S[0] / S[newRank - 1],
  };
}

/** Options of {@link resizeLora}. */
export interface ResizeOptions {
  model: string;
  saveTo: string;
  /** Rank of Linear / 1x1 modules, the cap in dynamic mode (kohya default 4). */
  newRank: number;
  /** Rank of 3x3 convs; default `newRank`. */
  newConvRank?: number | null;
  dynamicMethod?: DynamicMethod | null;
  dynamicParam?: number | null;
  /** Default float. */
  savePrecision?: Precision;
  /** Called per module with kohya's `--verbose` numbers. */
  onModule?: (prefix: string, choice: RankChoice, done: number, total: number) => void;
}

/** What {@link resizeLora} wrote. */
export interface ResizeResult {
  modules: number;
  oldRank: number;
  /** Module count per new rank. */
  ranks: Map<number, number>;
  /** Mean and population std of the modules' Frobenius retention (kohya's verbose summary). */
  froMean: number;
  froStd: number;
  metadata: Record<string, string>;
}

/** Resize a LoRA file's ranks and write the result atomically. */
export async function resizeLora(opts: ResizeOptions): Promise<ResizeResult> {
  const method = opts.dynamicMethod ?? null;
  const param = opts.dynamicParam ?? null;
  if (method !== null && !param) {
    throw new LorakitError(
      `--dynamic_param: expected a value with --dynamic_method ${method}, found none`,
    );
  }
  const newConvRank = opts.newConvRank ?? opts.newRank;
  for (const [flag, r] of [["--new_rank", opts.newRank], ["--new_conv_rank", newConvRank]]) {
    if (!Number.isInteger(r) || (r as number) < 1) {
      throw new LorakitError(`${flag}: expected a positive integer rank, found ${r}`);
    }
  }
  const file = await openLoraFile(opts.model);
  try {
    await initGpu();
    const ranks = new Map<number, number>();
    const fro: number[] = [];
    const oldRank = Math.max(...file.modules.map((m) => m.rank));
    let done = 0;
    const results = await mapInFlight(file.modules, MODULES_IN_FLIGHT, async (m) => {
      const conv = m.downShape.length === 4;
      const cap = conv ? newConvRank : opts.newRank;
      const shape = conv
        ? [m.outFeatures, m.inFeatures, ...m.kernel]
        : [m.outFeatures, m.inFeatures];
      const cols = m.inFeatures * m.kernel[0] * m.kernel[1];
      const short = Math.min(m.outFeatures, cols);
      if (method === null && cap > short) {
        throw new LorakitError(
          `${conv ? "--new_conv_rank" : "--new_rank"}: ${cap} is larger than module ` +
            `'${m.prefix}' of ${file.path} allows: its weight is a ${m.outFeatures} x ${cols} ` +
            `matrix, so its rank is at most ${short}`,
        );
      }
      const w = await file.readModule(m.prefix);
      // kohya: scale = alpha / old_rank in float32 (1.0 when the file has no alpha).
      const scale = m.hasAlpha ? Math.fround(Math.fround(m.alpha) / m.rank) : 1.0;
      const product = addLoraProduct(null, w.up, w.down, 1);
      let f: LowRankFactors;
      try {
        f = await lowRankFactors(product, Math.min(Math.max(m.rank, cap), short), null);
      } finally {
        product.dispose();
      }
      const S = new Float64Array(short);
      S.set(f.S);
      const choice = chooseRank(S, cap, method, param, scale);
      const r = choice.newRank;
      const up = new Float32Array(m.outFeatures * r);
      for (let o = 0; o < m.outFeatures; o++) {
        up.set(f.up.subarray(o * f.rank, o * f.rank + r), o * r);
      }
      const down = f.down.slice(0, r * cols);
      opts.onModule?.(m.prefix, choice, ++done, file.modules.length);
      const saved: LoraWeightsToSave = {
        prefix: m.prefix,
        ...factorsAsLora({ up, down, rank: r }, shape),
        alpha: choice.newAlpha,
      };
      return { saved, choice };
    });
    for (const { choice } of results) {
      ranks.set(choice.newRank, (ranks.get(choice.newRank) ?? 0) + 1);
      if (!Number.isNaN(choice.froRetained)) fro.push(choice.froRetained);
    }
    const out = results.map((r) => r.saved);
    // kohya records the alpha of the last module it processed, in the file's sorted key order.
    const last = results.reduce((
      a,
      b,
    ) => (compareUtf8(a.saved.prefix, b.saved.prefix) > 0 ? a : b));
    const lastAlpha = last.choice.newAlpha;
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(file.metadata)) {
      if (!k.startsWith("sshs_")) metadata[k] = v;
    }
    const comment = file.metadata.ss_training_comment ?? "";
    if (method === null) {
      const convDesc = opts.newRank === newConvRank ? "" : ` (conv: ${newConvRank})`;
      metadata.ss_training_comment =
        `dimension is resized from ${oldRank} to ${opts.newRank}${convDesc}; ${comment}`;
      metadata.ss_network_dim = String(opts.newRank);
      metadata.ss_network_alpha = pyFloatRepr(lastAlpha);
    } else {
      metadata.ss_training_comment = `Dynamic resize with ${method}: ${
        pyFloatRepr(param!)
      } from ${oldRank}; ${comment}`;
      metadata.ss_network_dim = "Dynamic";
      metadata.ss_network_alpha = "Dynamic";
    }
    const written = await saveLoraFile(opts.saveTo, out, {
      precision: opts.savePrecision ?? "float",
      metadata,
    });
    const mean = fro.reduce((a, b) => a + b, 0) / fro.length;
    const std = Math.sqrt(fro.reduce((a, b) => a + (b - mean) ** 2, 0) / fro.length);
    return { modules: out.length, oldRank, ranks, froMean: mean, froStd: std, metadata: written };
  } finally {
    file.close();
  }
}
