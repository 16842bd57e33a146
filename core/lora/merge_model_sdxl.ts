/**
 * Merging kohya SDXL LoRA files into an SDXL checkpoint (kohya's `sdxl_merge_lora.py
 * --sd_model`): for every module of every file, in order, `W <- W + ratio · (up @ down) ·
 * alpha / rank` (times the module's `--lbws` block weight, when its block is set) on the layer
 * the module names in TE1 (`lora_te1_*`), TE2 (`lora_te2_*`) or the U-Net (`lora_unet_*` in SGM
 * names; diffusers-style U-Net names are accepted too), 1x1 and 3x3 convs included; the result
 * is written as an SGM single file with the input's key set (`saveSdxlCheckpoint`).
 *
 * As in `merge_model.ts`, every module must bind to a layer (kohya logs and skips unknown ones),
 * so an SD 1.x/2.x LoRA is an error naming the key and both versions, never a partial merge.
 *
 * @module
 */
import { initGpu } from "../../gpu/mod.ts";
import { yamlBeside, yamlPathFor } from "../io/checkpoint.ts";
import { loadSdxlCheckpoint } from "../io/checkpoint_sdxl.ts";
import { saveSdxlCheckpoint } from "../io/checkpoint_sdxl_save.ts";
import { readText, writeFileAtomic } from "../io/fs.ts";
import { parseLbws, sdxlBlockWeight } from "./lbw.ts";
import { bindLoraFile, type LoraFile } from "./lora_file.ts";
import { checkRatios, openAll, requireSdxl } from "./merge.ts";
import { type Application, mergedTensors } from "./merge_model.ts";
import { modelSpecMetadata } from "./metadata.ts";
import { fileTargets } from "./network_model.ts";
import type { Precision } from "./svd_ops.ts";
import { fileStem, mergedFrom } from "./tool_metadata.ts";

/** Options of {@link mergeIntoSdxlCheckpoint}. */
export interface MergeIntoSdxlCheckpointOptions {
  sdModel: string;
  models: readonly string[];
  ratios: readonly number[];
  /** kohya's `--lbws`: one JSON list of block weights per file (see `lbw.ts`). */
  lbws?: readonly string[] | null;
  saveTo: string;
  /** Arithmetic precision; default float. */
  precision?: Precision;
  /** Output precision of the model tensors; default = `precision`. */
  savePrecision?: Precision;
  /** Leave out the `modelspec.*` metadata. */
  noMetadata?: boolean;
  /** Called once per model weight a LoRA changes. */
  onProgress?: (done: number, total: number, weight: string) => void;
}

/** What {@link mergeIntoSdxlCheckpoint} did. */
export interface MergeIntoSdxlCheckpointResult {
  weightsChanged: number;
  modulesApplied: number;
  tensorsWritten: number;
  /** The `<output>.yaml` copied from the base's, when the base had one. */
  yamlWritten: string | null;
}

/** `modelspec.*` of a merged SDXL checkpoint (kohya's `build_metadata(None, ..., sdxl=True)`). */
export function sdxlCheckpointModelSpec(
  saveTo: string,
  merged: readonly string[],
): Record<string, string> {
  const out = modelSpecMetadata({
    v2: false,
    sdxl: true,
    timestamp: Date.now() / 1000,
    title: fileStem(saveTo),
    mergedFrom: mergedFrom(merged),
  });
  out["modelspec.architecture"] = out["modelspec.architecture"].replace(/\/lora$/, "");
  return out;
}

/** Merge SDXL LoRA files into an SDXL checkpoint and write it atomically to `saveTo`. */
export async function mergeIntoSdxlCheckpoint(
  opts: MergeIntoSdxlCheckpointOptions,
): Promise<MergeIntoSdxlCheckpointResult> {
  checkRatios(opts.models, opts.ratios);
  const lbws = parseLbws(opts.lbws, opts.models.length);
  const precision = opts.precision ?? "float";
  const ckpt = await loadSdxlCheckpoint(opts.sdModel, { headsOptional: true });
  let files: LoraFile[] = [];
  try {
    files = await openAll(opts.models, requireSdxl);
    const c = ckpt.config.unet;
    const layout = {
      layersPerBlock: c.layersPerBlock,
      upHasAttention: c.upBlockTypes.map((t) => t === "CrossAttnUpBlock2D"),
    };
    const weights = ckpt.names().map((n) => ({ name: n, shape: ckpt.info(n).shape }));
    const { targets } = fileTargets(weights, layout);
    const plan = new Map<string, Application[]>();
    let modulesApplied = 0;
    for (const [i, file] of files.entries()) {
      for (const [prefix, target] of bindLoraFile(file, targets)) {
        const list = plan.get(target.weight) ?? [];
        const blockWeight = sdxlBlockWeight(lbws?.[i] ?? null, prefix);
        list.push({ file, prefix, ratio: opts.ratios[i], blockWeight });
        plan.set(target.weight, list);
        modulesApplied++;
      }
    }
    await initGpu();
    const source = mergedTensors(ckpt, plan, precision, opts.onProgress);
    const metadata = opts.noMetadata
      ? undefined
      : sdxlCheckpointModelSpec(opts.saveTo, [opts.sdModel, ...opts.models]);
    const template = ckpt.ldmTemplate() ?? undefined;
    await saveSdxlCheckpoint(opts.saveTo, source, ckpt.config, {
      savePrecision: opts.savePrecision ?? precision,
      template,
      metadata,
    });
    // The SGM yaml says what the weights cannot (head widths): the output gets a copy.
    const yaml = ckpt.format === "diffusers" ? undefined : await yamlBeside(opts.sdModel);
    let yamlWritten: string | null = null;
    if (yaml) {
      yamlWritten = yamlPathFor(opts.saveTo);
      await writeFileAtomic(yamlWritten, await readText(yaml));
    }
    return {
      weightsChanged: plan.size,
      modulesApplied,
      tensorsWritten: template?.keys.length ?? ckpt.names().length + 1,
      yamlWritten,
    };
  } finally {
    for (const f of files) f.close();
    ckpt.close();
  }
}
