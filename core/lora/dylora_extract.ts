/**
 * kohya's `extract_lora_from_dylora.py`: a DyLoRA file is trained so that every prefix of its
 * rank (in steps of the unit) is a usable LoRA; this writes one plain file per rank
 * `unit, 2·unit, ...` below the file's largest rank, each module keeping the first `rank` rows of
 * `lora_down` and columns of `lora_up` and its alpha unchanged (as kohya does). Files are named
 * `<stem>-<rank:04d><ext>` after `--save_to`.
 *
 * Slicing factors is pure data movement, so it runs on the host. SDXL files split the same way
 * (kohya's script reads no model) and keep their SDXL metadata.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { HostTensor } from "../io/tensor_source.ts";
import { type LoraWeightsToSave, openLoraFile, saveLoraFile } from "./lora_file.ts";

/** Options of {@link extractFromDylora}. */
export interface DyloraExtractOptions {
  model: string;
  /** Base name of the outputs. */
  saveTo: string;
  /** Rank step (kohya's `--unit`). */
  unit: number;
  onFile?: (path: string, rank: number) => void;
}

/** kohya's output name: `<stem>-<rank:04d><ext>` (ext from `saveTo`, possibly empty). */
export function dyloraOutputName(saveTo: string, rank: number): string {
  const slash = saveTo.lastIndexOf("/");
  const dot = saveTo.lastIndexOf(".");
  const split = dot > slash + 1 ? dot : saveTo.length;
  return `${saveTo.slice(0, split)}-${String(rank).padStart(4, "0")}${saveTo.slice(split)}`;
}

/** First `rank` rows of down [r, ...] or columns of up [out, r(,1,1)]. */
function sliceRank(t: HostTensor, rank: number, axis: 0 | 1): HostTensor {
  if (axis === 0) {
    const row = t.data.length / t.shape[0];
    return { shape: [rank, ...t.shape.slice(1)], data: t.data.slice(0, rank * row) };
  }
  const [out, r] = t.shape;
  const data = new Float32Array(out * rank);
  for (let o = 0; o < out; o++) data.set(t.data.subarray(o * r, o * r + rank), o * rank);
  return { shape: [out, rank, ...t.shape.slice(2)], data };
}

/** Write the lower-rank files; returns their paths and ranks. */
export async function extractFromDylora(
  opts: DyloraExtractOptions,
): Promise<{ path: string; rank: number }[]> {
  if (!Number.isInteger(opts.unit) || opts.unit < 1) {
    throw new LorakitError(`--unit: expected a positive integer, found ${opts.unit}`);
  }
  const file = await openLoraFile(opts.model);
  try {
    const maxRank = Math.max(...file.modules.map((m) => m.rank));
    const modules = [];
    for (const m of file.modules) modules.push({ m, w: await file.readModule(m.prefix) });
    const written: { path: string; rank: number }[] = [];
    const comment = file.metadata.ss_training_comment ?? "";
    for (let rank = opts.unit; rank < maxRank; rank += opts.unit) {
      const out: LoraWeightsToSave[] = modules.map(({ m, w }) => {
        // A module of lower rank than asked keeps all of it (Python slices past the end).
        const r = Math.min(rank, m.rank);
        return {
          prefix: m.prefix,
          down: sliceRank(w.down, r, 0),
          up: sliceRank(w.up, r, 1),
          alpha: w.alpha,
        };
      });
      const metadata: Record<string, string> = {};
      for (const [k, v] of Object.entries(file.metadata)) {
        if (!k.startsWith("sshs_")) metadata[k] = v;
      }
      metadata.ss_training_comment = `split from DyLoRA, rank ${maxRank} to ${rank}; ${comment}`;
      metadata.ss_network_dim = String(rank);
      const path = dyloraOutputName(opts.saveTo, rank);
      await saveLoraFile(path, out, { precision: precisionOf(file.modules[0].dtype), metadata });
      written.push({ path, rank });
      opts.onFile?.(path, rank);
    }
    return written;
  } finally {
    file.close();
  }
}

/** kohya's tool keeps the stored dtype (it never casts). */
function precisionOf(dtype: string): "float" | "fp16" | "bf16" {
  return dtype === "F16" ? "fp16" : dtype === "BF16" ? "bf16" : "float";
}
