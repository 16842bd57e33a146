/**
 * Whether a merged checkpoint holds exactly `base + ratio · ΔW` for every module of a LoRA: per
 * module, the relative Frobenius error `‖(W_merged − W_base) − ratio·ΔW‖ / ‖ratio·ΔW‖`, in
 * float64 from the stored float32 weights (so the floor is float32 rounding of `W + ΔW`).
 *
 * @module
 */
import { loadCheckpoint } from "../io/checkpoint.ts";
import { bindLoraFile, openLoraFile } from "../lora/lora_file.ts";
import { loraTargets } from "../lora/modules.ts";
import { loraDelta } from "./lora_compare.ts";

/** Summary of {@link checkMergedWeights}. */
export interface MergeCheck {
  modules: number;
  /** sqrt(Σ error²) / sqrt(Σ ‖ratio·ΔW‖²). */
  overallRelError: number;
  maxRelError: number;
}

/** Compare `merged − base` with the LoRA's deltas at `ratio`, module by module. */
export async function checkMergedWeights(
  basePath: string,
  mergedPath: string,
  loraPath: string,
  ratio: number,
): Promise<MergeCheck> {
  const base = await loadCheckpoint(basePath);
  try {
    const merged = await loadCheckpoint(mergedPath);
    try {
      const lora = await openLoraFile(loraPath);
      try {
        const targets = loraTargets(
          base.names().map((n) => ({ name: n, shape: base.info(n).shape })),
        );
        let errSq = 0, refSq = 0, maxRel = 0, count = 0;
        for (const [prefix, target] of bindLoraFile(lora, targets)) {
          const m = await lora.readModule(prefix);
          const want = loraDelta(m.down, m.up, (ratio * m.alpha) / m.down.shape[0]);
          const a = (await base.readF32(target.weight)).data;
          const b = (await merged.readF32(target.weight)).data;
          let e = 0, r = 0;
          for (let i = 0; i < want.length; i++) {
            e += (b[i] - a[i] - want[i]) ** 2;
            r += want[i] ** 2;
          }
          errSq += e;
          refSq += r;
          if (r > 0) maxRel = Math.max(maxRel, Math.sqrt(e / r));
          count++;
        }
        return {
          modules: count,
          overallRelError: refSq > 0 ? Math.sqrt(errSq / refSq) : 0,
          maxRelError: maxRel,
        };
      } finally {
        lora.close();
      }
    } finally {
      merged.close();
    }
  } finally {
    base.close();
  }
}
