/**
 * The fuzz targets by name, loaded on demand so a worker imports only its own parser.
 *
 * @module
 */
import type { FuzzTarget } from "./target.ts";

const LOADERS: Record<string, () => Promise<{ target: FuzzTarget }>> = {
  safetensors: () => import("./targets/safetensors.ts"),
  ckpt_zip: () => import("./targets/ckpt_zip.ts"),
  ckpt_legacy: () => import("./targets/ckpt_legacy.ts"),
  pickle: () => import("./targets/pickle.ts"),
  png: () => import("./targets/png.ts"),
  jpeg: () => import("./targets/jpeg.ts"),
  bmp: () => import("./targets/bmp.ts"),
  webp: () => import("./targets/webp.ts"),
  dataset_config: () => import("./targets/dataset_config.ts"),
  train_config: () => import("./targets/train_config.ts"),
  prompt_file: () => import("./targets/prompt_file.ts"),
  infotext: () => import("./targets/infotext.ts"),
  lora_metadata: () => import("./targets/lora_metadata.ts"),
};

/** Every target name, in report order. */
export const TARGET_NAMES: readonly string[] = Object.keys(LOADERS);

/** Targets that only the harness's own test runs. */
const HIDDEN: Record<string, () => Promise<{ target: FuzzTarget }>> = {
  selftest: () => import("./targets/selftest.ts"),
};

/** The target called `name`. */
export async function loadTarget(name: string): Promise<FuzzTarget> {
  const load = LOADERS[name] ?? HIDDEN[name];
  if (load === undefined) {
    throw new Error(`unknown fuzz target '${name}'; expected one of ${TARGET_NAMES.join(", ")}`);
  }
  return (await load()).target;
}
