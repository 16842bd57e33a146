/**
 * kohya LoRA files (`.safetensors`): three tensors per module, `<prefix>.lora_down.weight`
 * `[r, in]` or `[r, in, kh, kw]`, `<prefix>.lora_up.weight` `[out, r]` or `[out, r, 1, 1]`, and a
 * 0-d `<prefix>.alpha` (optional in old files: then alpha = rank, as kohya's
 * `create_network_from_weights` does). Reading groups and validates the keys and binds each
 * prefix to a model layer; writing produces kohya's exact key set, dtype cast of every tensor
 * (alpha included) and `sshs_*` hashes.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { encodeFromF32 } from "../io/dtype.ts";
import { precalculateSafetensorsHashes } from "../io/hashes.ts";
import { openCkpt } from "../io/ckpt.ts";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import type { FileDType, HostTensor, TensorSource } from "../io/tensor_source.ts";
import { type LoraModuleKind, type LoraPart, type LoraTarget, naturalCompare } from "./modules.ts";
import { describeLoraVersion, describeModelVersion, type VersionGuess } from "./version.ts";

export { describeLoraVersion } from "./version.ts";

/** kohya's network families, as far as a file tells them apart. */
export type LoraNetworkKind = "LierLa" | "C3Lier" | "DyLoRA";

/** One module of a LoRA file (shapes only; data is read on demand). */
export interface LoraFileModule {
  prefix: string;
  part: LoraPart;
  kind: LoraModuleKind;
  /** `[r, in]` or `[r, in, kh, kw]`. */
  downShape: number[];
  /** `[out, r]` or `[out, r, 1, 1]`. */
  upShape: number[];
  rank: number;
  inFeatures: number;
  outFeatures: number;
  kernel: [number, number];
  /** The stored alpha, or the rank when the file has none. */
  alpha: number;
  hasAlpha: boolean;
  /** Stored dtype of `lora_down.weight`. */
  dtype: FileDType;
}

/** An opened LoRA file. */
export interface LoraFile {
  readonly path: string;
  readonly metadata: Record<string, string>;
  /** Modules in natural prefix order (text encoder first). */
  readonly modules: LoraFileModule[];
  readonly kind: LoraNetworkKind;
  /** DyLoRA's rank unit from `ss_network_args` (1 when unrecorded); null for other kinds. */
  readonly dyloraUnit: number | null;
  /** SD version the file looks made for, with the evidence. */
  readonly version: VersionGuess;
  /** Both factors as f32 and the alpha. */
  readModule(prefix: string): Promise<{ down: HostTensor; up: HostTensor; alpha: number }>;
  close(): void;
}

const PARTS = new Set(["lora_down.weight", "lora_up.weight", "alpha"]);

function shapeText(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

/** Module geometry from the two factor shapes, or an error naming the file and key. */
function geometry(
  path: string,
  prefix: string,
  down: number[],
  up: number[],
): Pick<LoraFileModule, "kind" | "rank" | "inFeatures" | "outFeatures" | "kernel"> {
  const bad = (why: string) =>
    new LorakitError(
      `${path}: module '${prefix}': ${why} (lora_down.weight ${shapeText(down)}, ` +
        `lora_up.weight ${shapeText(up)})`,
    );
  if (down.length === 2 && up.length === 2) {
    if (up[1] !== down[0]) throw bad(`expected lora_up.weight [out, ${down[0]}]`);
    return {
      kind: "linear",
      rank: down[0],
      inFeatures: down[1],
      outFeatures: up[0],
      kernel: [1, 1],
    };
  }
  if (down.length === 4 && up.length === 4) {
    if (up[1] !== down[0] || up[2] !== 1 || up[3] !== 1) {
      throw bad(`expected lora_up.weight [out, ${down[0]}, 1, 1]`);
    }
    const k: [number, number] = [down[2], down[3]];
    const kind = k[0] === 1 && k[1] === 1 ? "conv1x1" : k[0] === 3 && k[1] === 3 ? "conv3x3" : null;
    if (kind === null) throw bad("expected a 1x1 or 3x3 lora_down kernel");
    return { kind, rank: down[0], inFeatures: down[1], outFeatures: up[0], kernel: k };
  }
  throw bad("expected both factors 2-D (Linear) or both 4-D (Conv2d)");
}

function partOf(path: string, key: string, name: string): LoraPart {
  if (name.startsWith("lora_unet_")) return "unet";
  // SDXL's two text encoders: lora_te1_ and lora_te2_.
  if (/^lora_te[12]?_/.test(name)) return "text_encoder";
  throw new LorakitError(
    `${path}: key '${key}': expected a kohya LoRA key starting lora_unet_, lora_te_, ` +
      `lora_te1_ or lora_te2_`,
  );
}

/**
 * Open a kohya LoRA file and validate its key set: every module needs `lora_down.weight` and
 * `lora_up.weight` of matching rank; any other tensor (LyCORIS `hada_*`, `lora_mid`, DoRA
 * `dora_scale`, ...) is an error naming the key.
 */
export async function openLoraFile(path: string): Promise<LoraFile> {
  // kohya also reads LoRAs saved with --save_model_as ckpt/pt (torch.save; no metadata).
  const st = /\.(ckpt|pt|pth)$/i.test(path) ? await openCkpt(path) : await openSafetensors(path);
  try {
    return await loraFileFromSource(st);
  } catch (e) {
    st.close();
    throw e;
  }
}

/**
 * {@link openLoraFile} over an already opened tensor source (a safetensors file parsed from
 * memory, a checkpoint). On failure the caller still owns `st`.
 */
export async function loraFileFromSource(st: TensorSource): Promise<LoraFile> {
  const path = st.path;
  const groups = new Map<string, Map<string, { shape: number[]; dtype: FileDType }>>();
  for (const t of st.list()) {
    const dot = t.name.indexOf(".");
    const name = dot < 0 ? t.name : t.name.slice(0, dot);
    const part = dot < 0 ? "" : t.name.slice(dot + 1);
    if (!PARTS.has(part)) {
      throw new LorakitError(
        `${path}: key '${t.name}': expected <module>.lora_down.weight, .lora_up.weight or ` +
          `.alpha (a kohya LoRA); found '${part || t.name}', which lorakit does not support`,
      );
    }
    partOf(path, t.name, name);
    if (!groups.has(name)) groups.set(name, new Map());
    groups.get(name)!.set(part, { shape: t.shape, dtype: t.dtype });
  }
  if (groups.size === 0) throw new LorakitError(`${path}: expected LoRA tensors, found none`);
  const modules: LoraFileModule[] = [];
  for (const [prefix, parts] of groups) {
    const down = parts.get("lora_down.weight");
    const up = parts.get("lora_up.weight");
    if (down === undefined || up === undefined) {
      const missing = down === undefined ? "lora_down.weight" : "lora_up.weight";
      throw new LorakitError(`${path}: module '${prefix}': missing key '${prefix}.${missing}'`);
    }
    const geo = geometry(path, prefix, down.shape, up.shape);
    const a = parts.get("alpha");
    let alpha = geo.rank;
    if (a !== undefined) {
      if (a.shape.reduce((x, y) => x * y, 1) !== 1) {
        throw new LorakitError(
          `${path}: key '${prefix}.alpha': expected a scalar, found shape ${shapeText(a.shape)}`,
        );
      }
      alpha = (await st.readF32(`${prefix}.alpha`)).data[0];
    }
    modules.push({
      prefix,
      part: partOf(path, prefix, prefix),
      ...geo,
      downShape: down.shape,
      upShape: up.shape,
      alpha,
      hasAlpha: a !== undefined,
      dtype: down.dtype,
    });
  }
  modules.sort((a, b) =>
    a.part === b.part ? naturalCompare(a.prefix, b.prefix) : a.part === "text_encoder" ? -1 : 1
  );
  const metadata = st.metadata;
  const isDylora = (metadata.ss_network_module ?? "").includes("dylora");
  const kind: LoraNetworkKind = isDylora
    ? "DyLoRA"
    : modules.some((m) => m.kind === "conv3x3")
    ? "C3Lier"
    : "LierLa";
  let dyloraUnit: number | null = null;
  if (isDylora) {
    let args: unknown;
    try {
      args = JSON.parse(metadata.ss_network_args ?? "{}");
    } catch {
      throw new LorakitError(
        `${path}: metadata ss_network_args: expected JSON, found invalid text`,
      );
    }
    const unit = (args as { unit?: unknown } | null)?.unit;
    // kohya reads it with int(): "4" and 4 are a unit, anything else is an error there too.
    const n = typeof unit === "number" || typeof unit === "string" ? Number(unit) : NaN;
    if (unit !== undefined && !(Number.isSafeInteger(n) && n >= 1)) {
      const shown = (JSON.stringify(unit) ?? String(unit)).slice(0, 40);
      throw new LorakitError(
        `${path}: metadata ss_network_args: expected "unit" to be a positive integer, found ${shown}`,
      );
    }
    dyloraUnit = unit === undefined ? 1 : n;
  }
  const byPrefix = new Map(modules.map((m) => [m.prefix, m]));
  return {
    path,
    metadata,
    modules,
    kind,
    dyloraUnit,
    version: describeLoraVersion(metadata, modules),
    async readModule(prefix: string) {
      const m = byPrefix.get(prefix);
      if (m === undefined) throw new LorakitError(`${path}: no LoRA module '${prefix}'`);
      const down = await st.readF32(`${prefix}.lora_down.weight`);
      const up = await st.readF32(`${prefix}.lora_up.weight`);
      return { down, up, alpha: m.alpha };
    },
    close: () => st.close(),
  };
}

/**
 * Map each module of `file` to the model layer it modifies, checking shapes against `targets`
 * (from `loraTargets`). An unknown prefix or a shape mismatch is a LorakitError naming the key
 * and the file, and says when the LoRA was made for another SD version than the model.
 */
export function bindLoraFile(
  file: Pick<LoraFile, "path" | "modules" | "version">,
  targets: readonly LoraTarget[],
): Map<string, LoraTarget> {
  const byPrefix = new Map(targets.map((t) => [t.prefix, t]));
  const model = describeModelVersion(targets);
  const versionNote = () =>
    file.version.version !== null && model.version !== null &&
      file.version.version !== model.version
      ? `; this LoRA looks made for ${file.version.label} (${file.version.evidence.join("; ")}), ` +
        `the model is ${model.label} (${model.evidence.join("; ")})`
      : "";
  const out = new Map<string, LoraTarget>();
  for (const m of file.modules) {
    const t = byPrefix.get(m.prefix);
    if (t === undefined) {
      throw new LorakitError(
        `${file.path}: key '${m.prefix}.lora_down.weight' names no layer of the model that a ` +
          `kohya LoRA can modify${versionNote()}`,
      );
    }
    const want = t.kind === "linear"
      ? [m.rank, t.inFeatures]
      : [m.rank, t.inFeatures, t.kernel[0], t.kernel[1]];
    if (shapeText(want) !== shapeText(m.downShape) || m.outFeatures !== t.outFeatures) {
      throw new LorakitError(
        `${file.path}: key '${m.prefix}.lora_down.weight': expected shape ${shapeText(want)} ` +
          `(with lora_up [${t.outFeatures}, ${m.rank}${t.kind === "linear" ? "" : ", 1, 1"}]) ` +
          `for model layer '${t.weight}', found ${shapeText(m.downShape)} / ` +
          `${shapeText(m.upShape)}${versionNote()}`,
      );
    }
    out.set(m.prefix, t);
  }
  return out;
}

/** `--save_precision` values and their file dtypes. */
export const SAVE_PRECISION: Readonly<Record<string, FileDType>> = {
  float: "F32",
  fp16: "F16",
  bf16: "BF16",
};

/** One module to write. */
export interface LoraWeightsToSave {
  prefix: string;
  down: HostTensor;
  up: HostTensor;
  alpha: number;
}

/** Options of {@link saveLoraFile}. */
export interface SaveLoraOptions {
  /** `float`, `fp16` (default, what consumers expect) or `bf16`; applies to every tensor. */
  precision?: "float" | "fp16" | "bf16";
  /** `ss_*` / `modelspec.*` entries; `sshs_model_hash` and `sshs_legacy_hash` are added. */
  metadata?: Record<string, string>;
}

/**
 * The tensors of a kohya LoRA file, validated and cast to the `--save_precision` dtype:
 * `<prefix>.lora_down.weight`, `.lora_up.weight` and a 0-d `.alpha` per module, in that order.
 * Shared by the safetensors and the `.ckpt`/`.pt` writers.
 */
export function loraTensorsToWrite(
  path: string,
  modules: readonly LoraWeightsToSave[],
  precision: "float" | "fp16" | "bf16",
): (TensorToWrite & { data: Uint8Array })[] {
  const dtype = SAVE_PRECISION[precision];
  if (dtype === undefined) {
    throw new LorakitError(
      `--save_precision: expected float, fp16 or bf16, found '${String(precision)}'`,
    );
  }
  const tensors: (TensorToWrite & { data: Uint8Array })[] = [];
  const add = (name: string, shape: number[], values: Float32Array) => {
    const n = shape.reduce((x, y) => x * y, 1);
    if (values.length !== n) {
      throw new LorakitError(
        `${path}: tensor '${name}': shape ${
          shapeText(shape)
        } needs ${n} values, found ${values.length}`,
      );
    }
    tensors.push({ name, dtype, shape, data: encodeFromF32(dtype, values) });
  };
  for (const m of modules) {
    partOf(path, m.prefix, m.prefix);
    if (m.prefix.includes(".")) {
      throw new LorakitError(`${path}: module '${m.prefix}': expected a name without dots`);
    }
    geometry(path, m.prefix, m.down.shape, m.up.shape);
    if (!Number.isFinite(m.alpha)) {
      throw new LorakitError(
        `${path}: module '${m.prefix}': expected a finite alpha, found ${m.alpha}`,
      );
    }
    add(`${m.prefix}.lora_down.weight`, m.down.shape, m.down.data);
    add(`${m.prefix}.lora_up.weight`, m.up.shape, m.up.data);
    add(`${m.prefix}.alpha`, [], new Float32Array([m.alpha]));
  }
  return tensors;
}

/**
 * Write a kohya LoRA file atomically: `<prefix>.lora_down.weight`, `.lora_up.weight` and a 0-d
 * `.alpha` per module, all in the save dtype, with kohya's `sshs_*` hashes computed over the
 * bytes as written. Returns the metadata written.
 */
export async function saveLoraFile(
  path: string,
  modules: readonly LoraWeightsToSave[],
  options: SaveLoraOptions = {},
): Promise<Record<string, string>> {
  const tensors = loraTensorsToWrite(path, modules, options.precision ?? "fp16");
  const metadata = { ...(options.metadata ?? {}) };
  const hashes = await precalculateSafetensorsHashes(tensors, metadata, path);
  metadata.sshs_model_hash = hashes.modelHash;
  metadata.sshs_legacy_hash = hashes.legacyHash;
  await writeSafetensors(path, tensors, metadata);
  return metadata;
}
