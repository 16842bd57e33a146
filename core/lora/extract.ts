/**
 * kohya's `extract_lora_from_models.py`: a LoRA approximating the difference `tuned - org` of two
 * SD 1.x/2.x checkpoints, or of two SDXL ones (kohya's `--sdxl`). The modules are those of a kohya LoRA network on the original model
 * (Transformer2DModel layers and CLIP attention/MLP; with `--conv_dim` also the ResNet and
 * sampler layers, 3x3 convs at rank conv_dim, their Linear/1x1 layers at dim). The text encoder
 * is left out when no text-encoder weight differs by more than `--min_diff`. Per module: rank-k
 * SVD of the difference (3x3 convs flattened to [out, in·9]; k = min(rank, in, out)), `up = U·S`,
 * `down = Vh` in lorakit's sign rule, both clamped to the `--clamp_quantile` quantile of their
 * signed values, alpha = k.
 *
 * On SDXL the modules are kohya's SDXL network's: `lora_te1_*` and `lora_te2_*` (both text
 * encoders, kept or left out together by `--min_diff`, as kohya decides over its one list of
 * text-encoder modules) and `lora_unet_*` under SGM names; the metadata says
 * `ss_base_model_version` sdxl_base_v1-0 and the SDXL modelspec (`ss_v2` False).
 * `--load_precision` rounds both models' weights, and their difference, to that precision, as
 * kohya's subtraction of models loaded in it does.
 *
 * @module
 */
import { initGpu, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { LoadedCheckpoint } from "../io/checkpoint.ts";
import type { UnetKeyLayout } from "../io/keymap_unet.ts";
import type { SDConfig, SDXLConfig } from "../model_config/config.ts";
import { baseModelVersion, pyFloatRepr, pyJsonDumps } from "./metadata.ts";
import { type LoraWeightsToSave, saveLoraFile } from "./lora_file.ts";
import { type LoraTarget, loraTargets } from "./modules.ts";
import { mapInFlight, MODULES_IN_FLIGHT } from "./pipeline.ts";
import {
  factorsAsLora,
  lowRankFactors,
  matrixShape,
  type Precision,
  roundToPrecision,
} from "./svd_ops.ts";
import { toolLoraModelSpec } from "./tool_metadata.ts";

/** Options of {@link extractLoraFromModels}. */
export interface ExtractOptions {
  saveTo: string;
  /** Rank of Linear / 1x1 modules (kohya default 4). */
  dim: number;
  /** Rank of 3x3 convs; null (default) leaves ResNet/sampler layers out, as kohya does. */
  convDim?: number | null;
  /** Default 0.99; null turns kohya's clamp off (an exact low-rank round trip). */
  clampQuantile?: number | null;
  /** Default 0.01. */
  minDiff?: number;
  /** `--v2` as given (recorded in `ss_v2`); default: the original model's version. */
  v2?: boolean;
  /** Default: `v2`. */
  vParameterization?: boolean;
  savePrecision?: Precision;
  /** kohya's `--load_precision`: weights and differences rounded to it; default float. */
  loadPrecision?: Precision;
  noMetadata?: boolean;
  onProgress?: (done: number, total: number, module: string) => void;
  /** Process only the first N modules (after the text-encoder decision); for benchmarks. */
  maxModules?: number;
  /** Informational messages (kohya's log lines: text encoder same/different). */
  onInfo?: (message: string) => void;
}

/** What {@link extractLoraFromModels} wrote. */
export interface ExtractResult {
  modules: number;
  textEncoderIncluded: boolean;
  /** Largest |tuned - org| over the text encoder's target weights. */
  textEncoderMaxDiff: number;
  metadata: Record<string, string>;
}

/** A checkpoint of either family: SD 1.x/2.x or SDXL. */
export type AnyCheckpoint = LoadedCheckpoint<SDConfig> | LoadedCheckpoint<SDXLConfig>;

function weightsOf(ckpt: AnyCheckpoint): { name: string; shape: number[] }[] {
  return ckpt.names().map((n) => ({ name: n, shape: ckpt.info(n).shape }));
}

/** The U-Net key layout kohya's SDXL names need, or null for an SD 1.x/2.x checkpoint. */
export function sdxlLayoutOfCheckpoint(ckpt: AnyCheckpoint): UnetKeyLayout | null {
  if (!("textEncoder2" in ckpt.config)) return null;
  const u = ckpt.config.unet;
  return {
    layersPerBlock: u.layersPerBlock,
    upHasAttention: u.upBlockTypes.map((t) => t === "CrossAttnUpBlock2D"),
  };
}

/** The difference of one weight, computed while both are on the host anyway, and its max |d|. */
async function difference(
  org: AnyCheckpoint,
  tuned: AnyCheckpoint,
  t: LoraTarget,
  load: Precision,
): Promise<{ diff: Float32Array; maxAbs: number }> {
  const a = await org.readF32(t.weight);
  const b = await tuned.readF32(t.weight);
  if (load !== "float") {
    // The stored data may be shared with a cache: round copies.
    a.data = roundToPrecision(a.data.slice(), load);
    b.data = roundToPrecision(b.data.slice(), load);
  }
  // The subtraction is one pass over data the host has just decoded from the file; doing it here
  // avoids a second upload and gives the text encoder's max |diff| without a read-back.
  const diff = new Float32Array(a.data.length);
  let maxAbs = 0;
  for (let i = 0; i < diff.length; i++) {
    const d = Math.fround(b.data[i] - a.data[i]);
    diff[i] = d;
    const ad = Math.abs(d);
    if (ad > maxAbs) maxAbs = ad;
  }
  if (load !== "float") {
    roundToPrecision(diff, load);
    maxAbs = roundToPrecision(Float32Array.of(maxAbs), load)[0];
  }
  return { diff, maxAbs };
}

/**
 * Extract a LoRA from two loaded checkpoints (same SD version and layout: both SD 1.x/2.x or both
 * SDXL) and write it atomically to `saveTo`.
 */
export async function extractLoraFromModels(
  org: AnyCheckpoint,
  tuned: AnyCheckpoint,
  opts: ExtractOptions,
): Promise<ExtractResult> {
  const dim = opts.dim;
  const convDim = opts.convDim ?? null;
  for (const [flag, v] of [["--dim", dim], ["--conv_dim", convDim]] as const) {
    if (v !== null && (!Number.isInteger(v) || v < 1)) {
      throw new LorakitError(`${flag}: expected a positive integer rank, found ${v}`);
    }
  }
  const q = opts.clampQuantile === undefined ? 0.99 : opts.clampQuantile;
  if (q !== null && !(q >= 0 && q <= 1)) {
    throw new LorakitError(`--clamp_quantile: expected a value in [0, 1], found ${q}`);
  }
  const minDiff = opts.minDiff ?? 0.01;
  const load = opts.loadPrecision ?? "float";
  const layout = sdxlLayoutOfCheckpoint(org);
  const tunedLayout = sdxlLayoutOfCheckpoint(tuned);
  if ((layout === null) !== (tunedLayout === null)) {
    throw new LorakitError(
      `${tuned.path}: expected ${layout === null ? "an SD 1.x/2.x" : "an SDXL"} model like ` +
        `${org.path}, found ${tunedLayout === null ? "an SD 1.x/2.x" : "an SDXL"} one`,
    );
  }
  const all = loraTargets(weightsOf(org), layout);
  const tunedTargets = new Map(
    loraTargets(weightsOf(tuned), tunedLayout).map((t) => [t.prefix, t]),
  );
  const targets = all.filter((t) => convDim !== null || !t.convBlock);
  for (const t of targets) {
    const other = tunedTargets.get(t.prefix);
    if (
      other === undefined || other.weight !== t.weight || tuned.info(t.weight).shape.join() !==
        org.info(t.weight).shape.join()
    ) {
      throw new LorakitError(
        `${tuned.path}: layer '${t.weight}' (LoRA module '${t.prefix}'): expected shape ` +
          `[${org.info(t.weight).shape.join(", ")}] as in ${org.path}, found ` +
          `${
            other === undefined ? "no such layer" : `[${tuned.info(t.weight).shape.join(", ")}]`
          }` +
          ` (the models are different SD versions)`,
      );
    }
  }
  await initGpu();
  // Text encoder first: kohya drops all of it when no weight differs by more than min_diff.
  const te = targets.filter((t) => t.part === "text_encoder");
  const unet = targets.filter((t) => t.part === "unet");
  const teDiffs: { t: LoraTarget; diff: Float32Array }[] = [];
  let teMax = 0;
  for (const t of te) {
    const { diff, maxAbs } = await difference(org, tuned, t, load);
    teMax = Math.max(teMax, maxAbs);
    teDiffs.push({ t, diff });
  }
  const teIncluded = teMax > minDiff;
  opts.onInfo?.(
    teIncluded
      ? `Text encoder is different. ${teMax} > ${minDiff}`
      : "Text encoder is same. Extract U-Net only.",
  );
  const work: LoraTarget[] = [...(teIncluded ? te : []), ...unet].slice(0, opts.maxModules);
  const teByPrefix = new Map(teDiffs.map((d) => [d.t.prefix, d.diff]));
  teDiffs.length = 0;
  let done = 0;
  const out = await mapInFlight(work, MODULES_IN_FLIGHT, async (t): Promise<LoraWeightsToSave> => {
    let diff = teByPrefix.get(t.prefix);
    teByPrefix.delete(t.prefix);
    diff ??= (await difference(org, tuned, t, load)).diff;
    const shape = org.info(t.weight).shape;
    const rank = Math.min(t.kind === "conv3x3" ? convDim! : dim, t.inFeatures, t.outFeatures);
    const w = Tensor.fromArray(diff, matrixShape(shape));
    try {
      const f = await lowRankFactors(w, rank, q);
      opts.onProgress?.(++done, work.length, t.prefix);
      return { prefix: t.prefix, ...factorsAsLora(f, shape), alpha: f.rank };
    } finally {
      w.dispose();
    }
  });
  const sdxl = layout !== null;
  const v2 = opts.v2 ?? ("v2" in org.config && org.config.v2);
  const vParam = opts.vParameterization ?? v2;
  const netArgs: Record<string, string> = {};
  if (convDim !== null) {
    netArgs.conv_dim = String(convDim);
    netArgs.conv_alpha = pyFloatRepr(convDim);
  }
  const metadata: Record<string, string> = {
    ss_v2: v2 ? "True" : "False",
    ss_base_model_version: baseModelVersion(v2, vParam, sdxl),
    ss_network_module: "networks.lora",
    ss_network_dim: String(dim),
    ss_network_alpha: pyFloatRepr(dim),
    ss_network_args: pyJsonDumps(netArgs),
  };
  if (!opts.noMetadata) {
    Object.assign(metadata, toolLoraModelSpec(opts.saveTo, v2, undefined, vParam, sdxl));
  }
  const written = await saveLoraFile(opts.saveTo, out, {
    precision: opts.savePrecision ?? "float",
    metadata,
  });
  return {
    modules: out.length,
    textEncoderIncluded: teIncluded,
    textEncoderMaxDiff: teMax,
    metadata: written,
  };
}
