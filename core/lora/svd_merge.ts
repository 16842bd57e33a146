/**
 * kohya's `svd_merge_lora.py`: per module, the merged delta `Σ ratio_i · up_i @ down_i ·
 * alpha_i / rank_i` (3x3 convs flattened to [out, in·9]), then a rank-k SVD back to factors
 * (`up = U·S`, `down = Vh`, lorakit's sign rule), both clamped to the 0.99 quantile of their
 * signed values, alpha = k. k = `--new_conv_rank` for 3x3 convs, `--new_rank` otherwise, and never
 * more than the layer's in or out channels (kohya's `min(new_rank, in_dim, out_dim)`).
 *
 * SDXL files merge the same way, all inputs SDXL or none (their module names differ). kohya keeps
 * the first input's `ss_v2` and `ss_base_model_version` and writes the SDXL modelspec when that
 * base version starts with `sdxl`; lorakit writes it when the inputs are SDXL files, also when
 * their metadata is missing and only their module names say so.
 *
 * `--lbws` (kohya's layer block weights, one JSON list per file) multiplies a module's scale by
 * its block's weight (see lbw.ts and lbw_index.ts).
 *
 * @module
 */
import { initGpu, type Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { LoraFile, LoraFileModule, LoraWeightsToSave } from "./lora_file.ts";
import { openLoraFile, saveLoraFile } from "./lora_file.ts";
import { type BlockWeights, parseLbws } from "./lbw.ts";
import { checkLbwFamily, lbwFactor } from "./lbw_index.ts";
import { checkRatios, firstMetadata } from "./merge.ts";
import { mapInFlight, MODULES_IN_FLIGHT } from "./pipeline.ts";
import {
  addLoraProduct,
  factorsAsLora,
  lowRankFactors,
  type Precision,
  roundToPrecision,
} from "./svd_ops.ts";
import { minimumNetworkMetadata, toolLoraModelSpec } from "./tool_metadata.ts";

/** kohya's fixed clamp quantile in svd_merge_lora. */
export const SVD_MERGE_CLAMP_QUANTILE = 0.99;

/** Options of {@link svdMergeLoraFiles}. */
export interface SvdMergeOptions {
  models: readonly string[];
  ratios: readonly number[];
  /** kohya's `--lbws`: one JSON list of block weights per file, or none. */
  lbws?: readonly string[] | null;
  saveTo: string;
  /** Rank of Linear / 1x1 modules (kohya default 4). */
  newRank: number;
  /** Rank of 3x3 conv modules; default `newRank`. */
  newConvRank?: number | null;
  precision?: Precision;
  /** Default = `precision`. */
  savePrecision?: Precision;
  noMetadata?: boolean;
  onProgress?: (done: number, total: number, module: string) => void;
}

/** What {@link svdMergeLoraFiles} wrote. */
export interface SvdMergeResult {
  modules: number;
  /** Module count per output rank. */
  ranks: Map<number, number>;
  metadata: Record<string, string>;
}

function checkRank(flag: string, r: number): void {
  if (!Number.isInteger(r) || r < 1) {
    throw new LorakitError(`${flag}: expected a positive integer rank, found ${r}`);
  }
}

/**
 * Opens every input before any work (closing all on an error): SD 1.x/2.x files, or SDXL files
 * only. Returns the files and whether they are SDXL's.
 */
async function openInputs(paths: readonly string[]): Promise<[LoraFile[], boolean]> {
  const files: LoraFile[] = [];
  try {
    for (const p of paths) files.push(await openLoraFile(p));
    const sdxl = files.filter((f) => f.version.version === "sdxl");
    const other = files.find((f) => f.version.version !== "sdxl");
    if (sdxl.length > 0 && other !== undefined) {
      throw new LorakitError(
        `--models ${other.path}: expected an SDXL LoRA like ${sdxl[0].path} ` +
          `(${sdxl[0].version.evidence.join("; ")}), found ${other.version.label}` +
          `${other.version.evidence.length > 0 ? ` (${other.version.evidence.join("; ")})` : ""}` +
          ` (SDXL and SD 1.x/2.x LoRA files cannot be merged)`,
      );
    }
    return [files, sdxl.length > 0];
  } catch (e) {
    for (const f of files) f.close();
    throw e;
  }
}

/** Merge LoRA files through their deltas and an SVD; writes `saveTo` atomically. */
export async function svdMergeLoraFiles(opts: SvdMergeOptions): Promise<SvdMergeResult> {
  checkRatios(opts.models, opts.ratios);
  checkRank("--new_rank", opts.newRank);
  const newConvRank = opts.newConvRank ?? opts.newRank;
  checkRank("--new_conv_rank", newConvRank);
  const precision = opts.precision ?? "float";
  const lbws = parseLbws(opts.lbws, opts.models.length);
  const [files, sdxl] = await openInputs(opts.models);
  try {
    if (lbws !== null) checkLbwFamily(lbws, sdxl);
    // Module -> its occurrences, in first-seen order (kohya's dict order).
    const uses = new Map<
      string,
      { file: LoraFile; m: LoraFileModule; ratio: number; lbw: BlockWeights | null }[]
    >();
    for (const [i, file] of files.entries()) {
      for (const m of file.modules) {
        const list = uses.get(m.prefix) ?? [];
        const first = list[0]?.m;
        if (
          first !== undefined &&
          (first.outFeatures !== m.outFeatures || first.inFeatures !== m.inFeatures ||
            first.kernel.join() !== m.kernel.join())
        ) {
          throw new LorakitError(
            `${file.path}: module '${m.prefix}': expected a layer of [${first.outFeatures}, ` +
              `${first.inFeatures}, ${first.kernel.join("x")}] as in ${list[0].file.path}, ` +
              `found [${m.outFeatures}, ${m.inFeatures}, ${m.kernel.join("x")}] (LoRAs for ` +
              `different SD versions cannot be merged)`,
          );
        }
        list.push({ file, m, ratio: opts.ratios[i], lbw: lbws?.[i] ?? null });
        uses.set(m.prefix, list);
      }
    }
    await initGpu();
    const ranks = new Map<number, number>();
    let done = 0;
    const out = await mapInFlight(
      [...uses],
      MODULES_IN_FLIGHT,
      async ([prefix, list]): Promise<LoraWeightsToSave> => {
        const geo = list[0].m;
        let acc: Tensor | null = null;
        try {
          for (const { file, m, ratio, lbw } of list) {
            const w = await file.readModule(prefix);
            roundToPrecision(w.up.data, precision);
            roundToPrecision(w.down.data, precision);
            let factor = (ratio * m.alpha) / m.rank;
            if (lbw !== null) factor *= lbwFactor(lbw, prefix, sdxl);
            acc = addLoraProduct(acc, w.up, w.down, factor);
          }
          const rank = Math.min(
            geo.kind === "conv3x3" ? newConvRank : opts.newRank,
            geo.inFeatures,
            geo.outFeatures,
          );
          const f = await lowRankFactors(acc!, rank, SVD_MERGE_CLAMP_QUANTILE);
          const shape = geo.kind === "linear"
            ? [geo.outFeatures, geo.inFeatures]
            : [geo.outFeatures, geo.inFeatures, ...geo.kernel];
          ranks.set(f.rank, (ranks.get(f.rank) ?? 0) + 1);
          opts.onProgress?.(++done, uses.size, prefix);
          return { prefix, ...factorsAsLora(f, shape), alpha: f.rank };
        } finally {
          acc?.dispose();
        }
      },
    );
    const v2 = firstMetadata(files, "ss_v2");
    const metadata = minimumNetworkMetadata({
      v2,
      baseModel: firstMetadata(files, "ss_base_model_version"),
      dim: String(opts.newRank),
      alpha: String(opts.newRank),
      networkArgs: { conv_dim: newConvRank, conv_alpha: newConvRank },
    });
    if (!opts.noMetadata) {
      Object.assign(
        metadata,
        toolLoraModelSpec(opts.saveTo, v2 === "True", opts.models, v2 === "True", sdxl),
      );
    }
    const written = await saveLoraFile(opts.saveTo, out, {
      precision: opts.savePrecision ?? precision,
      metadata,
    });
    return { modules: out.length, ranks, metadata: written };
  } finally {
    for (const f of files) f.close();
  }
}
