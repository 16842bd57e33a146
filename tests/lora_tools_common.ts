/**
 * Helpers of the LoRA tool tests: per-module deltas `up @ down * alpha / rank` computed in
 * float64 on the host (the fixtures' comparison for SVD-based outputs), temp folders, and a
 * check that a folder holds no leftover temporary files.
 */
import { openSafetensors } from "../core/io/safetensors.ts";

/** One module of a LoRA file as the comparison needs it. */
export interface ModuleView {
  rank: number;
  alpha: number;
  downShape: number[];
  upShape: number[];
  down: Float32Array;
  up: Float32Array;
}

/** Every module of a LoRA file (prefix -> factors, rank, alpha). */
export async function readModules(path: string): Promise<Map<string, ModuleView>> {
  const st = await openSafetensors(path);
  try {
    const out = new Map<string, ModuleView>();
    for (const t of st.list()) {
      if (!t.name.endsWith(".lora_down.weight")) continue;
      const prefix = t.name.slice(0, -".lora_down.weight".length);
      const down = await st.readF32(t.name);
      const up = await st.readF32(`${prefix}.lora_up.weight`);
      const alpha = st.has(`${prefix}.alpha`)
        ? (await st.readF32(`${prefix}.alpha`)).data[0]
        : down.shape[0];
      out.set(prefix, {
        rank: down.shape[0],
        alpha,
        downShape: down.shape,
        upShape: up.shape,
        down: down.data,
        up: up.data,
      });
    }
    return out;
  } finally {
    st.close();
  }
}

/** `up @ down * alpha / rank` in float64, convs flattened to [out, in*kh*kw]. */
export function delta(m: ModuleView): Float64Array {
  const r = m.rank;
  const out = m.upShape[0];
  const cols = m.down.length / r;
  const d = new Float64Array(out * cols);
  const s = m.alpha / r;
  for (let o = 0; o < out; o++) {
    for (let k = 0; k < r; k++) {
      const u = m.up[o * r + k] * s;
      if (u === 0) continue;
      for (let c = 0; c < cols; c++) d[o * cols + c] += u * m.down[k * cols + c];
    }
  }
  return d;
}

/** A fresh temp folder. */
export function tempDir(): string {
  return Deno.makeTempDirSync({ prefix: "lorakit_lora_tools_" });
}

/** Names in a folder (to assert that no partial or temporary output was left). */
export function listNames(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
}
