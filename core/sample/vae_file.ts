/**
 * gen_img's `--vae`: a replacement VAE, read as kohya's `model_util.load_vae` reads one:
 * - a diffusers folder: `vae/diffusion_pytorch_model.{safetensors,bin}` under a pipeline folder,
 *   or that file directly in a VAE folder;
 * - a single file (`.safetensors`, or `.ckpt`/`.pt`/`.bin` read without executing pickle code):
 *   a whole SD checkpoint (its `first_stage_model.*` keys are used), an LDM VAE alone
 *   (`encoder.down.0...`, as `vae-ft-mse-840000-ema-pruned` ships) or diffusers-named keys
 *   (`encoder.down_blocks.0...`).
 * The tensors must be the VAE the model's config implies (SD's VAE): any missing, unknown or
 * mis-shaped tensor is an error naming the file and key.
 *
 * @module
 */
import { cast, type DType, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { openCkpt } from "../io/ckpt.ts";
import { exists, isDirectory, joinPath } from "../io/fs.ts";
import {
  inferVaeLevels,
  LEGACY_VAE_ATTENTION,
  vaeConvToLinearShape,
  vaeKeyToDiffusers,
} from "../io/keymap_vae.ts";
import { openSafetensors } from "../io/safetensors.ts";
import type { TensorSource } from "../io/tensor_source.ts";
import type { SDConfig } from "../model_config/config.ts";
import { expectedTensors } from "../model_config/keys.ts";
import { AutoencoderKL } from "../models/vae.ts";
import { ModelWeights } from "../models/weights.ts";

const LDM_VAE_PREFIX = "first_stage_model.";
const DIFFUSERS_FILES = ["diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"];

/** The weight file of a diffusers VAE folder (or pipeline folder), or null. */
async function diffusersVaeFile(dir: string): Promise<string | null> {
  for (const sub of [joinPath(dir, "vae"), dir]) {
    for (const f of DIFFUSERS_FILES) {
      if (await exists(joinPath(sub, f))) return joinPath(sub, f);
    }
  }
  return null;
}

async function openWeights(path: string): Promise<TensorSource> {
  return path.toLowerCase().endsWith(".safetensors")
    ? await openSafetensors(path)
    : await openCkpt(path);
}

/** A stored key bound to its internal name and shape. */
interface Bound {
  key: string;
  name: string;
  shape: number[];
}

const ATTN_WEIGHT = /mid_block\.attentions\.0\.to_(q|k|v|out\.0)\.weight$/;

/** Internal names for the keys of a VAE file in whichever of the three namings it uses. */
function bindKeys(source: TensorSource, where: string): Bound[] {
  const all = source.list();
  const full = all.filter((t) => t.name.startsWith(LDM_VAE_PREFIX));
  const keys = full.length > 0
    ? full.map((t) => ({ key: t.name, rel: t.name.slice(LDM_VAE_PREFIX.length), shape: t.shape }))
    : all.map((t) => ({ key: t.name, rel: t.name, shape: t.shape }));
  const diffusersNaming = keys.some((k) => /^(en|de)coder\.(down|up)_blocks\./.test(k.rel));
  const levels = diffusersNaming ? 0 : inferVaeLevels(keys.map((k) => k.rel), where);
  const out: Bound[] = [];
  for (const k of keys) {
    if (full.length === 0 && /(^|\.)(position_ids|model_ema\..*|num_updates|decay)$/.test(k.rel)) {
      continue;
    }
    let name: string;
    let shape = [...k.shape];
    if (diffusersNaming) {
      const m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(query|key|value|proj_attn)\.(.+)$/
        .exec(k.rel);
      name = m === null
        ? k.rel
        : `${m[1]}.mid_block.attentions.0.${LEGACY_VAE_ATTENTION[m[2]]}.${m[3]}`;
      if (ATTN_WEIGHT.test(name)) shape = vaeConvToLinearShape(shape, k.key, where);
    } else {
      const m = vaeKeyToDiffusers(k.rel, levels);
      if (m === null) {
        throw new LorakitError(
          `${where}: --vae: unknown key '${k.key}': not part of SD's VAE layout`,
        );
      }
      name = m.name;
      if (m.convLinear) shape = vaeConvToLinearShape(shape, k.key, where);
    }
    out.push({ key: k.key, name: `vae.${name}`, shape });
  }
  return out;
}

/** Check the bound keys are exactly the VAE `config` implies. */
function validate(bound: readonly Bound[], config: SDConfig, where: string): void {
  const expected = new Map(
    expectedTensors(config).filter((t) => t.name.startsWith("vae.")).map((t) => [t.name, t.shape]),
  );
  const seen = new Set<string>();
  for (const b of bound) {
    const want = expected.get(b.name);
    if (want === undefined) {
      throw new LorakitError(
        `${where}: --vae: unknown key '${b.key}' (maps to '${b.name}', which SD's VAE does not have)`,
      );
    }
    if (want.join(",") !== b.shape.join(",")) {
      throw new LorakitError(
        `${where}: --vae: key '${b.key}': expected shape [${want.join(",")}], found ` +
          `[${b.shape.join(",")}]`,
      );
    }
    seen.add(b.name);
  }
  for (const name of expected.keys()) {
    if (!seen.has(name)) {
      throw new LorakitError(
        `${where}: --vae: missing tensor '${name}' (internal name); expected a complete SD VAE`,
      );
    }
  }
}

/** Load a `--vae` file or folder as the VAE of a model with `config`, stored as `dtype`. */
export async function loadVaeFile(
  path: string,
  config: SDConfig,
  dtype: DType = "f32",
): Promise<AutoencoderKL> {
  let file = path;
  if (await isDirectory(path)) {
    const found = await diffusersVaeFile(path);
    if (found === null) {
      throw new LorakitError(
        `${path}: --vae: expected a diffusers VAE folder (vae/${DIFFUSERS_FILES[0]} or ` +
          `${DIFFUSERS_FILES[0]}), found neither`,
      );
    }
    file = found;
  } else if (!(await exists(path))) {
    throw new LorakitError(`${path}: --vae: file not found`);
  }
  const source = await openWeights(file);
  const map = new Map<string, Tensor>();
  try {
    const bound = bindKeys(source, file);
    validate(bound, config, file);
    for (const b of bound) {
      const host = await source.readF32(b.key);
      const t = Tensor.fromArray(host.data, b.shape, "f32");
      if (dtype === "f32") map.set(b.name, t.keep());
      else {
        map.set(b.name, cast(t, dtype).keep());
        t.dispose();
      }
    }
    return new AutoencoderKL(new ModelWeights("vae", dtype, map, file), config.vae);
  } catch (e) {
    for (const t of map.values()) t.dispose();
    throw e;
  } finally {
    source.close();
  }
}
