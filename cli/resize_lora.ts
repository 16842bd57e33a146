/**
 * `lorakit resize_lora`: kohya's `networks/resize_lora.py` — change a LoRA's rank by SVD, to a
 * fixed rank or per module by a singular-value rule.
 *
 * @module
 */
import { pyFloatRepr } from "../core/lora/metadata.ts";
import { type DynamicMethod, type RankChoice, resizeLora } from "../core/lora/resize.ts";
import type { Precision } from "../core/lora/svd_ops.ts";
import {
  addNewRankFlags,
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
  "Re-factor each module of a LoRA at a new rank: SVD of up @ down (3x3 convs flattened), " +
  "up = U*S, down = Vh, alpha scaled so that alpha/rank is kept. --dynamic_method picks each " +
  "module's rank from its singular values as kohya's rules do (sv_ratio: values above " +
  "S[0]/param; sv_fro: Frobenius norm retained >= param; sv_cumulative: sum of S retained >= " +
  "param; the rank is then one more than that count, as kohya computes it), with --new_rank / " +
  "--new_conv_rank as the cap. A fixed rank larger than a module's matrix allows is an error. " +
  "SD 1.x/2.x and SDXL files alike; the input's metadata (ss_base_model_version, modelspec) " +
  "is kept apart from the dim, alpha and comment. " + SIGN_RULE + " " + SAFETENSORS_ONLY;

interface Args {
  save_precision: Precision | null;
  new_rank: number;
  new_conv_rank: number | null;
  save_to: string | null;
  model: string | null;
  device: string | null;
  verbose: boolean;
  dynamic_method: DynamicMethod | null;
  dynamic_param: number | null;
  svd_lowrank_niter: number;
}

function buildParser(): Parser {
  const p = makeParser("resize_lora", DESCRIPTION);
  addPrecisionFlags(p);
  addNewRankFlags(p, "rank of the output; the cap with --dynamic_method (default 4)");
  p.add_argument("--save_to", { type: "str", default: null, help: "output .safetensors file" });
  p.add_argument("--model", { type: "str", default: null, help: "LoRA file to resize" });
  p.add_argument("--device", { type: "str", default: null, help: DEVICE_HELP });
  p.add_argument("--verbose", {
    action: "store_true",
    help: "print per module the sum(S) and Frobenius norm retained and max(S) ratio",
  });
  p.add_argument("--dynamic_method", {
    type: "str",
    default: null,
    choices: ["sv_ratio", "sv_fro", "sv_cumulative"],
    help: "choose each module's rank from its singular values; --new_rank is the cap",
  });
  p.add_argument("--dynamic_param", {
    type: "float",
    default: null,
    help: "target of --dynamic_method",
  });
  p.add_argument("--svd_lowrank_niter", {
    type: "int",
    default: 2,
    help: "accepted for kohya compatibility and ignored: lorakit's GPU SVD iterates until " +
      "converged on every matrix",
  });
  return p;
}

/** Python's `f"{x:.1%}"`. */
function pct(x: number, digits: number): string {
  return `${(x * 100).toFixed(digits)}%`;
}

function verboseLine(prefix: string, c: RankChoice, dynamic: boolean): string {
  let s = `${prefix.padEnd(75)} | sum(S) retained: ${pct(c.sumRetained, 1)}, fro retained: ` +
    `${pct(c.froRetained, 1)}, max(S) ratio: ${c.maxRatio.toFixed(1)}`;
  if (dynamic) s += `, dynamic | dim: ${c.newRank}, alpha: ${pyFloatRepr(c.newAlpha)}`;
  return s;
}

async function run(a: Args): Promise<number> {
  const saveTo = await writableSafetensors("--save_to", a.save_to);
  const model = a.model ?? "";
  const t0 = performance.now();
  const dynamic = a.dynamic_method !== null;
  const r = await resizeLora({
    model,
    saveTo,
    newRank: a.new_rank,
    newConvRank: a.new_conv_rank,
    dynamicMethod: a.dynamic_method,
    dynamicParam: a.dynamic_param,
    savePrecision: a.save_precision ?? undefined,
    onModule: (prefix, choice, done, total) => {
      if (a.verbose) console.log(verboseLine(prefix, choice, dynamic));
      else progress(done, total, prefix);
    },
  });
  if (a.verbose) {
    console.log(
      `Average Frobenius norm retention: ${pct(r.froMean, 2)} | std: ${r.froStd.toFixed(3)}`,
    );
  }
  console.log(
    `resized ${r.modules} modules from rank ${r.oldRank} (${
      rankCounts(r.ranks)
    }); wrote ${saveTo} ` +
      `(${seconds(t0)} s)`,
  );
  return 0;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return runTool<Args>(buildParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
