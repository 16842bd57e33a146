/**
 * An SDXL single file's key set (Stability's SGM layout, as A1111, ComfyUI and kohya read it)
 * mapped to the internal naming:
 * - `model.diffusion_model.*`: the LDM U-Net map of `keymap_unet.ts` (3 levels, the last without
 *   a downsampler, level 0 without attention), plus `label_emb.0.0`/`label_emb.0.2` ->
 *   `add_embedding.linear_1`/`linear_2` (diffusers' names);
 * - `first_stage_model.*`: the VAE map of `keymap_vae.ts`;
 * - `conditioner.embedders.0.transformer.*`: CLIP-L in Hugging Face names -> `text_encoder.*`;
 * - `conditioner.embedders.1.model.*`: OpenCLIP bigG -> `text_encoder_2.*` in Hugging Face
 *   `CLIPTextModelWithProjection` names, every block used (unlike SD2, whose last block is
 *   dropped: SDXL's pooled output comes from the last block), q,k,v split from `in_proj_*`,
 *   and `text_projection` -> `text_projection.weight` **transposed**: OpenCLIP stores `P`
 *   (in x out) and computes `pooled = x @ P`; the internal tensor is the Linear weight
 *   `W = P^T` (out x in) of diffusers' `text_encoder_2`, as diffusers' and ComfyUI's loaders
 *   do. (kohya's loader skips this transpose, so its pooled output differs from the model's
 *   for a non-symmetric projection; lorakit follows the real file layout.) `logit_scale` and
 *   `position_ids` are extras.
 * Keys outside these namespaces are extras; a key inside one that is not part of its layout is
 * an error naming it.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { TensorInfo } from "./tensor_source.ts";
import { type MapEntry, shapeText } from "./keymap_types.ts";
import { inferUnetLayersPerBlock, unetKeyToDiffusers } from "./keymap_unet.ts";
import { inferVaeLevels, vaeConvToLinearShape, vaeKeyToDiffusers } from "./keymap_vae.ts";
import { clipKeyToHf, openClipKeyToHf, pushTextEntries } from "./keymap_text.ts";
import { INTERNAL_PREFIX, LDM_PREFIX } from "./keymap_ldm.ts";

/** SGM key prefixes of the two text embedders. */
export const SGM_PREFIX = {
  clip: "conditioner.embedders.0.transformer.",
  openClip: "conditioner.embedders.1.model.",
} as const;

/** Internal name prefix of SDXL's second text encoder. */
export const TEXT2_PREFIX = "text_encoder_2.";

/** True when a key set is SDXL's (its second text embedder or the U-Net's `label_emb`). */
export function isSdxlKeySet(names: Iterable<string>): boolean {
  for (const n of names) {
    if (n.startsWith("conditioner.embedders.1.") || n.startsWith(`${LDM_PREFIX.unet}label_emb.`)) {
      return true;
    }
  }
  return false;
}

/** The result of mapping an SGM key set. */
export interface SdxlMapping {
  entries: MapEntry[];
  extras: TensorInfo[];
}

const LABEL_EMB: Record<string, string> = {
  "label_emb.0.0": "add_embedding.linear_1",
  "label_emb.0.2": "add_embedding.linear_2",
};

function unknown(where: string, key: string, part: string): LorakitError {
  return new LorakitError(
    `${where}: key '${key}' is in the ${part} namespace but is not part of the SDXL ${part} ` +
      `layout (is this a ControlNet, refiner or otherwise modified model?)`,
  );
}

function unetName(rel: string, layersPerBlock: number): string | null {
  const m = /^(label_emb\.0\.[02])\.(weight|bias)$/.exec(rel);
  if (m !== null) return `${LABEL_EMB[m[1]]}.${m[2]}`;
  return unetKeyToDiffusers(rel, layersPerBlock);
}

/** Maps every stored key of an SGM (SDXL) single file; see the module doc. */
export function mapSdxlKeys(infos: readonly TensorInfo[], where: string): SdxlMapping {
  const rel = (p: string) =>
    infos.filter((t) => t.name.startsWith(p)).map((t) => t.name.slice(p.length));
  const unetKeys = rel(LDM_PREFIX.unet);
  const vaeKeys = rel(LDM_PREFIX.vae);
  const layersPerBlock = unetKeys.length > 0 ? inferUnetLayersPerBlock(unetKeys, where) : 2;
  const vaeLevels = vaeKeys.length > 0 ? inferVaeLevels(vaeKeys, where) : 4;
  const entries: MapEntry[] = [];
  const extras: TensorInfo[] = [];
  for (const t of infos) {
    const key = t.name;
    if (key.startsWith(LDM_PREFIX.unet)) {
      const name = unetName(key.slice(LDM_PREFIX.unet.length), layersPerBlock);
      if (name === null) throw unknown(where, key, "U-Net");
      entries.push({ name: INTERNAL_PREFIX.unet + name, key, shape: [...t.shape] });
    } else if (key.startsWith(LDM_PREFIX.vae)) {
      const m = vaeKeyToDiffusers(key.slice(LDM_PREFIX.vae.length), vaeLevels);
      if (m === null) throw unknown(where, key, "VAE");
      const shape = m.convLinear ? vaeConvToLinearShape(t.shape, key, where) : [...t.shape];
      entries.push({ name: INTERNAL_PREFIX.vae + m.name, key, shape });
    } else if (key.startsWith(SGM_PREFIX.clip)) {
      const m = clipKeyToHf(key.slice(SGM_PREFIX.clip.length));
      if (m.kind === "unknown") throw unknown(where, key, "text encoder 1");
      if (m.kind === "extra") extras.push(t);
      else pushTextEntries(entries, m, INTERNAL_PREFIX.text, t, where);
    } else if (key.startsWith(SGM_PREFIX.openClip)) {
      const r = key.slice(SGM_PREFIX.openClip.length);
      if (r === "text_projection") {
        if (t.shape.length !== 2) {
          throw new LorakitError(
            `${where}: '${key}': expected a 2-D projection, found ${shapeText(t.shape)}`,
          );
        }
        // Stored P (in x out); internal W = P^T (out x in), see the module doc.
        entries.push({
          name: `${TEXT2_PREFIX}text_projection.weight`,
          key,
          shape: [t.shape[1], t.shape[0]],
          transpose: true,
        });
        continue;
      }
      // -1: no block is SD2's unused last one; SDXL runs them all.
      const m = openClipKeyToHf(r, -1);
      if (m.kind === "unknown") throw unknown(where, key, "text encoder 2");
      if (m.kind === "extra") extras.push(t);
      else pushTextEntries(entries, m, TEXT2_PREFIX, t, where);
    } else if (key.startsWith("conditioner.")) {
      throw unknown(where, key, "conditioner");
    } else {
      extras.push(t);
    }
  }
  return { entries, extras };
}
