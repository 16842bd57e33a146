/**
 * Stable Diffusion checkpoints in one internal naming, whatever their file form: an LDM single
 * file (`.safetensors` or `.ckpt`) or a diffusers folder. Names are diffusers/HF module names
 * prefixed by part (`unet.`, `vae.`, `text_encoder.`), the names kohya's LoRA keys are built from.
 * Tensors are read lazily, one at a time, with the layout transforms of `keymap_*.ts` applied.
 *
 * Saving writes an LDM single-file `.safetensors` with the key set and shapes of a template (the
 * original file's, or kohya's defaults), one tensor at a time, atomically.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { SDConfig } from "../model_config/config.ts";
import { type ConfigHints, inferConfig } from "../model_config/infer.ts";
import { parseLdmYaml } from "../model_config/hints.ts";
import { type ExpectedTensor, expectedTensors } from "../model_config/keys.ts";
import { openCkpt } from "./ckpt.ts";
import {
  type BoundEntry,
  hasTextEncoder2,
  isDiffusersFolder,
  openDiffusersFolder,
} from "./diffusers_folder.ts";
import { baseName, dirName, exists, joinPath, readText } from "./fs.ts";
import { ldmKeysFor, type LdmTemplate, mapLdmKeys, planLdmWrite } from "./keymap_ldm.ts";
import { DTYPE_SIZE } from "./dtype.ts";
import { elementCount, shapeText, transposeBytes } from "./keymap_types.ts";
import { openSafetensors } from "./safetensors.ts";
import type { HostTensor, TensorInfo, TensorSource } from "./tensor_source.ts";
import {
  type InternalTensors,
  saveDtype,
  type SavePrecision,
  writeCheckpointPlans,
} from "./checkpoint_write.ts";

export type { InternalTensors, SavePrecision } from "./checkpoint_write.ts";

/** The file form a checkpoint was read from. */
export type CheckpointFormat = "ldm-safetensors" | "ldm-ckpt" | "diffusers";

/** Options of {@link loadCheckpoint}; explicit values win over yaml and config files. */
export interface LoadCheckpointOptions {
  v2?: boolean;
  vPrediction?: boolean;
  /** A1111-style yaml; default `<checkpoint stem>.yaml` beside an LDM file, when present. */
  yamlPath?: string;
  /** The caller never runs the model (see `ConfigHints.headsOptional`). */
  headsOptional?: boolean;
}

/** A checkpoint opened in the internal naming (`C`: `SDXLConfig` for an SDXL checkpoint). */
export interface LoadedCheckpoint<C = SDConfig> {
  readonly path: string;
  readonly format: CheckpointFormat;
  readonly config: C;
  /** Internal names, in stored order. */
  names(): string[];
  has(name: string): boolean;
  /** Internal name, internal shape and the stored dtype. */
  info(name: string): TensorInfo;
  /** One tensor as f32 in its internal shape. */
  readF32(name: string): Promise<HostTensor>;
  /** One tensor's stored bytes (its stored dtype) in its internal shape. */
  readRaw(name: string): Promise<Uint8Array>;
  /** Stored tensors without an internal name (schedule buffers, position_ids, EMA, ...). */
  extras(): TensorInfo[];
  /** The original LDM key set with its extras' bytes; null for a diffusers folder. */
  ldmTemplate(): LdmTemplate | null;
  close(): void;
}

/** Checks the bound entries against the tensors the config implies, naming stored keys. */
function validate(entries: readonly BoundEntry[], config: SDConfig, where: string): void {
  validateEntries(entries, expectedTensors(config), `SD ${config.v2 ? "2.x" : "1.x"}`, where);
}

/**
 * Checks bound entries against an expected tensor list (`model` names the architecture in
 * messages): no duplicate, unknown, mis-shaped or missing tensor.
 */
export function validateEntries(
  entries: readonly BoundEntry[],
  expectedList: readonly ExpectedTensor[],
  model: string,
  where: string,
): void {
  const expected = new Map(expectedList.map((t) => [t.name, t.shape]));
  const seen = new Map<string, BoundEntry>();
  for (const e of entries) {
    const stored = `'${e.key}' (${e.source.path})`;
    const dup = seen.get(e.name);
    if (dup !== undefined) {
      throw new LorakitError(
        `${where}: keys '${dup.key}' and '${e.key}' both give tensor '${e.name}'; expected one`,
      );
    }
    seen.set(e.name, e);
    const shape = expected.get(e.name);
    if (shape === undefined) {
      throw new LorakitError(
        `${where}: unknown key ${stored}: it maps to '${e.name}', which the inferred ` +
          `${model} architecture does not have`,
      );
    }
    if (shapeText(shape) !== shapeText(e.shape)) {
      throw new LorakitError(
        `${where}: key ${stored}: expected shape ${shapeText(shape)} for '${e.name}', ` +
          `found ${shapeText(e.shape)}`,
      );
    }
  }
  for (const name of expected.keys()) {
    if (!seen.has(name)) {
      throw new LorakitError(
        `${where}: missing tensor '${name}' (internal name); the checkpoint is incomplete`,
      );
    }
  }
}

/** Builds the lazily-reading checkpoint over validated entries. */
export function makeCheckpoint<C = SDConfig>(
  path: string,
  format: CheckpointFormat,
  config: C,
  entries: BoundEntry[],
  extras: TensorInfo[],
  template: LdmTemplate | null,
  close: () => void,
): LoadedCheckpoint<C> {
  const byName = new Map(entries.map((e) => [e.name, e]));
  const get = (name: string): BoundEntry => {
    const e = byName.get(name);
    if (e === undefined) throw new LorakitError(`${path}: no tensor '${name}' (internal name)`);
    return e;
  };
  // q, k and v of a fused OpenCLIP tensor are read one after another: keep the last fused read.
  let fused: { key: string; data: Promise<HostTensor> } | null = null;
  const readStoredF32 = (e: BoundEntry): Promise<HostTensor> => {
    if (e.parts === undefined) return e.source.readF32(e.key);
    if (fused?.key !== e.key) fused = { key: e.key, data: e.source.readF32(e.key) };
    return fused.data;
  };
  return {
    path,
    format,
    config,
    names: () => entries.map((e) => e.name),
    has: (name) => byName.has(name),
    info(name) {
      const e = get(name);
      return { name, dtype: e.source.info(e.key).dtype, shape: [...e.shape] };
    },
    async readF32(name) {
      const e = get(name);
      const t = await readStoredF32(e);
      if (e.transpose) {
        const [rows, cols] = [e.shape[1], e.shape[0]];
        const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        const out = transposeBytes(bytes, rows, cols, 4);
        return { shape: [...e.shape], data: new Float32Array(out.buffer) };
      }
      if (e.parts === undefined) return { shape: [...e.shape], data: t.data };
      if (e.part === e.parts - 1) fused = null; // v is read last: release the fused tensor
      const n = elementCount(e.shape);
      return { shape: [...e.shape], data: t.data.slice(e.part! * n, (e.part! + 1) * n) };
    },
    async readRaw(name) {
      const e = get(name);
      const bytes = await e.source.readRaw(e.key);
      if (e.transpose) {
        const size = DTYPE_SIZE[e.source.info(e.key).dtype];
        return transposeBytes(bytes, e.shape[1], e.shape[0], size);
      }
      if (e.parts === undefined) return bytes;
      const n = bytes.length / e.parts;
      return bytes.slice(e.part! * n, (e.part! + 1) * n);
    },
    extras: () => extras.map((t) => ({ ...t, shape: [...t.shape] })),
    ldmTemplate: () => template,
    close,
  };
}

/**
 * Maps, infers and validates an LDM key set from any {@link TensorSource} (a file, or a fake one
 * in tests). The source is closed by the returned checkpoint's `close()`.
 */
export function loadLdmSource(
  source: TensorSource,
  format: CheckpointFormat,
  hints: ConfigHints,
): LoadedCheckpoint {
  const infos = source.list();
  const mapping = mapLdmKeys(infos, source.path);
  const entries = mapping.entries.map((e) => ({ ...e, source }));
  const config = inferConfig(
    entries.map((e) => ({ name: e.name, dtype: "F32", shape: e.shape })),
    { ...hints, layoutV2: mapping.layoutV2 },
    source.path,
  );
  validate(entries, config, source.path);
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

/** `<dir>/<stem>.yaml` for a checkpoint file: where A1111 looks for its config. */
export function yamlPathFor(path: string): string {
  const base = baseName(path);
  const dot = base.lastIndexOf(".");
  return joinPath(dirName(path), `${dot > 0 ? base.slice(0, dot) : base}.yaml`);
}

/** `<dir>/<stem>.yaml` beside a checkpoint file (A1111's convention), if it exists. */
export async function yamlBeside(path: string): Promise<string | undefined> {
  const candidate = yamlPathFor(path);
  return (await exists(candidate)) ? candidate : undefined;
}

/**
 * Opens an SD 1.x/2.x checkpoint: an LDM `.safetensors`, an LDM `.ckpt` (read without executing
 * pickle code) or a diffusers folder. The architecture is inferred from the weights; see
 * `core/model_config/infer.ts` for what comes from options, the yaml or the config files.
 */
export async function loadCheckpoint(
  path: string,
  opts: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  const hints: ConfigHints = {
    v2: opts.v2,
    vPrediction: opts.vPrediction,
    headsOptional: opts.headsOptional,
  };
  if (opts.yamlPath !== undefined && !(await exists(opts.yamlPath))) {
    throw new LorakitError(`${opts.yamlPath}: yaml config not found`);
  }
  if (await isDiffusersFolder(path)) {
    if (await hasTextEncoder2(path)) {
      throw new LorakitError(
        `${path}: expected an SD 1.x/2.x diffusers folder, found SDXL's 'text_encoder_2/'; ` +
          `SDXL is not supported here (the SDXL loader is loadSdxlCheckpoint)`,
      );
    }
    if (opts.yamlPath !== undefined) {
      hints.yaml = parseLdmYaml(await readText(opts.yamlPath), opts.yamlPath);
    }
    const folder = await openDiffusersFolder(path);
    try {
      hints.diffusers = folder.hints;
      const infos = folder.entries.map((e) => ({
        name: e.name,
        dtype: "F32" as const,
        shape: e.shape,
      }));
      const config = inferConfig(infos, hints, path);
      validate(folder.entries, config, path);
      const close = () => folder.close();
      return makeCheckpoint(path, "diffusers", config, folder.entries, folder.extras, null, close);
    } catch (e) {
      folder.close();
      throw e;
    }
  }
  const lower = path.toLowerCase();
  const isSafetensors = lower.endsWith(".safetensors");
  if (!isSafetensors && !/\.(ckpt|pt|pth|bin)$/.test(lower)) {
    throw new LorakitError(
      `${path}: expected an LDM checkpoint (.safetensors, .ckpt) or a diffusers folder ` +
        `(with unet/, vae/, text_encoder/), found neither`,
    );
  }
  const yamlPath = opts.yamlPath ?? (await yamlBeside(path));
  if (yamlPath !== undefined) hints.yaml = parseLdmYaml(await readText(yamlPath), yamlPath);
  const source = isSafetensors ? await openSafetensors(path) : await openCkpt(path);
  try {
    return loadLdmSource(source, isSafetensors ? "ldm-safetensors" : "ldm-ckpt", hints);
  } catch (e) {
    source.close();
    throw e;
  }
}

/** Options of {@link saveLdmCheckpoint}. */
export interface SaveLdmOptions {
  /** dtype of the model tensors (kohya's `--save_precision`); extras keep their stored dtype. */
  savePrecision: SavePrecision;
  /**
   * Key set and shapes to write, with the extras' bytes: pass `loaded.ldmTemplate()` to write
   * exactly the keys the original file had. Default: kohya's key set for `config`.
   */
  template?: LdmTemplate;
  metadata?: Record<string, string>;
}

/**
 * Writes an LDM single-file `.safetensors` (one tensor in memory at a time; temporary file, then
 * rename). Model tensors are converted to `savePrecision` and reshaped to the template's shapes
 * (VAE attention as 1x1 convs, OpenCLIP q,k,v joined); extras are copied byte for byte.
 */
export async function saveLdmCheckpoint(
  path: string,
  source: InternalTensors,
  config: SDConfig,
  opts: SaveLdmOptions,
): Promise<void> {
  const dtype = saveDtype(opts.savePrecision);
  const names = new Set(source.names());
  const template = opts.template ??
    { keys: ldmKeysFor([...names].map((n) => source.info(n)), config) };
  const plans = planLdmWrite(
    template.keys,
    (n) => (names.has(n) ? source.info(n) : undefined),
    path,
  );
  await writeCheckpointPlans(path, source, plans, template, dtype, opts.metadata);
}
