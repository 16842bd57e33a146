/**
 * Saving an SDXL model as the SGM single-file `.safetensors` A1111, ComfyUI and kohya read (the
 * layout `keymap_sdxl.ts` maps from): with the original file as template, every stored key is
 * written under its original name and shape, model tensors in the save precision (OpenCLIP's
 * q,k,v joined again, `text_projection` back in OpenCLIP's `P = W^T` layout), and the keys
 * without an internal name (`logit_scale`, CLIP-L's int64 `position_ids`, anything else) copied
 * byte for byte in their stored dtype. Without a template (a diffusers folder), the key set is
 * built from the internal names, plus OpenCLIP's `logit_scale` = ln 100 as SGM files hold it.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { SDXLConfig } from "../model_config/config.ts";
import { type InternalTensors, saveDtype, type SavePrecision } from "./checkpoint_write.ts";
import { writeCheckpointPlans } from "./checkpoint_write.ts";
import {
  INTERNAL_PREFIX,
  LDM_PREFIX,
  type LdmTemplate,
  type LdmTemplateKey,
  planWriteFromEntries,
} from "./keymap_ldm.ts";
import { mapSdxlKeys, SGM_PREFIX, TEXT2_PREFIX } from "./keymap_sdxl.ts";
import { clipHfToLdm, hfToOpenClip } from "./keymap_text.ts";
import { unetKeyToLdm } from "./keymap_unet.ts";
import { vaeKeyToLdm } from "./keymap_vae.ts";
import type { TensorInfo } from "./tensor_source.ts";

/** Options of {@link saveSdxlCheckpoint}. */
export interface SaveSdxlOptions {
  /** dtype of the model tensors (kohya's `--save_precision`); extras keep their stored dtype. */
  savePrecision: SavePrecision;
  /** The original file's key set and extras' bytes (`loaded.ldmTemplate()`); see the module doc. */
  template?: LdmTemplate;
  metadata?: Record<string, string>;
}

/** diffusers' `add_embedding` -> SGM's `label_emb` (relative to the U-Net). */
const ADD_EMBEDDING: Record<string, string> = {
  "add_embedding.linear_1": "label_emb.0.0",
  "add_embedding.linear_2": "label_emb.0.2",
};

/** SGM keys for the internal tensors of an SDXL model (no original file to copy them from). */
export function sgmKeysFor(internal: readonly TensorInfo[], config: SDXLConfig): LdmTemplateKey[] {
  const layout = {
    layersPerBlock: config.unet.layersPerBlock,
    upHasAttention: config.unet.upBlockTypes.map((t) => t === "CrossAttnUpBlock2D"),
  };
  const levels = config.vae.blockOutChannels.length;
  const out: LdmTemplateKey[] = [];
  const seen = new Map<string, LdmTemplateKey>();
  for (const t of internal) {
    const { name } = t;
    let key: string | null = null;
    let shape = [...t.shape];
    if (name.startsWith(INTERNAL_PREFIX.unet)) {
      const rel = name.slice(INTERNAL_PREFIX.unet.length);
      const m = /^(add_embedding\.linear_[12])\.(weight|bias)$/.exec(rel);
      const k = m !== null ? `${ADD_EMBEDDING[m[1]]}.${m[2]}` : unetKeyToLdm(rel, layout);
      key = k === null ? null : LDM_PREFIX.unet + k;
    } else if (name.startsWith(INTERNAL_PREFIX.vae)) {
      const m = vaeKeyToLdm(name.slice(INTERNAL_PREFIX.vae.length), levels);
      key = m === null ? null : LDM_PREFIX.vae + m.name;
      if (m?.convLinear && shape.length === 2) shape = [...shape, 1, 1];
    } else if (name.startsWith(TEXT2_PREFIX)) {
      const hf = name.slice(TEXT2_PREFIX.length);
      if (hf === "text_projection.weight") {
        key = `${SGM_PREFIX.openClip}text_projection`;
        shape = [shape[1], shape[0]];
      } else {
        const m = hfToOpenClip(hf);
        if (m !== null) {
          key = SGM_PREFIX.openClip + m.key;
          const prev = m.part !== undefined ? seen.get(key) : undefined;
          if (prev !== undefined) {
            prev.shape[0] += shape[0];
            continue;
          }
        }
      }
    } else if (name.startsWith(INTERNAL_PREFIX.text)) {
      const k = clipHfToLdm(name.slice(INTERNAL_PREFIX.text.length));
      key = k === null ? null : SGM_PREFIX.clip + k;
    }
    if (key === null) {
      throw new LorakitError(`internal tensor '${name}': has no key in the SDXL (SGM) layout`);
    }
    const entry: LdmTemplateKey = { name: key, dtype: t.dtype, shape };
    seen.set(key, entry);
    out.push(entry);
  }
  const dtype = out[0]?.dtype ?? "F32";
  out.push({ name: `${SGM_PREFIX.openClip}logit_scale`, dtype, shape: [], fill: Math.log(100) });
  return out;
}

/**
 * Writes an SDXL model as an SGM single-file `.safetensors` (one tensor in memory at a time;
 * temporary file, then rename); see the module doc for the key set.
 */
export async function saveSdxlCheckpoint(
  path: string,
  source: InternalTensors,
  config: SDXLConfig,
  opts: SaveSdxlOptions,
): Promise<void> {
  const dtype = saveDtype(opts.savePrecision);
  const names = new Set(source.names());
  const template = opts.template ??
    { keys: sgmKeysFor([...names].map((n) => source.info(n)), config) };
  const entries = mapSdxlKeys(template.keys, path).entries;
  const plans = planWriteFromEntries(
    template.keys,
    entries,
    (n) => (names.has(n) ? source.info(n) : undefined),
    path,
  );
  await writeCheckpointPlans(path, source, plans, template, dtype, opts.metadata);
}
