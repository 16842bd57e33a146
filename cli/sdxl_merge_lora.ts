/**
 * `lorakit sdxl_merge_lora`: kohya's `networks/sdxl_merge_lora.py`. With `--sd_model`, merge
 * SDXL LoRA files into an SDXL checkpoint (written as an SGM single file); without it, merge
 * SDXL LoRA files into one LoRA.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { parseLbws } from "../core/lora/lbw.ts";
import { mergeLoraFiles } from "../core/lora/merge.ts";
import { mergeIntoSdxlCheckpoint } from "../core/lora/merge_model_sdxl.ts";
import type { Precision } from "../core/lora/svd_ops.ts";
import {
  addMergeFileFlags,
  addNoMetadataFlag,
  addPrecisionFlags,
  checkpointMergedLine,
  filesMergedLine,
  makeParser,
  type Parser,
  progress,
  runTool,
  SAFETENSORS_ONLY,
  writableSafetensors,
} from "./lora_cli.ts";

const DESCRIPTION =
  "Merge kohya SDXL LoRA files into an SDXL checkpoint (--sd_model, an SGM .safetensors/.ckpt " +
  "or a diffusers folder: W += ratio * up @ down * alpha / rank on every layer a module names " +
  "in both text encoders and the U-Net, 1x1 and 3x3 convs included; written as the SGM single " +
  "file A1111, ComfyUI and kohya read, with the input file's key set, text_projection in its " +
  "stored layout and logit_scale/position_ids as stored, plus a copy of the model's <stem>.yaml), " +
  "or, without --sd_model, into one SDXL LoRA file the way kohya does: the factors are added, " +
  "down scaled by sqrt(alpha_i / alpha_base) * ratio_i and up by its absolute value (--concat " +
  "stacks them instead, adding the ranks). --lbws gives each file block weights (kohya's " +
  "12/17/20/26-entry lists over BASE = the text encoders, IN00-IN11, MID, OUT00-OUT11, SDXL's " +
  "input_blocks.N being IN(N), output_blocks.N OUT(N)); in a LoRA merge kohya scales both " +
  "factors by it, so the product by its square, and lorakit does the same. Every LoRA module " +
  "must name a layer of the model (kohya skips unknown ones with a log line; lorakit stops). " +
  "kohya's OFT files are not supported. " + SAFETENSORS_ONLY;

interface Args {
  save_precision: Precision | null;
  precision: Precision;
  sd_model: string | null;
  save_to: string | null;
  models: string[] | null;
  ratios: number[] | null;
  lbws: string[] | null;
  no_metadata: boolean;
  concat: boolean;
  shuffle: boolean;
}

function buildParser(): Parser {
  const p = makeParser("sdxl_merge_lora", DESCRIPTION);
  addPrecisionFlags(p, "precision of the merge arithmetic (float is recommended; default float)");
  p.add_argument("--sd_model", {
    type: "str",
    default: null,
    help: "SDXL checkpoint to merge into (.safetensors, .ckpt or a diffusers folder); omit to " +
      "merge the LoRA files into one LoRA",
  });
  addMergeFileFlags(p);
  p.add_argument("--lbws", {
    type: "str",
    nargs: "*",
    help: "block weights per LoRA file, each a JSON list of 12, 17, 20 or 26 numbers, e.g. " +
      '"[1,0,0,1,1,1,1,1,1,1,1,1]"',
  });
  addNoMetadataFlag(p, "of a LoRA ");
  p.add_argument("--concat", {
    action: "store_true",
    help: "stack the LoRAs instead of adding them (the output rank is the sum of the ranks)",
  });
  p.add_argument("--shuffle", {
    action: "store_true",
    help: "permute each module's rank dimension at random (the product is unchanged)",
  });
  return p;
}

async function run(a: Args): Promise<number> {
  const saveTo = await writableSafetensors("--save_to", a.save_to);
  const models = a.models ?? [];
  const ratios = a.ratios ?? [];
  if (models.length === 0) throw new LorakitError("--models: expected LoRA files, found none");
  const lbws = parseLbws(a.lbws, models.length);
  const t0 = performance.now();
  if (a.sd_model !== null) {
    const r = await mergeIntoSdxlCheckpoint({
      sdModel: a.sd_model,
      models,
      ratios,
      lbws: a.lbws,
      saveTo,
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
    sdxl: true,
    lbws,
    onProgress: progress,
  });
  console.log(filesMergedLine("SDXL ", r, models.length, saveTo, t0));
  return 0;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return runTool<Args>(buildParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
