/**
 * `lorakit merge_lora`: kohya's `networks/merge_lora.py`. With `--sd_model`, merge LoRA files
 * into a Stable Diffusion checkpoint; without it, merge LoRA files into one LoRA.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { isSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { mergeLoraFiles } from "../core/lora/merge.ts";
import { mergeIntoCheckpoint } from "../core/lora/merge_model.ts";
import type { Precision } from "../core/lora/svd_ops.ts";
import {
  addMergeFileFlags,
  addNoMetadataFlag,
  addPrecisionFlags,
  checkpointMergedLine,
  DEVICE_HELP,
  filesMergedLine,
  makeParser,
  type Parser,
  progress,
  runTool,
  SAFETENSORS_ONLY,
  writableSafetensors,
} from "./lora_cli.ts";

const DESCRIPTION =
  "Merge LoRA files into a Stable Diffusion 1.x/2.x checkpoint (--sd_model: W += ratio * " +
  "up @ down * alpha / rank on every layer a module names, text encoder and U-Net; the output " +
  "keeps the checkpoint's key set; SDXL checkpoints and LoRA files go to sdxl_merge_lora, as " +
  "in kohya), or, without --sd_model, into one LoRA file the way kohya does: the factors are " +
  "added, down scaled by sqrt(alpha_i / alpha_base) * ratio_i and up by its absolute value " +
  "(--concat stacks them instead, adding the ranks). Every LoRA module must name a layer of " +
  "the model (kohya skips unknown ones with a log line; lorakit stops, so an SD2 LoRA is never " +
  "half-merged into an SD1 model). " + SAFETENSORS_ONLY;

interface Args {
  v2: boolean;
  save_precision: Precision | null;
  precision: Precision;
  sd_model: string | null;
  save_to: string | null;
  models: string[] | null;
  ratios: number[] | null;
  no_metadata: boolean;
  concat: boolean;
  shuffle: boolean;
  device: string | null;
}

function buildParser(): Parser {
  const p = makeParser("merge_lora", DESCRIPTION);
  p.add_argument("--v2", { action: "store_true", help: "the checkpoint is SD 2.x" });
  addPrecisionFlags(p, "precision of the merge arithmetic (float is recommended; default float)");
  p.add_argument("--sd_model", {
    type: "str",
    default: null,
    help: "checkpoint to merge into (.safetensors, .ckpt or a diffusers folder); omit to merge " +
      "the LoRA files into one LoRA",
  });
  addMergeFileFlags(p);
  addNoMetadataFlag(p, "of a LoRA ");
  p.add_argument("--concat", {
    action: "store_true",
    help: "stack the LoRAs instead of adding them (the output rank is the sum of the ranks)",
  });
  p.add_argument("--shuffle", {
    action: "store_true",
    help: "permute each module's rank dimension at random (the product is unchanged)",
  });
  p.add_argument("--device", { type: "str", default: null, help: DEVICE_HELP });
  return p;
}

async function run(a: Args): Promise<number> {
  const saveTo = await writableSafetensors("--save_to", a.save_to);
  const models = a.models ?? [];
  const ratios = a.ratios ?? [];
  if (models.length === 0) throw new LorakitError("--models: expected LoRA files, found none");
  const t0 = performance.now();
  if (a.sd_model !== null) {
    // kohya's merge_lora.py reads SD 1.x/2.x only; SDXL has its own script and flags (--lbws).
    if (await isSdxlCheckpoint(a.sd_model).catch(() => false)) {
      throw new LorakitError(
        `--sd_model ${a.sd_model}: an SDXL checkpoint; merge_lora merges into SD 1.x/2.x ` +
          `checkpoints (as kohya's merge_lora.py); merge into SDXL with lorakit sdxl_merge_lora`,
      );
    }
    const r = await mergeIntoCheckpoint({
      sdModel: a.sd_model,
      models,
      ratios,
      saveTo,
      v2: a.v2,
      precision: a.precision,
      savePrecision: a.save_precision ?? undefined,
      noMetadata: a.no_metadata,
      onProgress: progress,
    });
    console.log(checkpointMergedLine(r, models.length, saveTo, t0));
    return 0;
  }
  const r = await mergeLoraFiles({
    models,
    ratios,
    saveTo,
    precision: a.precision,
    savePrecision: a.save_precision ?? undefined,
    concat: a.concat,
    shuffle: a.shuffle,
    noMetadata: a.no_metadata,
    onProgress: progress,
  });
  console.log(filesMergedLine("", r, models.length, saveTo, t0));
  return 0;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return runTool<Args>(buildParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
