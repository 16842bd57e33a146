/**
 * Merging LoRA files into a Stable Diffusion checkpoint (kohya's `merge_lora.py --sd_model`):
 * for every module of every file, in order, `W <- W + ratio · (up @ down) · alpha / rank` on the
 * layer the module names (text encoder and U-Net; 3x3 convs through the flattened product, which
 * equals kohya's `conv2d(down.permute(1, 0, 2, 3), up)`). The products and sums run on the GPU;
 * the output is written one tensor at a time with the input's exact key set.
 *
 * Unlike kohya, which logs "no module found" and skips a LoRA key that names no layer, every
 * module must bind to a layer (`bindLoraFile`): an SD 2.x LoRA merged into an SD 1.x model is an
 * error naming the key and both versions, not a silently partial merge.
 *
 * @module
 */
import { initGpu } from "../../gpu/mod.ts";
import {
  type InternalTensors,
  loadCheckpoint,
  type LoadedCheckpoint,
  saveLdmCheckpoint,
  yamlBeside,
  yamlPathFor,
} from "../io/checkpoint.ts";
import { readText, writeFileAtomic } from "../io/fs.ts";
import type { HostTensor } from "../io/tensor_source.ts";
import { bindLoraFile, type LoraFile } from "./lora_file.ts";
import { checkRatios, openAll, refuseSdxlInMergeLora } from "./merge.ts";
import { loraTargets } from "./modules.ts";
import { addLoraProduct, type Precision, roundToPrecision, uploadMatrix } from "./svd_ops.ts";
import { checkpointModelSpec } from "./tool_metadata.ts";

/** Options of {@link mergeIntoCheckpoint}. */
export interface MergeIntoCheckpointOptions {
  sdModel: string;
  models: readonly string[];
  ratios: readonly number[];
  saveTo: string;
  /** `--v2`: the checkpoint is SD 2.x (otherwise inferred from its weights). */
  v2?: boolean;
  /** Arithmetic precision; default float. */
  precision?: Precision;
  /** Output precision of the model tensors; default = `precision`. */
  savePrecision?: Precision;
  /** Leave out the `modelspec.*` metadata. */
  noMetadata?: boolean;
  /** Called once per model weight a LoRA changes. */
  onProgress?: (done: number, total: number, weight: string) => void;
}

/** What {@link mergeIntoCheckpoint} did. */
export interface MergeIntoCheckpointResult {
  /** Model weights changed. */
  weightsChanged: number;
  /** LoRA modules applied, over all files. */
  modulesApplied: number;
  tensorsWritten: number;
  /** The `<output>.yaml` copied from the base's, when the base had one. */
  yamlWritten: string | null;
}

/** One LoRA module to add to a model weight. */
export interface Application {
  file: LoraFile;
  prefix: string;
  ratio: number;
  /** kohya's block weight (`--lbws`) of the module's block, when one applies. */
  blockWeight?: number;
}

/**
 * The checkpoint's tensors with the planned LoRA products added (`plan`: weight name -> modules
 * in kohya's order): text encoders and U-Net rounded to `precision` first, as kohya casts them
 * to the merge dtype (the VAE keeps its own); products and sums on the GPU.
 */
export function mergedTensors(
  ckpt: Pick<LoadedCheckpoint<unknown>, "names" | "info" | "readF32">,
  plan: ReadonlyMap<string, readonly Application[]>,
  precision: Precision,
  onProgress?: (done: number, total: number, weight: string) => void,
): InternalTensors {
  const total = plan.size;
  let done = 0;
  const inMergeDtype = (n: string) =>
    n.startsWith("unet.") || n.startsWith("text_encoder.") || n.startsWith("text_encoder_2.");
  return {
    names: () => ckpt.names(),
    info: (n) => ckpt.info(n),
    readF32: async (name): Promise<HostTensor> => {
      const w = await ckpt.readF32(name);
      if (inMergeDtype(name)) roundToPrecision(w.data, precision);
      const apps = plan.get(name);
      if (apps === undefined) return w;
      let acc = uploadMatrix(w);
      try {
        for (const a of apps) {
          const m = await a.file.readModule(a.prefix);
          const rank = m.down.shape[0];
          roundToPrecision(m.up.data, precision);
          roundToPrecision(m.down.data, precision);
          let scale = (a.ratio * m.alpha) / rank;
          if (a.blockWeight !== undefined) scale *= a.blockWeight;
          acc = addLoraProduct(acc, m.up, m.down, scale);
          if (precision !== "float") {
            const host = roundToPrecision(await acc.toArray(), precision);
            acc.dispose();
            acc = uploadMatrix({ shape: w.shape, data: host });
          }
        }
        const data = await acc.toArray();
        onProgress?.(++done, total, name);
        return { shape: w.shape, data };
      } finally {
        acc.dispose();
      }
    },
  };
}

/** Merge LoRA files into an SD checkpoint and write the result atomically to `saveTo`. */
export async function mergeIntoCheckpoint(
  opts: MergeIntoCheckpointOptions,
): Promise<MergeIntoCheckpointResult> {
  checkRatios(opts.models, opts.ratios);
  const precision = opts.precision ?? "float";
  const ckpt = await loadCheckpoint(opts.sdModel, {
    v2: opts.v2 ? true : undefined,
    headsOptional: true,
  });
  let files: LoraFile[] = [];
  try {
    files = await openAll(opts.models, refuseSdxlInMergeLora);
    const targets = loraTargets(ckpt.names().map((n) => ({ name: n, shape: ckpt.info(n).shape })));
    // Weight name -> the modules to add, in file order then module order (kohya's order).
    const plan = new Map<string, Application[]>();
    let modulesApplied = 0;
    for (const [i, file] of files.entries()) {
      for (const [prefix, target] of bindLoraFile(file, targets)) {
        const list = plan.get(target.weight) ?? [];
        list.push({ file, prefix, ratio: opts.ratios[i] });
        plan.set(target.weight, list);
        modulesApplied++;
      }
    }
    await initGpu();
    const source = mergedTensors(ckpt, plan, precision, opts.onProgress);
    const v2 = ckpt.config.v2;
    const metadata = opts.noMetadata
      ? undefined
      : checkpointModelSpec(opts.saveTo, v2, [opts.sdModel, ...opts.models]);
    const template = ckpt.ldmTemplate() ?? undefined;
    await saveLdmCheckpoint(opts.saveTo, source, ckpt.config, {
      savePrecision: opts.savePrecision ?? precision,
      template,
      metadata,
    });
    // What the weights cannot say (head widths, v-prediction) lives in the base's <stem>.yaml
    // (A1111's convention): the merged checkpoint gets a copy, so every tool reads it the same.
    const yaml = await yamlBeside(opts.sdModel);
    let yamlWritten: string | null = null;
    if (yaml) {
      yamlWritten = yamlPathFor(opts.saveTo);
      await writeFileAtomic(yamlWritten, await readText(yaml));
    }
    return {
      weightsChanged: plan.size,
      modulesApplied,
      tensorsWritten: template?.keys.length ?? ckpt.names().length,
      yamlWritten,
    };
  } finally {
    for (const f of files) f.close();
    ckpt.close();
  }
}
