/**
 * Which Stable Diffusion version a LoRA file or a model's LoRA targets are for (SD 1.x, SD 2.x or
 * SDXL), with the evidence, so a mismatch is reported in words; and the guard of the tools that
 * handle SD 1.x/2.x LoRA files only.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { LoraModuleKind } from "./modules.ts";

/** What a module says about the version: its name and geometry. */
export interface VersionEvidence {
  prefix: string;
  kind: LoraModuleKind;
  inFeatures: number;
}

/** SD versions a LoRA can be made for. */
export type SdVersion = "sd1" | "sd2" | "sdxl";

/** A guess at the SD version of a model or LoRA file, with the evidence. */
export interface VersionGuess {
  version: SdVersion | null;
  /** `SD 1.x`, `SD 2.x`, `SDXL` or `an unknown SD version`. */
  label: string;
  evidence: string[];
}

/** Human name of a version. */
export function versionLabel(v: SdVersion | null): string {
  return v === "sd1"
    ? "SD 1.x"
    : v === "sd2"
    ? "SD 2.x"
    : v === "sdxl"
    ? "SDXL"
    : "an unknown SD version";
}

/**
 * The SD version of a model from its LoRA targets: SDXL's are named `lora_te1_`/`lora_te2_` and
 * by SGM U-Net blocks; SD 2.x uses Linear `proj_in`/`proj_out` and a 23-layer text encoder of
 * width 1024; SD 1.x 1x1-conv projections.
 */
export function describeModelVersion(targets: readonly VersionEvidence[]): VersionGuess {
  const sdxlName = targets.find((t) =>
    /^lora_te[12]_/.test(t.prefix) || /^lora_unet_(input|middle|output)_block/.test(t.prefix)
  );
  if (sdxlName !== undefined) {
    return { version: "sdxl", label: "SDXL", evidence: [`layer names like '${sdxlName.prefix}'`] };
  }
  const projIn = targets.find((t) => t.prefix.endsWith("_proj_in"));
  const q = targets.find((t) => t.prefix.endsWith("_self_attn_q_proj"));
  const evidence: string[] = [];
  if (projIn !== undefined) {
    evidence.push(`proj_in is ${projIn.kind === "linear" ? "Linear" : "a 1x1 conv"}`);
  }
  if (q !== undefined) evidence.push(`text encoder width ${q.inFeatures}`);
  const version = projIn === undefined ? null : projIn.kind === "linear" ? "sd2" : "sd1";
  return { version, label: versionLabel(version), evidence };
}

/**
 * The SD version a LoRA file looks made for: kohya's metadata first (`ss_base_model_version`,
 * then `ss_v2`, which A1111 also reads), else its names (`lora_te1_`/`lora_te2_` or SGM U-Net
 * blocks mean SDXL) and shapes (text-encoder width 1024 or more than 12 layers, or a Linear
 * `proj_in`, mean SD 2.x; width 768 or a 1x1-conv `proj_in` mean SD 1.x).
 */
export function describeLoraVersion(
  metadata: Record<string, string>,
  modules: readonly VersionEvidence[],
): VersionGuess {
  const base = metadata.ss_base_model_version;
  if (base !== undefined && base.startsWith("sdxl_")) {
    return { version: "sdxl", label: "SDXL", evidence: [`ss_base_model_version = ${base}`] };
  }
  const te12 = modules.find((m) => /^lora_te[12]_/.test(m.prefix));
  if (te12 !== undefined) {
    return { version: "sdxl", label: "SDXL", evidence: [`module names like '${te12.prefix}'`] };
  }
  if (base !== undefined && /^sd_v[12]/.test(base)) {
    const v = base.startsWith("sd_v2") ? "sd2" : "sd1";
    return { version: v, label: versionLabel(v), evidence: [`ss_base_model_version = ${base}`] };
  }
  if (metadata.ss_v2 === "True" || metadata.ss_v2 === "False") {
    const v = metadata.ss_v2 === "True" ? "sd2" : "sd1";
    return { version: v, label: versionLabel(v), evidence: [`ss_v2 = ${metadata.ss_v2}`] };
  }
  const evidence: string[] = [];
  let version: "sd1" | "sd2" | "sdxl" | null = null;
  const q = modules.find((m) => m.prefix.endsWith("_self_attn_q_proj"));
  const layers = modules.filter((m) => m.prefix.endsWith("_self_attn_q_proj")).length;
  const projIn = modules.find((m) => m.prefix.endsWith("_proj_in"));
  if (q !== undefined && (q.inFeatures === 1024 || layers > 12)) {
    version = "sd2";
    evidence.push(`text encoder width ${q.inFeatures}, ${layers} layers`);
  } else if (q !== undefined && q.inFeatures === 768) {
    version = "sd1";
    evidence.push("text encoder width 768");
  } else if (projIn !== undefined && /^lora_unet_(input|middle|output)_block/.test(projIn.prefix)) {
    version = "sdxl";
    evidence.push(`SGM U-Net module names ('${projIn.prefix}')`);
  } else if (projIn !== undefined) {
    version = projIn.kind === "linear" ? "sd2" : "sd1";
    evidence.push(`proj_in is ${projIn.kind === "linear" ? "Linear" : "a 1x1 conv"}`);
  }
  return { version, label: versionLabel(version), evidence };
}

/**
 * For a tool that writes SD 1.x/2.x metadata and knows SD 1.x/2.x layers only: an SDXL file is
 * refused with this error (kohya has separate `sdxl_*` scripts for them).
 */
export function refuseSdxlLora(file: { path: string; version: VersionGuess }, flag: string): void {
  if (file.version.version !== "sdxl") return;
  throw new LorakitError(
    `${flag} ${file.path}: an SDXL LoRA (${file.version.evidence.join("; ")}); this tool ` +
      `handles SD 1.x/2.x LoRA files only so far (SDXL networks load in the library)`,
  );
}
