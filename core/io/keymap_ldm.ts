/**
 * A whole LDM single-file checkpoint's key set mapped to the internal naming, and back. The LDM
 * namespaces are `model.diffusion_model.` (U-Net), `first_stage_model.` (VAE) and
 * `cond_stage_model.transformer.` (SD1 CLIP) or `cond_stage_model.model.` (SD2 OpenCLIP).
 * Keys outside them (`betas`, `alphas_cumprod*`, `model_ema.*`, ...) are extras: no internal
 * name, carried through on save. A key inside a namespace that is not part of its layout is an
 * error naming it.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { SDConfig } from "../model_config/config.ts";
import type { TensorInfo } from "./tensor_source.ts";
import { elementCount, type MapEntry, shapeText } from "./keymap_types.ts";
import { inferUnetLayersPerBlock, unetKeyToDiffusers, unetKeyToLdm } from "./keymap_unet.ts";
import {
  inferVaeLevels,
  vaeConvToLinearShape,
  vaeKeyToDiffusers,
  vaeKeyToLdm,
} from "./keymap_vae.ts";
import {
  clipHfToLdm,
  clipKeyToHf,
  hfToOpenClip,
  openClipKeyToHf,
  openClipLastBlock,
  pushTextEntries,
  type TextMapped,
} from "./keymap_text.ts";

/** LDM key prefixes of the three model parts. */
export const LDM_PREFIX = {
  unet: "model.diffusion_model.",
  vae: "first_stage_model.",
  clip: "cond_stage_model.transformer.",
  openClip: "cond_stage_model.model.",
} as const;

/** Internal name prefixes of the three model parts. */
export const INTERNAL_PREFIX = { unet: "unet.", vae: "vae.", text: "text_encoder." } as const;

/** The result of mapping an LDM key set. */
export interface LdmMapping {
  /** Internal tensors, in the order of the stored keys. */
  entries: MapEntry[];
  /** Stored tensors without an internal name. */
  extras: TensorInfo[];
  /** True for an OpenCLIP (SD2) text encoder, false for CLIP (SD1), undefined when absent. */
  layoutV2: boolean | undefined;
}

function unknown(where: string, key: string, part: string): LorakitError {
  return new LorakitError(
    `${where}: key '${key}' is in the ${part} namespace but is not part of the SD 1.x/2.x ${part} ` +
      `layout; expected only the modules kohya's model_util converts (is this an SDXL, ` +
      `ControlNet or otherwise modified model?)`,
  );
}

/** Maps every stored key of an LDM checkpoint; see the module doc for extras and errors. */
export function mapLdmKeys(infos: readonly TensorInfo[], where: string): LdmMapping {
  const rel = (p: string) =>
    infos.filter((t) => t.name.startsWith(p)).map((t) => t.name.slice(p.length));
  if (infos.some((t) => t.name.startsWith("conditioner.embedders."))) {
    throw new LorakitError(
      `${where}: expected an SD 1.x/2.x checkpoint, found SDXL keys ('conditioner.embedders.*'); ` +
        `SDXL is not supported`,
    );
  }
  const unetKeys = rel(LDM_PREFIX.unet);
  const vaeKeys = rel(LDM_PREFIX.vae);
  const clipKeys = rel(LDM_PREFIX.clip);
  const ocKeys = rel(LDM_PREFIX.openClip);
  if (clipKeys.length > 0 && ocKeys.length > 0) {
    throw new LorakitError(
      `${where}: expected one text encoder, found both SD1 CLIP ('${LDM_PREFIX.clip}*') and ` +
        `SD2 OpenCLIP ('${LDM_PREFIX.openClip}*') keys`,
    );
  }
  const layersPerBlock = unetKeys.length > 0 ? inferUnetLayersPerBlock(unetKeys, where) : 2;
  const vaeLevels = vaeKeys.length > 0 ? inferVaeLevels(vaeKeys, where) : 4;
  const lastBlock = openClipLastBlock(ocKeys);
  const entries: MapEntry[] = [];
  const extras: TensorInfo[] = [];
  for (const t of infos) {
    const key = t.name;
    if (key.startsWith(LDM_PREFIX.unet)) {
      const name = unetKeyToDiffusers(key.slice(LDM_PREFIX.unet.length), layersPerBlock);
      if (name === null) throw unknown(where, key, "U-Net");
      entries.push({ name: INTERNAL_PREFIX.unet + name, key, shape: [...t.shape] });
    } else if (key.startsWith(LDM_PREFIX.vae)) {
      const m = vaeKeyToDiffusers(key.slice(LDM_PREFIX.vae.length), vaeLevels);
      if (m === null) throw unknown(where, key, "VAE");
      const shape = m.convLinear ? vaeConvToLinearShape(t.shape, key, where) : [...t.shape];
      entries.push({ name: INTERNAL_PREFIX.vae + m.name, key, shape });
    } else if (key.startsWith("cond_stage_model.")) {
      const m: TextMapped = key.startsWith(LDM_PREFIX.clip)
        ? clipKeyToHf(key.slice(LDM_PREFIX.clip.length))
        : key.startsWith(LDM_PREFIX.openClip)
        ? openClipKeyToHf(key.slice(LDM_PREFIX.openClip.length), lastBlock)
        : { kind: "unknown" };
      if (m.kind === "unknown") throw unknown(where, key, "text encoder");
      if (m.kind === "extra") {
        extras.push(t);
        continue;
      }
      pushTextEntries(entries, m, INTERNAL_PREFIX.text, t, where);
    } else {
      extras.push(t);
    }
  }
  return {
    entries,
    extras,
    layoutV2: ocKeys.length > 0 ? true : clipKeys.length > 0 ? false : undefined,
  };
}

/** An LDM key to write: its stored info, or how to synthesise a key no internal name gives. */
export interface LdmTemplateKey extends TensorInfo {
  /** Write the same data as this other template key (kohya's copy of SD2's unused block). */
  copyOf?: string;
  /** Fill every element with this value (kohya's dummy `text_projection`, `logit_scale`). */
  fill?: number;
}

/** The LDM key set a saved checkpoint gets, plus the bytes of its extras when they are known. */
export interface LdmTemplate {
  keys: LdmTemplateKey[];
  /** Raw stored bytes of an extra key (in its template dtype), e.g. from the original file. */
  readRaw?(key: string): Promise<Uint8Array>;
}

/**
 * LDM keys for the internal tensors of `config` when there is no original file to copy the key
 * set from (kohya's `save_stable_diffusion_checkpoint` without `ckpt_path`): SD1 CLIP under
 * `cond_stage_model.transformer.`, SD2 OpenCLIP with q,k,v joined, plus kohya's dummy last block
 * (a copy of the last used one), `text_projection` (ones) and `logit_scale` (1); the VAE's
 * attention as 1x1 convs; SD2 `proj_in`/`proj_out` linear (kohya's `conv_transformer_to_linear`).
 */
export function ldmKeysFor(internal: readonly TensorInfo[], config: SDConfig): LdmTemplateKey[] {
  const layout = {
    layersPerBlock: config.unet.layersPerBlock,
    upHasAttention: config.unet.upBlockTypes.map((t) => t === "CrossAttnUpBlock2D"),
  };
  const levels = config.vae.blockOutChannels.length;
  const out: LdmTemplateKey[] = [];
  const seen = new Map<string, LdmTemplateKey>();
  const fail = (name: string) =>
    new LorakitError(`internal tensor '${name}': has no LDM key in the SD 1.x/2.x layout`);
  for (const t of internal) {
    const { name } = t;
    let key: string | null = null;
    let shape = [...t.shape];
    if (name.startsWith(INTERNAL_PREFIX.unet)) {
      const k = unetKeyToLdm(name.slice(INTERNAL_PREFIX.unet.length), layout);
      key = k === null ? null : LDM_PREFIX.unet + k;
      const proj = /\.proj_(in|out)\.weight$/.test(name);
      if (proj && config.v2 && shape.length === 4) shape = shape.slice(0, 2);
    } else if (name.startsWith(INTERNAL_PREFIX.vae)) {
      const m = vaeKeyToLdm(name.slice(INTERNAL_PREFIX.vae.length), levels);
      key = m === null ? null : LDM_PREFIX.vae + m.name;
      if (m?.convLinear && shape.length === 2) shape = [...shape, 1, 1];
    } else if (name.startsWith(INTERNAL_PREFIX.text)) {
      const hf = name.slice(INTERNAL_PREFIX.text.length);
      if (!config.v2) {
        const k = clipHfToLdm(hf);
        key = k === null ? null : LDM_PREFIX.clip + k;
      } else {
        const m = hfToOpenClip(hf);
        if (m === null) throw fail(name);
        key = LDM_PREFIX.openClip + m.key;
        if (m.part !== undefined) {
          const prev = seen.get(key);
          if (prev !== undefined) {
            prev.shape[0] += shape[0];
            continue;
          }
        }
      }
    }
    if (key === null) throw fail(name);
    const entry: LdmTemplateKey = { name: key, dtype: t.dtype, shape };
    seen.set(key, entry);
    out.push(entry);
  }
  if (config.v2) out.push(...openClipDummies(out, config));
  return out;
}

/** kohya's `make_dummy_weights`: the unused last block, `text_projection`, `logit_scale`. */
function openClipDummies(keys: readonly LdmTemplateKey[], config: SDConfig): LdmTemplateKey[] {
  const used = config.textEncoder.numLayers;
  const from = `${LDM_PREFIX.openClip}transformer.resblocks.${used - 1}.`;
  const to = `${LDM_PREFIX.openClip}transformer.resblocks.${used}.`;
  const w = config.textEncoder.hiddenSize;
  const dtype = keys[0]?.dtype ?? "F32";
  return [
    ...keys.filter((k) => k.name.startsWith(from)).map((k) => ({
      name: to + k.name.slice(from.length),
      dtype: k.dtype,
      shape: [...k.shape],
      copyOf: k.name,
    })),
    { name: `${LDM_PREFIX.openClip}text_projection`, dtype, shape: [w, w], fill: 1 },
    { name: `${LDM_PREFIX.openClip}logit_scale`, dtype, shape: [], fill: 1 },
  ];
}

/** Where the data of one LDM key to write comes from. */
export type LdmWritePlan =
  /**
   * Internal tensors joined along dim 0 (one name, or q,k,v), written with the template shape;
   * `transpose`: one 2-D internal tensor stored transposed (SDXL's OpenCLIP text_projection).
   */
  | { key: string; shape: number[]; kind: "internal"; names: string[]; transpose?: boolean }
  | { key: string; shape: number[]; kind: "copy"; of: string }
  | { key: string; shape: number[]; kind: "fill"; value: number }
  /** An extra: raw bytes from the template, in `dtype`. */
  | { key: string; shape: number[]; kind: "raw"; dtype: TensorInfo["dtype"] };

/**
 * For each key of `template`, where its data comes from: the internal tensors whose names the
 * key maps to (checked to exist in `have`, with the element count the template shape needs), a
 * synthesised value, or the template's raw bytes for extras.
 */
export function planLdmWrite(
  template: readonly LdmTemplateKey[],
  have: (name: string) => TensorInfo | undefined,
  where: string,
): LdmWritePlan[] {
  return planWriteFromEntries(template, mapLdmKeys(template, where).entries, have, where);
}

/**
 * {@link planLdmWrite} for any layout: `entries` are the template's keys mapped to internal
 * names (by `mapLdmKeys`, or `mapSdxlKeys` for an SGM file, whose `transpose` entries are
 * planned as a transposed write).
 */
export function planWriteFromEntries(
  template: readonly LdmTemplateKey[],
  entries: readonly MapEntry[],
  have: (name: string) => TensorInfo | undefined,
  where: string,
): LdmWritePlan[] {
  const byKey = new Map<string, MapEntry[]>();
  for (const e of entries) {
    const list = byKey.get(e.key) ?? [];
    list.push(e);
    byKey.set(e.key, list);
  }
  return template.map((t): LdmWritePlan => {
    const shape = [...t.shape];
    if (t.copyOf !== undefined) return { key: t.name, shape, kind: "copy", of: t.copyOf };
    if (t.fill !== undefined) return { key: t.name, shape, kind: "fill", value: t.fill };
    const list = byKey.get(t.name);
    if (list === undefined) return { key: t.name, shape, kind: "raw", dtype: t.dtype };
    list.sort((a, b) => (a.part ?? 0) - (b.part ?? 0));
    let count = 0;
    for (const e of list) {
      const info = have(e.name);
      if (info === undefined) {
        throw new LorakitError(
          `${where}: LDM key '${t.name}' needs tensor '${e.name}', which the model being saved lacks`,
        );
      }
      count += elementCount(info.shape);
    }
    if (count !== elementCount(shape)) {
      throw new LorakitError(
        `${where}: LDM key '${t.name}' has shape ${shapeText(shape)} (${elementCount(shape)} ` +
          `elements), but '${list.map((e) => e.name).join("', '")}' hold ${count}`,
      );
    }
    const names = list.map((e) => e.name);
    if (list.length === 1 && list[0].transpose) {
      return { key: t.name, shape, kind: "internal", names, transpose: true };
    }
    return { key: t.name, shape, kind: "internal", names };
  });
}
