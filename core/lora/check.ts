/**
 * kohya's `check_lora_weights.py`: one line per LoRA factor, `key,(shape),mean|w|,min|w|`, the
 * numbers printed as PyTorch prints a 0-d float32 tensor (`tensor(0.0123)`), so a script that
 * parses kohya's output reads ours. A factor whose mean |w| is 0 is an untrained `lora_up`.
 *
 * With `--show_all_keys` kohya appends every key again (its filter compares keys with
 * (key, tensor) pairs, so nothing is filtered); lorakit appends only the keys not already listed,
 * which is what the option is for.
 *
 * The statistics are one pass over data the host reads from the file anyway.
 *
 * @module
 */
import { compareUtf8 } from "../io/safetensors_write.ts";
import { openSafetensors } from "../io/safetensors.ts";

/** Python's `'{:.4e}'` (two-digit exponent at least). */
function sci4(x: number): string {
  const [m, e] = x.toExponential(4).split("e");
  const n = Number(e);
  return `${m}e${n < 0 ? "-" : "+"}${String(Math.abs(n)).padStart(2, "0")}`;
}

/**
 * `str(torch.tensor(x))` for a 0-d float32 tensor with PyTorch's default print options:
 * `tensor(0.0123)`, `tensor(1.2346e-05)`, `tensor(0.)`, `tensor(nan)`.
 */
export function torchScalarRepr(x: number): string {
  const v = Math.fround(x);
  let body: string;
  if (Number.isNaN(v)) body = "nan";
  else if (!Number.isFinite(v)) body = v > 0 ? "inf" : "-inf";
  else if (Number.isInteger(v)) {
    body = Math.abs(v) > 1e8 ? sci4(v) : `${v.toFixed(0)}.`;
  } else {
    const a = Math.abs(v);
    body = a < 1e-4 || a > 1e8 ? sci4(v) : v.toFixed(4);
  }
  return `tensor(${body})`;
}

/** One output line's values. */
export interface WeightStat {
  key: string;
  shape: number[];
  meanAbs: number;
  minAbs: number;
}

/** kohya's line: `key,(a-b-c),tensor(mean),tensor(min)`. */
export function formatStat(s: WeightStat): string {
  const shape = s.shape.length === 1 ? `(${s.shape[0]},)` : `(${s.shape.join("-")})`;
  return `${s.key},${shape},${torchScalarRepr(s.meanAbs)},${torchScalarRepr(s.minAbs)}`;
}

/** Result of {@link checkLoraWeights}. */
export interface CheckResult {
  /** `lora_up` / `lora_down` tensors (kohya's "number of LoRA modules"). */
  loraTensors: number;
  stats: WeightStat[];
}

/**
 * Mean and min of |w| for every `lora_up` / `lora_down` tensor of a safetensors file, in key
 * order, then (with `showAllKeys`) for every other tensor.
 */
export async function checkLoraWeights(path: string, showAllKeys = false): Promise<CheckResult> {
  const st = await openSafetensors(path);
  try {
    const keys = st.list().map((t) => t.name).sort(compareUtf8);
    const lora = keys.filter((k) => k.includes("lora_up") || k.includes("lora_down"));
    const listed = showAllKeys ? [...lora, ...keys.filter((k) => !lora.includes(k))] : lora;
    const stats: WeightStat[] = [];
    for (const key of listed) {
      const t = await st.readF32(key);
      let sum = 0, min = Infinity;
      for (const v of t.data) {
        const a = Math.abs(v);
        sum += a;
        if (a < min) min = a;
      }
      stats.push({ key, shape: t.shape, meanAbs: sum / Math.max(t.data.length, 1), minAbs: min });
    }
    return { loraTensors: lora.length, stats };
  } finally {
    st.close();
  }
}
