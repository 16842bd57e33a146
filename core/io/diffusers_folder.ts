/**
 * A diffusers pipeline folder (`unet/`, `vae/`, `text_encoder/`, SDXL's `text_encoder_2/`,
 * `scheduler/`) opened as one set of tensors in the internal naming: the folder's own module
 * names, prefixed by part. Weights are read from `diffusion_pytorch_model.safetensors` (or
 * `.bin`, a PyTorch pickle read without executing code) and `model.safetensors` (or
 * `pytorch_model.bin`); the `config.json` files become hints that `core/model_config/infer.ts`
 * (`infer_sdxl.ts`) checks against the weights.
 *
 * VAE attention names of diffusers < 0.17 (`query`, `key`, `value`, `proj_attn`) are renamed to
 * the 0.17+ names lorakit uses, as diffusers itself does when it loads such a folder.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { DiffusersHints, JsonConfig } from "../model_config/hints.ts";
import { parseJsonConfig } from "../model_config/hints.ts";
import { openCkpt } from "./ckpt.ts";
import { exists, isDirectory, joinPath, readText } from "./fs.ts";
import { INTERNAL_PREFIX } from "./keymap_ldm.ts";
import type { MapEntry } from "./keymap_types.ts";
import { LEGACY_VAE_ATTENTION, vaeConvToLinearShape } from "./keymap_vae.ts";
import { openSafetensors } from "./safetensors.ts";
import type { TensorInfo, TensorSource } from "./tensor_source.ts";

/** An internal tensor bound to the file it is stored in. */
export interface BoundEntry extends MapEntry {
  source: TensorSource;
}

/** An opened diffusers folder. */
export interface DiffusersFolder {
  path: string;
  /** Internal tensors of all parts. */
  entries: BoundEntry[];
  /** Stored tensors without an internal name (e.g. the text encoder's `position_ids`). */
  extras: TensorInfo[];
  hints: DiffusersHints;
  close(): void;
}

const PARTS = [
  {
    dir: "unet",
    prefix: INTERNAL_PREFIX.unet,
    files: ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"],
  },
  {
    dir: "vae",
    prefix: INTERNAL_PREFIX.vae,
    files: ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"],
  },
  {
    dir: "text_encoder",
    prefix: INTERNAL_PREFIX.text,
    files: ["model.safetensors", "pytorch_model.bin"],
  },
] as const;

/** SDXL's second text encoder (`CLIPTextModelWithProjection`), read when the folder has it. */
const TEXT_ENCODER_2 = {
  dir: "text_encoder_2",
  prefix: "text_encoder_2.",
  files: ["model.safetensors", "pytorch_model.bin"],
} as const;

/** True when a diffusers folder has SDXL's `text_encoder_2/`. */
export function hasTextEncoder2(path: string): Promise<boolean> {
  return isDirectory(joinPath(path, TEXT_ENCODER_2.dir));
}

/** True when `path` is a folder with a `unet/` subfolder and a `model_index.json` or `vae/`. */
export async function isDiffusersFolder(path: string): Promise<boolean> {
  if (!(await isDirectory(path)) || !(await isDirectory(joinPath(path, "unet")))) return false;
  return (await exists(joinPath(path, "model_index.json"))) ||
    (await isDirectory(joinPath(path, "vae")));
}

async function readConfig(path: string): Promise<JsonConfig | undefined> {
  return (await exists(path)) ? parseJsonConfig(await readText(path), path) : undefined;
}

/** Renames a diffusers < 0.17 VAE attention name; other names pass unchanged. */
function modernVaeName(name: string): string {
  const m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(query|key|value|proj_attn)\.(.+)$/
    .exec(name);
  return m === null ? name : `${m[1]}.mid_block.attentions.0.${LEGACY_VAE_ATTENTION[m[2]]}.${m[3]}`;
}

function bind(source: TensorSource, prefix: string, entries: BoundEntry[], extras: TensorInfo[]) {
  for (const t of source.list()) {
    if (t.name.endsWith("position_ids")) {
      extras.push(t);
      continue;
    }
    let name = t.name;
    let shape = [...t.shape];
    if (prefix === INTERNAL_PREFIX.vae) {
      name = modernVaeName(name);
      if (/mid_block\.attentions\.0\.to_(q|k|v|out\.0)\.weight$/.test(name)) {
        shape = vaeConvToLinearShape(shape, t.name, source.path);
      }
    }
    entries.push({ name: prefix + name, key: t.name, shape, source });
  }
}

/** Opens a diffusers folder; a missing part or weight file is an error naming what was sought. */
export async function openDiffusersFolder(path: string): Promise<DiffusersFolder> {
  const sources: TensorSource[] = [];
  const entries: BoundEntry[] = [];
  const extras: TensorInfo[] = [];
  try {
    const parts = (await hasTextEncoder2(path)) ? [...PARTS, TEXT_ENCODER_2] : PARTS;
    for (const part of parts) {
      const dir = joinPath(path, part.dir);
      let file: string | undefined;
      for (const f of part.files) {
        if (await exists(joinPath(dir, f))) {
          file = joinPath(dir, f);
          break;
        }
      }
      if (file === undefined) {
        throw new LorakitError(
          `${path}: diffusers folder: expected ${
            part.files.map((f) => `'${part.dir}/${f}'`).join(" or ")
          }, found neither`,
        );
      }
      const source = file.endsWith(".safetensors")
        ? await openSafetensors(file)
        : await openCkpt(file);
      sources.push(source);
      bind(source, part.prefix, entries, extras);
    }
    const hints: DiffusersHints = {
      unet: await readConfig(joinPath(path, "unet/config.json")),
      vae: await readConfig(joinPath(path, "vae/config.json")),
      textEncoder: await readConfig(joinPath(path, "text_encoder/config.json")),
      textEncoder2: await readConfig(joinPath(path, "text_encoder_2/config.json")),
      scheduler: await readConfig(joinPath(path, "scheduler/scheduler_config.json")),
    };
    return {
      path,
      entries,
      extras,
      hints,
      close() {
        for (const s of sources) s.close();
      },
    };
  } catch (e) {
    for (const s of sources) s.close();
    throw e;
  }
}
