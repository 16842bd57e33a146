/**
 * `lorakit check_lora_weights FILE`: kohya's `networks/check_lora_weights.py` — mean and min of
 * |w| per LoRA factor, to spot untrained (all-zero) `lora_up` weights.
 *
 * @module
 */
import { checkLoraWeights, formatStat } from "../core/lora/check.ts";
import { makeParser, type Parser, runTool } from "./lora_cli.ts";

const DESCRIPTION =
  "Print one line per lora_up / lora_down tensor: key,(shape),mean |w|,min |w| (numbers as " +
  "PyTorch prints a scalar tensor, like kohya's tool). A mean of 0 marks an untrained module. " +
  "With -s, the other tensors follow (kohya lists every key a second time; lorakit lists only " +
  "the keys not already shown).";

interface Args {
  file: string;
  show_all_keys: boolean;
}

function buildParser(): Parser {
  const p = makeParser("check_lora_weights", DESCRIPTION);
  p.add_argument("file", { type: "str", help: "LoRA .safetensors file" });
  p.add_argument("-s", "--show_all_keys", { action: "store_true", help: "show all keys" });
  return p;
}

async function run(a: Args): Promise<number> {
  const r = await checkLoraWeights(a.file, a.show_all_keys);
  console.log(`number of LoRA modules: ${r.loraTensors}`);
  if (a.show_all_keys) console.log(`number of all modules: ${r.stats.length}`);
  for (const s of r.stats) console.log(formatStat(s));
  const zero = r.stats.filter((s) => s.meanAbs === 0 && /lora_(up|down)/.test(s.key)).length;
  console.error(`${r.loraTensors} LoRA tensors checked, ${zero} all zero`);
  return 0;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return runTool<Args>(buildParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
