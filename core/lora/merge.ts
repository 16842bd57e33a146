/**
 * Merging several LoRA files into one (kohya's `merge_lora.py` without `--sd_model`). kohya
 * works on the factors, not the products: with `s_i = sqrt(alpha_i / alpha_base) * ratio_i`
 * (alpha_base: the module's alpha in the first file that has the module), the merged factors are
 * `down = Σ s_i·down_i` and `up = Σ |s_i|·up_i`, alpha = alpha_base. The result is not the sum
 * of the deltas (kohya's approximation: a negative ratio flips only `down`). `--concat` stacks the
 * same scaled factors instead (ranks add). Different ranks without `--concat` are an error.
 *
 * The arithmetic is elementwise on factors of a few MB, so it runs on the host, in float32 with
 * torch's rounding (`merged + x * s`, each step rounded), which reproduces kohya bit for bit.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { HostTensor } from "../io/tensor_source.ts";
import { pyFloatRepr } from "./metadata.ts";
import { type LoraFile, type LoraWeightsToSave, openLoraFile, saveLoraFile } from "./lora_file.ts";
import { type Precision, roundToPrecision } from "./svd_ops.ts";
import { minimumNetworkMetadata, toolLoraModelSpec } from "./tool_metadata.ts";
import { refuseSdxlLora } from "./version.ts";
import { type BlockWeights, sdxlBlockWeight } from "./lbw.ts";
import { modelSpecMetadata } from "./metadata.ts";
import { fileStem, mergedFrom } from "./tool_metadata.ts";

/** Options of {@link mergeLoraFiles}. */
export interface MergeLoraFilesOptions {
  models: readonly string[];
  ratios: readonly number[];
  saveTo: string;
  /** Arithmetic precision (kohya's `--precision`); default float. */
  precision?: Precision;
  /** File precision; default = `precision`. */
  savePrecision?: Precision;
  /** Stack ranks instead of adding factors. */
  concat?: boolean;
  /** Permute each module's rank dimension at random (kohya's `--shuffle`). */
  shuffle?: boolean;
  /** Leave out the `modelspec.*` keys (the minimum `ss_*` keys are always written). */
  noMetadata?: boolean;
  /**
   * kohya's `sdxl_merge_lora.py`: SDXL LoRA files only (`merge_lora` refuses them, naming
   * `sdxl_merge_lora`), SDXL `modelspec.*`, and `lbws` allowed.
   */
  sdxl?: boolean;
  /** `--lbws` (SDXL): per file, block weights multiplying both factors' scales, as kohya. */
  lbws?: readonly BlockWeights[] | null;
  /** Called once per input file and module merged. */
  onProgress?: (done: number, total: number, what: string) => void;
}

/** What {@link mergeLoraFiles} wrote. */
export interface MergeLoraFilesResult {
  modules: number;
  /** `ss_network_dim` / `ss_network_alpha` as written (a number or `Dynamic`). */
  dim: string;
  alpha: string;
  metadata: Record<string, string>;
}

/** Checks kohya's `len(models) == len(ratios)` with a message naming both flags. */
export function checkRatios(models: readonly string[], ratios: readonly number[]): void {
  if (models.length === 0) {
    throw new LorakitError("--models: expected at least one LoRA file, found none");
  }
  if (models.length !== ratios.length) {
    throw new LorakitError(
      `--ratios: expected one ratio per --models file (${models.length}), found ${ratios.length}`,
    );
  }
}

/**
 * Open every file first, so a bad one (or one `check` refuses; by default an SDXL one) fails
 * before any work or output; closes all on error.
 */
export async function openAll(
  paths: readonly string[],
  check: (file: LoraFile) => void = (f) => refuseSdxlLora(f, "--models"),
): Promise<LoraFile[]> {
  const files: LoraFile[] = [];
  try {
    for (const p of paths) {
      files.push(await openLoraFile(p));
      check(files[files.length - 1]);
    }
  } catch (e) {
    for (const f of files) f.close();
    throw e;
  }
  return files;
}

/** merge_lora's check of each file: SDXL LoRA files go to sdxl_merge_lora. */
export function refuseSdxlInMergeLora(file: LoraFile): void {
  if (file.version.version !== "sdxl") return;
  throw new LorakitError(
    `--models ${file.path}: an SDXL LoRA (${file.version.evidence.join("; ")}); merge_lora ` +
      `handles SD 1.x/2.x LoRA files; merge SDXL ones with lorakit sdxl_merge_lora`,
  );
}

/** sdxl_merge_lora's check of each file: SDXL LoRA files only. */
export function requireSdxl(file: LoraFile): void {
  if (file.version.version === "sdxl") return;
  const why = file.version.evidence.length > 0 ? ` (${file.version.evidence.join("; ")})` : "";
  throw new LorakitError(
    `--models ${file.path}: expected an SDXL LoRA, found ${file.version.label}${why}; ` +
      `merge SD 1.x/2.x LoRA files with lorakit merge_lora`,
  );
}

/** kohya keeps the first `ss_v2` / `ss_base_model_version` any input file has. */
export function firstMetadata(files: readonly LoraFile[], key: string): string | null {
  for (const f of files) if (f.metadata[key] !== undefined) return f.metadata[key];
  return null;
}

/** `str(x)` of a Python value that is an int when `isInt`, else a float. */
function pyNumber(x: number, isInt: boolean): string {
  return isInt ? String(x) : pyFloatRepr(x);
}

interface Merged {
  down: HostTensor;
  up: HostTensor;
}

/** x * s rounded to f32 (torch's `tensor * python_float` in float32). */
function scaled(x: Float32Array, s: number): Float32Array {
  const out = new Float32Array(x.length);
  const sf = Math.fround(s);
  for (let i = 0; i < x.length; i++) out[i] = Math.fround(x[i] * sf);
  return out;
}

/** Concatenate along dim 0 (`down`) or dim 1 (`up`, [out, r(,1,1)]). */
function concatRank(a: HostTensor, b: HostTensor, dim: 0 | 1): HostTensor {
  if (dim === 0) {
    const data = new Float32Array(a.data.length + b.data.length);
    data.set(a.data);
    data.set(b.data, a.data.length);
    return { shape: [a.shape[0] + b.shape[0], ...a.shape.slice(1)], data };
  }
  const out = a.shape[0], ra = a.shape[1], rb = b.shape[1];
  const data = new Float32Array(out * (ra + rb));
  for (let o = 0; o < out; o++) {
    data.set(a.data.subarray(o * ra, (o + 1) * ra), o * (ra + rb));
    data.set(b.data.subarray(o * rb, (o + 1) * rb), o * (ra + rb) + ra);
  }
  return { shape: [out, ra + rb, ...a.shape.slice(2)], data };
}

function shapeText(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

/** Fisher-Yates permutation of 0..n-1. */
function randomPermutation(n: number): number[] {
  const p = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

function shuffleRank(m: Merged): Merged {
  const r = m.down.shape[0];
  const perm = randomPermutation(r);
  const rowLen = m.down.data.length / r;
  const down = new Float32Array(m.down.data.length);
  perm.forEach((src, i) =>
    down.set(m.down.data.subarray(src * rowLen, (src + 1) * rowLen), i * rowLen)
  );
  const out = m.up.shape[0];
  const up = new Float32Array(m.up.data.length);
  for (let o = 0; o < out; o++) perm.forEach((src, i) => (up[o * r + i] = m.up.data[o * r + src]));
  return { down: { shape: m.down.shape, data: down }, up: { shape: m.up.shape, data: up } };
}

/**
 * Merge LoRA files into one LoRA file (atomically written to `saveTo`). Returns the
 * `ss_network_dim` / `ss_network_alpha` written and the module count.
 */
export async function mergeLoraFiles(opts: MergeLoraFilesOptions): Promise<MergeLoraFilesResult> {
  checkRatios(opts.models, opts.ratios);
  const precision = opts.precision ?? "float";
  const files = await openAll(opts.models, opts.sdxl ? requireSdxl : refuseSdxlInMergeLora);
  try {
    const baseAlpha = new Map<string, { value: number; isInt: boolean }>();
    const baseDim = new Map<string, number>();
    const merged = new Map<string, Merged>();
    const total = files.reduce((n, f) => n + f.modules.length, 0);
    let done = 0;
    for (const [i, file] of files.entries()) {
      const ratio = opts.ratios[i];
      for (const m of file.modules) {
        if (!baseAlpha.has(m.prefix)) {
          baseAlpha.set(m.prefix, { value: m.alpha, isInt: !m.hasAlpha });
          baseDim.set(m.prefix, m.rank);
        }
        const base = baseAlpha.get(m.prefix)!.value;
        const s = Math.sqrt(m.alpha / base) * ratio;
        // kohya multiplies both factors' scales by the block weight (the product by its square).
        const bw = opts.sdxl ? sdxlBlockWeight(opts.lbws?.[i] ?? null, m.prefix) : undefined;
        const w = await file.readModule(m.prefix);
        const down = scaled(
          roundToPrecision(w.down.data, precision),
          bw === undefined ? s : s * bw,
        );
        const up = scaled(
          roundToPrecision(w.up.data, precision),
          bw === undefined ? Math.abs(s) : Math.abs(s) * bw,
        );
        roundToPrecision(down, precision);
        roundToPrecision(up, precision);
        const prev = merged.get(m.prefix);
        if (prev === undefined) {
          merged.set(m.prefix, {
            down: { shape: w.down.shape, data: down },
            up: { shape: w.up.shape, data: up },
          });
        } else if (opts.concat) {
          merged.set(m.prefix, {
            down: concatRank(prev.down, { shape: w.down.shape, data: down }, 0),
            up: concatRank(prev.up, { shape: w.up.shape, data: up }, 1),
          });
        } else {
          if (shapeText(prev.down.shape) !== shapeText(w.down.shape)) {
            throw new LorakitError(
              `${file.path}: key '${m.prefix}.lora_down.weight': expected shape ` +
                `${shapeText(prev.down.shape)} as in the files before it, found ` +
                `${shapeText(w.down.shape)}; LoRAs of different ranks (or for SD 1.x and 2.x) ` +
                `can only be merged with --concat`,
            );
          }
          for (const [acc, add] of [[prev.down.data, down], [prev.up.data, up]]) {
            for (let t = 0; t < acc.length; t++) acc[t] = Math.fround(acc[t] + add[t]);
            roundToPrecision(acc, precision);
          }
        }
        opts.onProgress?.(++done, total, `${file.path}: ${m.prefix}`);
      }
    }
    const out: LoraWeightsToSave[] = [];
    for (const [prefix, m0] of merged) {
      const m = opts.shuffle ? shuffleRank(m0) : m0;
      out.push({ prefix, down: m.down, up: m.up, alpha: baseAlpha.get(prefix)!.value });
    }
    const dims = [...new Set(baseDim.values())];
    const alphas = [...baseAlpha.values()];
    const dim = dims.length === 1 ? String(dims[0]) : "Dynamic";
    const alphaSame = alphas.every((a) => a.value === alphas[0].value);
    const alpha = alphaSame ? pyNumber(alphas[0].value, alphas[0].isInt) : "Dynamic";
    const v2 = firstMetadata(files, "ss_v2");
    const metadata = minimumNetworkMetadata({
      v2,
      baseModel: firstMetadata(files, "ss_base_model_version"),
      dim,
      alpha,
    });
    if (opts.noMetadata) {
      // the minimum ss_* keys only
    } else if (opts.sdxl) {
      // kohya: build_metadata(state_dict, False, False, True (sdxl), True (lora), ...)
      Object.assign(
        metadata,
        modelSpecMetadata({
          v2: false,
          sdxl: true,
          timestamp: Date.now() / 1000,
          title: fileStem(opts.saveTo),
          mergedFrom: mergedFrom(opts.models),
        }),
      );
    } else {
      Object.assign(metadata, toolLoraModelSpec(opts.saveTo, v2 === "True", opts.models));
    }
    const written = await saveLoraFile(opts.saveTo, out, {
      precision: opts.savePrecision ?? precision,
      metadata,
    });
    return { modules: out.length, dim, alpha, metadata: written };
  } finally {
    for (const f of files) f.close();
  }
}
