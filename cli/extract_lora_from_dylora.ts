/**
 * `lorakit extract_lora_from_dylora`: kohya's `networks/extract_lora_from_dylora.py` — write the
 * lower-rank LoRAs a DyLoRA file contains, one file per rank step.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { checkWritableFile } from "../core/io/fs.ts";
import { dyloraOutputName, extractFromDylora } from "../core/lora/dylora_extract.ts";
import { openLoraFile } from "../core/lora/lora_file.ts";
import {
  makeParser,
  type Parser,
  requireSafetensors,
  runTool,
  SAFETENSORS_ONLY,
  seconds,
} from "./lora_cli.ts";

const DESCRIPTION =
  "Split a DyLoRA file into plain LoRA files of rank unit, 2*unit, ... below its rank, keeping " +
  "the first rows of lora_down, the first columns of lora_up and the alphas, named " +
  "<save_to stem>-<rank:04d>.safetensors as kohya names them. Without --unit, the unit recorded " +
  "in the file's ss_network_args is used (kohya requires the flag). SD 1.x/2.x and SDXL files " +
  "alike, keeping their metadata. " + SAFETENSORS_ONLY;

interface Args {
  unit: number | null;
  save_to: string | null;
  model: string | null;
}

function buildParser(): Parser {
  const p = makeParser("extract_lora_from_dylora", DESCRIPTION);
  p.add_argument("--unit", { type: "int", default: null, help: "rank step of the outputs" });
  p.add_argument("--save_to", {
    type: "str",
    default: null,
    help: "base name of the outputs (.safetensors)",
  });
  p.add_argument("--model", { type: "str", default: null, help: "DyLoRA file" });
  return p;
}

async function run(a: Args): Promise<number> {
  const saveTo = requireSafetensors("--save_to", a.save_to);
  if (a.model === null) throw new LorakitError("--model: expected a DyLoRA file, found none");
  let unit = a.unit;
  if (unit === null) {
    const f = await openLoraFile(a.model);
    unit = f.dyloraUnit;
    f.close();
    if (unit === null) {
      throw new LorakitError(
        `--unit: expected a rank step; ${a.model} records none (it is not a DyLoRA file)`,
      );
    }
  }
  // Every output goes in the folder of --save_to; the first one's name stands for them all.
  await checkWritableFile(dyloraOutputName(saveTo, unit), "--save_to");
  const t0 = performance.now();
  const files = await extractFromDylora({
    model: a.model,
    saveTo,
    unit,
    onFile: (path, rank) => console.error(`wrote rank ${rank}: ${path}`),
  });
  console.log(
    files.length === 0
      ? `no rank below the file's own in steps of ${unit}: nothing written`
      : `wrote ${files.length} file(s), ranks ${files.map((f) => f.rank).join(", ")} ` +
        `(${seconds(t0)} s)`,
  );
  return 0;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return runTool<Args>(buildParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
