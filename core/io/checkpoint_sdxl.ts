/**
 * SDXL checkpoints in the internal naming (`unet.`, `vae.`, `text_encoder.`, `text_encoder_2.`),
 * from an SGM single file (`.safetensors`, or `.ckpt` read without executing pickle code; see
 * `keymap_sdxl.ts`) or a diffusers folder with `text_encoder_2/`. The architecture is inferred
 * from the weights with an SGM `<checkpoint stem>.yaml` or the folder's `config.json` files as
 * hints (`core/model_config/infer_sdxl.ts`). Tensors are read lazily, as for SD 1.x/2.x.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { SDXLConfig } from "../model_config/config.ts";
import { inferSdxlConfig, type SdxlConfigHints } from "../model_config/infer_sdxl.ts";
import { parseSgmYaml } from "../model_config/hints_sgm.ts";
import { expectedTensorsSdxl } from "../model_config/keys.ts";
import {
  type CheckpointFormat,
  type LoadedCheckpoint,
  makeCheckpoint,
  validateEntries,
  yamlBeside,
} from "./checkpoint.ts";
import { openCkpt } from "./ckpt.ts";
import { hasTextEncoder2, isDiffusersFolder, openDiffusersFolder } from "./diffusers_folder.ts";
import { exists, readText } from "./fs.ts";
import { isSdxlKeySet, mapSdxlKeys } from "./keymap_sdxl.ts";
import type { LdmTemplate } from "./keymap_ldm.ts";
import { openSafetensors } from "./safetensors.ts";
import type { TensorSource } from "./tensor_source.ts";

/** Options of {@link loadSdxlCheckpoint}; explicit values win over the yaml and config files. */
export interface LoadSdxlCheckpointOptions {
  vPrediction?: boolean;
  /** SGM yaml; default `<checkpoint stem>.yaml` beside a single file, when present. */
  yamlPath?: string;
  /** The caller never runs the model (see `ConfigHints.headsOptional`). */
  headsOptional?: boolean;
}

/** An SDXL checkpoint opened in the internal naming. */
export type LoadedSdxlCheckpoint = LoadedCheckpoint<SDXLConfig>;

const MODEL = "SDXL";

function isSingleFile(path: string): { safetensors: boolean } | null {
  const lower = path.toLowerCase();
  if (lower.endsWith(".safetensors")) return { safetensors: true };
  if (/\.(ckpt|pt|pth|bin)$/.test(lower)) return { safetensors: false };
  return null;
}

/**
 * True when `path` holds an SDXL model: a diffusers folder with `text_encoder_2/`, or a single
 * file with SDXL keys (`conditioner.embedders.1.*` or the U-Net's `label_emb`). Only names are
 * read.
 */
export async function isSdxlCheckpoint(path: string): Promise<boolean> {
  if (await isDiffusersFolder(path)) return await hasTextEncoder2(path);
  const kind = isSingleFile(path);
  if (kind === null) return false;
  const source = kind.safetensors ? await openSafetensors(path) : await openCkpt(path);
  try {
    return isSdxlKeySet(source.list().map((t) => t.name));
  } finally {
    source.close();
  }
}

function checkSdxlKeys(source: TensorSource): void {
  if (!isSdxlKeySet(source.list().map((t) => t.name))) {
    throw new LorakitError(
      `${source.path}: expected an SDXL checkpoint ('conditioner.embedders.1.*' and ` +
        `'model.diffusion_model.label_emb.*' keys), found none; is it SD 1.x/2.x?`,
    );
  }
}

/**
 * Maps, infers and validates an SGM key set from any {@link TensorSource}. The source is closed
 * by the returned checkpoint's `close()`.
 */
export function loadSdxlSource(
  source: TensorSource,
  format: CheckpointFormat,
  hints: SdxlConfigHints,
): LoadedSdxlCheckpoint {
  const infos = source.list();
  checkSdxlKeys(source);
  const mapping = mapSdxlKeys(infos, source.path);
  const entries = mapping.entries.map((e) => ({ ...e, source }));
  const config = inferSdxlConfig(entries, hints, source.path);
  validateEntries(entries, expectedTensorsSdxl(config), MODEL, source.path);
  const template: LdmTemplate = {
    keys: infos.map((t) => ({ ...t, shape: [...t.shape] })),
    readRaw: (key) => source.readRaw(key),
  };
  return makeCheckpoint(
    source.path,
    format,
    config,
    entries,
    mapping.extras,
    template,
    () => source.close(),
  );
}

/**
 * Opens an SDXL checkpoint: an SGM `.safetensors`, an SGM `.ckpt` or a diffusers folder with
 * `text_encoder_2/`. Errors name the file, the key and what was expected.
 */
export async function loadSdxlCheckpoint(
  path: string,
  opts: LoadSdxlCheckpointOptions = {},
): Promise<LoadedSdxlCheckpoint> {
  const hints: SdxlConfigHints = {
    vPrediction: opts.vPrediction,
    headsOptional: opts.headsOptional,
  };
  if (opts.yamlPath !== undefined && !(await exists(opts.yamlPath))) {
    throw new LorakitError(`${opts.yamlPath}: yaml config not found`);
  }
  if (await isDiffusersFolder(path)) {
    if (!(await hasTextEncoder2(path))) {
      throw new LorakitError(
        `${path}: expected an SDXL diffusers folder with 'text_encoder_2/', found none ` +
          `(an SD 1.x/2.x folder?)`,
      );
    }
    if (opts.yamlPath !== undefined) {
      hints.yaml = parseSgmYaml(await readText(opts.yamlPath), opts.yamlPath);
    }
    const folder = await openDiffusersFolder(path);
    try {
      hints.diffusers = folder.hints;
      const config = inferSdxlConfig(folder.entries, hints, path);
      validateEntries(folder.entries, expectedTensorsSdxl(config), MODEL, path);
      return makeCheckpoint(
        path,
        "diffusers",
        config,
        folder.entries,
        folder.extras,
        null,
        () => folder.close(),
      );
    } catch (e) {
      folder.close();
      throw e;
    }
  }
  const kind = isSingleFile(path);
  if (kind === null) {
    throw new LorakitError(
      `${path}: expected an SDXL checkpoint (.safetensors, .ckpt) or a diffusers folder ` +
        `(with unet/, vae/, text_encoder/, text_encoder_2/), found neither`,
    );
  }
  const source = kind.safetensors ? await openSafetensors(path) : await openCkpt(path);
  try {
    checkSdxlKeys(source);
    // The yaml is read once the weights are known to be SDXL's (an SD file's yaml is CompVis').
    const yamlPath = opts.yamlPath ?? (await yamlBeside(path));
    if (yamlPath !== undefined) hints.yaml = parseSgmYaml(await readText(yamlPath), yamlPath);
    return loadSdxlSource(source, kind.safetensors ? "ldm-safetensors" : "ldm-ckpt", hints);
  } catch (e) {
    source.close();
    throw e;
  }
}
