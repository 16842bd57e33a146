/**
 * How close two LoRA files are as weight changes: per module, the delta it adds to its layer,
 * `(alpha / rank) · up @ down` (3x3 convs flattened to `[out, in·9]`), compared in float64 as the
 * relative Frobenius error `‖ΔB − ΔA‖ / ‖ΔA‖`. Factors are not compared directly: an SVD
 * extraction finds the same product with different factors.
 *
 * @module
 */
import { openLoraFile } from "../lora/lora_file.ts";
import type { HostTensor } from "../io/tensor_source.ts";

/** One module's comparison. */
export interface ModuleDeltaError {
  prefix: string;
  /** ‖ΔA‖ (Frobenius). */
  norm: number;
  /** ‖ΔB − ΔA‖ / ‖ΔA‖ (0 when both are zero). */
  relError: number;
}

/** The comparison of two LoRA files. */
export interface LoraDeltaComparison {
  modules: ModuleDeltaError[];
  /** Prefixes in A with a non-zero delta that B lacks. */
  missing: string[];
  /** Prefixes in B that A lacks. */
  extra: string[];
  /** sqrt(Σ‖ΔB − ΔA‖²) / sqrt(Σ‖ΔA‖²) over the common modules. */
  overallRelError: number;
  maxRelError: number;
  medianRelError: number;
}

/** `scale · up @ down` as a float64 `[out, inner]` matrix. */
export function loraDelta(down: HostTensor, up: HostTensor, scale: number): Float64Array {
  const rank = down.shape[0];
  const inner = down.data.length / rank;
  const out = up.shape[0];
  const d = new Float64Array(out * inner);
  for (let o = 0; o < out; o++) {
    for (let r = 0; r < rank; r++) {
      const u = up.data[o * rank + r] * scale;
      if (u === 0) continue;
      const row = o * inner, dr = r * inner;
      for (let i = 0; i < inner; i++) d[row + i] += u * down.data[dr + i];
    }
  }
  return d;
}

function norm(a: Float64Array): number {
  let s = 0;
  for (const v of a) s += v * v;
  return Math.sqrt(s);
}

/** Read one module's delta from an open file. */
async function deltaOf(
  file: Awaited<ReturnType<typeof openLoraFile>>,
  prefix: string,
): Promise<Float64Array> {
  const m = await file.readModule(prefix);
  return loraDelta(m.down, m.up, m.alpha / m.down.shape[0]);
}

/** Compare the per-module deltas of LoRA file `b` against reference `a`. */
export async function compareLoraDeltas(
  aPath: string,
  bPath: string,
): Promise<LoraDeltaComparison> {
  const a = await openLoraFile(aPath);
  try {
    const b = await openLoraFile(bPath);
    try {
      const inB = new Set(b.modules.map((m) => m.prefix));
      const inA = new Set(a.modules.map((m) => m.prefix));
      const modules: ModuleDeltaError[] = [];
      const missing: string[] = [];
      let errSq = 0, refSq = 0;
      for (const m of a.modules) {
        const da = await deltaOf(a, m.prefix);
        const na = norm(da);
        if (!inB.has(m.prefix)) {
          if (na > 0) missing.push(m.prefix);
          continue;
        }
        const db = await deltaOf(b, m.prefix);
        for (let i = 0; i < db.length; i++) db[i] -= da[i];
        const ne = norm(db);
        errSq += ne * ne;
        refSq += na * na;
        modules.push({ prefix: m.prefix, norm: na, relError: na > 0 ? ne / na : ne > 0 ? 1 : 0 });
      }
      const rel = modules.map((m) => m.relError).sort((x, y) => x - y);
      return {
        modules,
        missing,
        extra: b.modules.map((m) => m.prefix).filter((p) => !inA.has(p)),
        overallRelError: refSq > 0 ? Math.sqrt(errSq / refSq) : 0,
        maxRelError: rel.length > 0 ? rel[rel.length - 1] : 0,
        medianRelError: rel.length > 0 ? rel[Math.floor((rel.length - 1) / 2)] : 0,
      };
    } finally {
      b.close();
    }
  } finally {
    a.close();
  }
}
