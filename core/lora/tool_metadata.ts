/**
 * The metadata kohya's LoRA tools write (merge_lora, svd_merge_lora, extract_lora_from_models,
 * resize_lora, extract_lora_from_dylora): `model_io.build_minimum_network_metadata` and the
 * `sai_model_spec.build_metadata` call each tool makes. Values are the strings kohya's Python
 * produces (`str(4)`, `str(2.0)`, `"Dynamic"`).
 *
 * @module
 */
import { pyJsonDumps } from "./metadata.ts";
import { modelSpecMetadata } from "./metadata.ts";

/**
 * kohya's `build_minimum_network_metadata`: module, dim and alpha always; `ss_v2` and
 * `ss_base_model_version` only when known (old LoRA files have neither); `ss_network_args` as
 * JSON when given.
 */
export function minimumNetworkMetadata(input: {
  v2: string | null;
  baseModel: string | null;
  networkModule?: string;
  dim: string;
  alpha: string;
  networkArgs?: Record<string, unknown> | null;
}): Record<string, string> {
  const out: Record<string, string> = {
    ss_network_module: input.networkModule ?? "networks.lora",
    ss_network_dim: input.dim,
    ss_network_alpha: input.alpha,
  };
  if (input.v2 !== null) out.ss_v2 = input.v2;
  if (input.baseModel !== null) out.ss_base_model_version = input.baseModel;
  if (input.networkArgs != null) out.ss_network_args = pyJsonDumps(input.networkArgs);
  return out;
}

/** A path's file name without folder and extension (kohya's titles and `merged_from`). */
export function fileStem(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/** kohya's `sai_model_spec.build_merged_from`: the inputs' stems, comma-joined. */
export function mergedFrom(paths: readonly string[]): string {
  return paths.map(fileStem).join(", ");
}

/**
 * `modelspec.*` of a LoRA written by a tool: title = output stem, v-prediction assumed for SD2
 * (kohya's tools cannot tell and say so), optional `merged_from`; `sdxl` gives SDXL's
 * architecture, implementation and resolution.
 */
export function toolLoraModelSpec(
  saveTo: string,
  v2: boolean,
  merged?: readonly string[],
  vParameterization: boolean = v2,
  sdxl = false,
): Record<string, string> {
  return modelSpecMetadata({
    v2,
    vParameterization,
    sdxl,
    timestamp: Date.now() / 1000,
    title: fileStem(saveTo),
    mergedFrom: merged === undefined ? undefined : mergedFrom(merged),
  });
}

/**
 * `modelspec.*` of a merged Stable Diffusion checkpoint (`is_stable_diffusion_ckpt=True`): the
 * architecture has no `/lora` suffix and the implementation is Stability AI's.
 */
export function checkpointModelSpec(
  saveTo: string,
  v2: boolean,
  merged: readonly string[],
): Record<string, string> {
  const out = toolLoraModelSpec(saveTo, v2, merged);
  out["modelspec.architecture"] = out["modelspec.architecture"].replace(/\/lora$/, "");
  out["modelspec.implementation"] = "https://github.com/Stability-AI/generative-models";
  return out;
}
