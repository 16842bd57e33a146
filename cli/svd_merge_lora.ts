/**
 * `lorakit svd_merge_lora`: kohya's `networks/svd_merge_lora.py` — merge LoRA files through their
 * weight deltas and re-factor each module at a new rank by SVD.
 *
 * @module
 */
import { svdMergeLoraFiles } from "../core/lora/svd_merge.ts";
import type { Precision } from "../core/lora/svd_ops.ts";
import {
  addMergeFileFlags,
  addNewRankFlags,
  addNoMetadataFlag,
  addPrecisionFlags,
  DEVICE_HELP,
  makeParser,
  type Parser,
  progress,
  rankCounts,
  runTool,
  SAFETENSORS_ONLY,
  seconds,
  SIGN_RULE,
  writableSafetensors,
} from "./lora_cli.ts";

const DESCRIPTION =
  "Merge LoRA files into one of a new rank: per module, the sum of ratio * up @ down * alpha / " +
  "rank over the files, then a rank-k SVD (3x3 convs flattened to [out, in*9]); up = U*S, " +
  "down = Vh, both clamped to the 0.99 quantile of their signed values; alpha = k. SD 1.x/2.x " +
  "files or SDXL files (all of one kind); SDXL inputs give SDXL metadata (the first input's " +
  "ss_base_model_version, the SDXL modelspec). " + SIGN_RULE +
  " The SVD is a randomized top-k one on the GPU (exact for small matrices). " + SAFETENSORS_ONLY;

interface Args {
  save_precision: Precision | null;
  precision: Precision;
  save_to: string | null;
  models: string[] | null;
  ratios: number[] | null;
  lbws: string[] | null;
  new_rank: number;
  new_conv_rank: number | null;
  device: string | null;
  no_metadata: boolean;
}

function buildParser(): Parser {
  const p = makeParser("svd_merge_lora", DESCRIPTION);
  addPrecisionFlags(
    p,
    "precision of the merge arithmetic (default float; the SVD is always float32)",
  );
  addMergeFileFlags(p);
  addNewRankFlags(p, "rank of the output (default 4)");
  p.add_argument("--lbws", {
    type: "str",
    nargs: "*",
    help: "kohya's layer block weights: one JSON list per --models file, of 12 or 20 weights for " +
      "SDXL files, 17 or 26 for SD 1.x/2.x (BASE = the text encoders, IN.., MID, OUT..); a " +
      "module's scale is multiplied by its block's weight. A list of the other family's length " +
      "is an error (kohya would weight the text encoders only)",
  });
  p.add_argument("--device", { type: "str", default: null, help: DEVICE_HELP });
  addNoMetadataFlag(p);
  return p;
}

async function run(a: Args): Promise<number> {
  const saveTo = await writableSafetensors("--save_to", a.save_to);
  const t0 = performance.now();
  const r = await svdMergeLoraFiles({
    models: a.models ?? [],
    ratios: a.ratios ?? [],
    lbws: a.lbws,
    saveTo,
    newRank: a.new_rank,
    newConvRank: a.new_conv_rank,
    precision: a.precision,
    savePrecision: a.save_precision ?? undefined,
    noMetadata: a.no_metadata,
    onProgress: progress,
  });
  console.log(
    `svd-merged ${(a.models ?? []).length} file(s) into ${r.modules} modules (${
      rankCounts(r.ranks)
    }); wrote ${saveTo} (${seconds(t0)} s)`,
  );
  return 0;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return runTool<Args>(buildParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
