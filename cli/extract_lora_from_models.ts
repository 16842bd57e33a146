/**
 * `lorakit extract_lora_from_models`: kohya's `networks/extract_lora_from_models.py` — a LoRA
 * approximating the difference between a fine-tuned checkpoint and its original.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { loadCheckpoint } from "../core/io/checkpoint.ts";
import { isSdxlCheckpoint, loadSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { type AnyCheckpoint, extractLoraFromModels } from "../core/lora/extract.ts";
import type { Precision } from "../core/lora/svd_ops.ts";
import {
  addNoMetadataFlag,
  addPrecisionFlags,
  DEVICE_HELP,
  makeParser,
  type Parser,
  PRECISIONS,
  progress,
  runTool,
  SAFETENSORS_ONLY,
  seconds,
  SIGN_RULE,
  writableSafetensors,
} from "./lora_cli.ts";

const DESCRIPTION =
  "Extract a LoRA from the difference tuned - original of two SD 1.x/2.x checkpoints, or two " +
  "SDXL ones with --sdxl (kohya's SDXL names: lora_te1_, lora_te2_ and SGM lora_unet_ modules; " +
  "ss_base_model_version sdxl_base_v1-0 and the SDXL modelspec): per LoRA " +
  "module (U-Net transformers and CLIP attention/MLP; with --conv_dim also ResNets and " +
  "samplers), a rank --dim (--conv_dim for 3x3 convs) SVD of the difference, up = U*S, " +
  "down = Vh, both clamped to the --clamp_quantile quantile of their signed values; alpha = " +
  "rank. The text encoder is left out when no weight of it differs by more than --min_diff. " +
  SIGN_RULE + " The SVD is a randomized top-k one on the GPU (exact for small matrices). " +
  SAFETENSORS_ONLY;

interface Args {
  v2: boolean;
  sdxl: boolean;
  load_precision: Precision | null;
  load_original_model_to: string | null;
  load_tuned_model_to: string | null;
  v_parameterization: boolean | null;
  save_precision: Precision | null;
  model_org: string;
  model_tuned: string;
  save_to: string;
  dim: number;
  conv_dim: number | null;
  device: string | null;
  clamp_quantile: number;
  min_diff: number;
  no_metadata: boolean;
}

function buildParser(): Parser {
  const p = makeParser("extract_lora_from_models", DESCRIPTION);
  p.add_argument("--v2", { action: "store_true", help: "the models are SD 2.x" });
  p.add_argument("--v_parameterization", {
    action: "store_true",
    default: null,
    help: "record the LoRA as made for v-prediction (default: same as --v2)",
  });
  p.add_argument("--sdxl", {
    action: "store_true",
    help: "the models are SDXL (SGM single files or diffusers folders with text_encoder_2/)",
  });
  addPrecisionFlags(p);
  p.add_argument("--load_precision", {
    type: "str",
    default: null,
    choices: PRECISIONS,
    help: "round the models' weights, and their difference, to this precision as kohya's " +
      "models loaded in it (default: as stored, computed in float32)",
  });
  p.add_argument("--model_org", {
    type: "str",
    required: true,
    help: "original checkpoint (.safetensors, .ckpt or a diffusers folder)",
  });
  p.add_argument("--model_tuned", {
    type: "str",
    required: true,
    help: "fine-tuned checkpoint; the LoRA is the difference original -> tuned",
  });
  p.add_argument("--save_to", { type: "str", required: true, help: "output .safetensors file" });
  p.add_argument("--dim", { type: "int", default: 4, help: "rank of the LoRA (default 4)" });
  p.add_argument("--conv_dim", {
    type: "int",
    default: null,
    help: "rank of 3x3 convs (default: none, ResNet/sampler layers left out)",
  });
  p.add_argument("--device", { type: "str", default: null, help: DEVICE_HELP });
  for (const which of ["original", "tuned"]) {
    p.add_argument(`--load_${which}_model_to`, {
      type: "str",
      default: null,
      help: `where kohya loads the ${which} SDXL model (cpu, cuda); ${DEVICE_HELP}`,
    });
  }
  p.add_argument("--clamp_quantile", {
    type: "float",
    default: 0.99,
    help: "clamp the factors to this quantile of their values (default 0.99)",
  });
  p.add_argument("--min_diff", {
    type: "float",
    default: 0.01,
    help: "the text encoder counts as changed when a weight differs by more (default 0.01)",
  });
  addNoMetadataFlag(p);
  return p;
}

/** Opens one model as the family the flags say, naming the flag when the file is the other. */
async function openModel(flag: string, path: string, a: Args): Promise<AnyCheckpoint> {
  // An unreadable path is left to the loader, whose error names it.
  const sdxl = await isSdxlCheckpoint(path).catch(() => null);
  if (a.sdxl && sdxl === false) {
    throw new LorakitError(
      `${flag} ${path}: expected an SDXL model with --sdxl, found none (an SD 1.x/2.x model? ` +
        `leave --sdxl out)`,
    );
  }
  if (!a.sdxl && sdxl === true) {
    throw new LorakitError(
      `${flag} ${path}: an SDXL model; pass --sdxl to extract from SDXL models (as kohya's script)`,
    );
  }
  // Extraction reads weights by name only: it never needs the models' head counts.
  return a.sdxl
    ? await loadSdxlCheckpoint(path, { headsOptional: true })
    : await loadCheckpoint(path, { v2: a.v2 ? true : undefined, headsOptional: true });
}

async function run(a: Args): Promise<number> {
  if (a.v2 && a.sdxl) {
    throw new LorakitError("--v2 and --sdxl: expected at most one, found both (as kohya)");
  }
  const saveTo = await writableSafetensors("--save_to", a.save_to);
  const t0 = performance.now();
  const org = await openModel("--model_org", a.model_org, a);
  try {
    const tuned = await openModel("--model_tuned", a.model_tuned, a);
    try {
      const v2 = (m: AnyCheckpoint) => "v2" in m.config && m.config.v2;
      if (v2(org) !== v2(tuned)) {
        throw new LorakitError(
          `--model_tuned: expected an SD ${v2(org) ? "2" : "1"}.x model like ` +
            `${a.model_org}, found SD ${v2(tuned) ? "2" : "1"}.x (${a.model_tuned})`,
        );
      }
      const r = await extractLoraFromModels(org, tuned, {
        saveTo,
        dim: a.dim,
        convDim: a.conv_dim,
        clampQuantile: a.clamp_quantile,
        minDiff: a.min_diff,
        v2: a.v2 || v2(org),
        vParameterization: a.v_parameterization ?? undefined,
        savePrecision: a.save_precision ?? undefined,
        loadPrecision: a.load_precision ?? undefined,
        noMetadata: a.no_metadata,
        onProgress: progress,
        onInfo: (m) => console.error(m),
      });
      console.log(
        `extracted ${r.modules} modules (dim ${a.dim}${
          a.conv_dim === null ? "" : `, conv_dim ${a.conv_dim}`
        }; text encoder${a.sdxl ? "s" : ""} ${
          r.textEncoderIncluded ? "included" : "unchanged, left out"
        }); wrote ${saveTo} (${seconds(t0)} s)`,
      );
    } finally {
      tuned.close();
    }
  } finally {
    org.close();
  }
  return 0;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  return runTool<Args>(buildParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
