/**
 * LoRA file tools on full-size SD1.5 shapes: `extract_lora_from_models --dim 32` (text encoder
 * unchanged, 192 U-Net modules), the first row of kohya's timings in
 * `../shared/spec/peer-timings.md` (135 s with PyTorch on 2 CPU cores). kohya is not run here
 * (no PyTorch needed): its time is quoted from that table, so the ratio is only indicative.
 *
 * The original model is a random full-size fp16 checkpoint written by
 * `scripts/make_big_checkpoint.ts` into the temp folder (not the repository); the tuned model is
 * the same file read through a wrapper that adds deterministic noise (amplitude 1e-3) to every
 * U-Net weight. Like kohya's two random checkpoints, the difference then has a flat spectrum:
 * the hardest case for a randomized SVD, which runs to its iteration cap on every module.
 *
 *   deno run -A bench/lora_tools.ts [--modules N]   # N: only the first N U-Net modules
 *
 * @module
 */
import { initGpu } from "../gpu/mod.ts";
import { loadCheckpoint, loadLdmSource } from "../core/io/checkpoint.ts";
import { decodeToF32 } from "../core/io/dtype.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import type { HostTensor, TensorSource } from "../core/io/tensor_source.ts";
import { extractLoraFromModels } from "../core/lora/extract.ts";
import { makeBigCheckpoint, SD1_CONFIG } from "../scripts/make_big_checkpoint.ts";
import type { BenchRow } from "./harness.ts";

const KOHYA_EXTRACT_DIM32_SECONDS = 135;

const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
const ORG = `${tmp}/lorakit_bench_sd15_org.safetensors`;

/** FNV-1a of a key: a per-tensor noise seed. */
function seedOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}

/** `data + 1e-3 * uniform(-1, 1)` with an xorshift32 stream seeded by the key. */
function perturb(t: HostTensor, key: string): HostTensor {
  let x = seedOf(key);
  const out = new Float32Array(t.data.length);
  for (let i = 0; i < out.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = t.data[i] + 1e-3 * (((x >>> 0) / 4294967296) * 2 - 1);
  }
  return { shape: t.shape, data: out };
}

/** The checkpoint with every U-Net weight (2-D or 4-D) perturbed. */
function tunedSource(base: TensorSource): TensorSource {
  const changes = (k: string) =>
    k.startsWith("model.diffusion_model.") && k.endsWith(".weight") &&
    base.info(k).shape.length >= 2;
  return {
    path: `${base.path} (+ noise on the U-Net)`,
    metadata: base.metadata,
    list: () => base.list(),
    has: (k) => base.has(k),
    info: (k) => base.info(k),
    readF32: async (k) => (changes(k) ? perturb(await base.readF32(k), k) : base.readF32(k)),
    readRaw: async (k) => {
      if (!changes(k)) return base.readRaw(k);
      const info = base.info(k);
      const t = perturb(
        { shape: info.shape, data: decodeToF32(info.dtype, await base.readRaw(k)) },
        k,
      );
      return new Uint8Array(t.data.buffer);
    },
    close: () => base.close(),
  };
}

/** Run the extract benchmark; returns one row. */
export async function bench(limit?: number): Promise<BenchRow[]> {
  await initGpu();
  try {
    await Deno.stat(ORG);
  } catch {
    console.error(`writing ${ORG} (full-size SD1.5 shapes, random fp16 weights)`);
    await makeBigCheckpoint(ORG, SD1_CONFIG, "F16");
  }
  const org = await loadCheckpoint(ORG);
  const tuned = loadLdmSource(tunedSource(await openSafetensors(ORG)), "ldm-safetensors", {});
  const out = `${tmp}/lorakit_bench_extracted.safetensors`;
  let modules = 0;
  const t0 = performance.now();
  try {
    const r = await extractLoraFromModels(org, tuned, {
      saveTo: out,
      dim: 32,
      maxModules: limit,
      onProgress: (done, total, name) => {
        const s = ((performance.now() - t0) / 1000).toFixed(1);
        console.error(`[${done}/${total}] ${name} ${s} s`);
      },
    });
    modules = r.modules;
  } finally {
    org.close();
    tuned.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  await Deno.remove(out).catch(() => {});
  const full = limit === undefined;
  return [{
    name: `extract_lora_from_models --dim 32, SD1.5 shapes (${modules} modules)`,
    seconds,
    peerSeconds: full ? KOHYA_EXTRACT_DIM32_SECONDS : undefined,
    peer: full ? "kohya, PyTorch CPU (peer-timings.md, not this run)" : undefined,
    note: full ? undefined : "subset; no peer time for it",
  }];
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--modules");
  const limit = i >= 0 ? Number(Deno.args[i + 1]) : undefined;
  const { table } = await import("./harness.ts");
  console.log(table(await bench(limit)));
}
