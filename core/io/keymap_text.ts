/**
 * Text encoder key maps. Internally both SD versions use Hugging Face `CLIPTextModel` names
 * (`text_model.encoder.layers.N.self_attn.q_proj.weight`, ...), which kohya's `lora_te_*` names
 * are built from.
 *
 * - SD 1.x stores HF CLIP under `cond_stage_model.transformer.` (older files omit `text_model.`;
 *   kohya's `load_checkpoint_with_text_encoder_conversion` accepts both).
 * - SD 2.x stores OpenCLIP under `cond_stage_model.model.`, as kohya's
 *   `convert_ldm_clip_checkpoint_v2` reads it: `attn.in_proj_weight/bias` (q,k,v stacked along
 *   dim 0) split into three, and the last resblock, `text_projection` and `logit_scale` are not
 *   part of the model (SD2 uses the penultimate block's output), so they are extras.
 *
 * Names are relative to those prefixes and to the text encoder module.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { TensorInfo } from "./tensor_source.ts";
import { type MapEntry, parseIndex, shapeText } from "./keymap_types.ts";

/** Result of mapping one stored key. */
export type TextMapped =
  /** One internal name, or three for a fused q,k,v tensor (chunks 0,1,2 along dim 0). */
  | { kind: "model"; names: string[] }
  /** Stored but not part of the model (position_ids, SD2's unused block, text_projection...). */
  | { kind: "extra" }
  /** Not a key of this layout. */
  | { kind: "unknown" };

const OLD_HF_ROOTS = ["embeddings.", "encoder.", "final_layer_norm."];

/** SD1 HF CLIP key (relative to `cond_stage_model.transformer.`) -> internal HF name. */
export function clipKeyToHf(key: string): TextMapped {
  // position_ids is a buffer (an arange), not a weight; kohya drops it when loading.
  if (key.endsWith("embeddings.position_ids")) return { kind: "extra" };
  if (key.startsWith("text_model.")) return { kind: "model", names: [key] };
  if (OLD_HF_ROOTS.some((r) => key.startsWith(r))) {
    return { kind: "model", names: [`text_model.${key}`] };
  }
  return { kind: "unknown" };
}

/** Internal HF name -> SD1 key relative to `cond_stage_model.transformer.` (same name). */
export function clipHfToLdm(name: string): string | null {
  return name.startsWith("text_model.") ? name : null;
}

/** OpenCLIP resblock sub-modules -> HF names (kohya's `convert_key`). */
const BLOCK_OC_TO_HF: Record<string, string> = {
  "ln_1": "layer_norm1",
  "ln_2": "layer_norm2",
  "mlp.c_fc": "mlp.fc1",
  "mlp.c_proj": "mlp.fc2",
  "attn.out_proj": "self_attn.out_proj",
};
const BLOCK_HF_TO_OC: Record<string, string> = Object.fromEntries(
  Object.entries(BLOCK_OC_TO_HF).map(([a, b]) => [b, a]),
);

/** Keys beside the resblocks, OpenCLIP -> HF. */
const ROOT_OC_TO_HF: Record<string, string> = {
  "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
  "positional_embedding": "text_model.embeddings.position_embedding.weight",
  "ln_final.weight": "text_model.final_layer_norm.weight",
  "ln_final.bias": "text_model.final_layer_norm.bias",
};
const ROOT_HF_TO_OC: Record<string, string> = Object.fromEntries(
  Object.entries(ROOT_OC_TO_HF).map(([a, b]) => [b, a]),
);

/** OpenCLIP keys stored in SD2 files that the text model does not use. */
const OC_EXTRAS = new Set(["text_projection", "logit_scale"]);

/**
 * SD2 OpenCLIP key (relative to `cond_stage_model.model.`) -> internal HF names. `lastBlock` is
 * the index of the stored block SD2 never runs (the highest; 23 at full size).
 */
export function openClipKeyToHf(key: string, lastBlock: number): TextMapped {
  const root = ROOT_OC_TO_HF[key];
  if (root !== undefined) return { kind: "model", names: [root] };
  if (OC_EXTRAS.has(key) || key.endsWith("position_ids")) return { kind: "extra" };
  const seg = key.split(".");
  if (seg[0] !== "transformer" || seg[1] !== "resblocks") return { kind: "unknown" };
  const n = parseIndex(seg[2]);
  if (n === null || seg.length < 5) return { kind: "unknown" };
  const rest = seg.slice(3);
  const param = rest[rest.length - 1];
  const module = rest.slice(0, -1).join(".");
  const fused = module === "attn" && (param === "in_proj_weight" || param === "in_proj_bias");
  if (
    !fused && (BLOCK_OC_TO_HF[module] === undefined || (param !== "weight" && param !== "bias"))
  ) {
    return { kind: "unknown" };
  }
  if (n === lastBlock) return { kind: "extra" };
  const prefix = `text_model.encoder.layers.${n}`;
  if (fused) {
    const p = param === "in_proj_weight" ? "weight" : "bias";
    return {
      kind: "model",
      names: ["q", "k", "v"].map((x) => `${prefix}.self_attn.${x}_proj.${p}`),
    };
  }
  return { kind: "model", names: [`${prefix}.${BLOCK_OC_TO_HF[module]}.${param}`] };
}

/**
 * Internal HF name -> SD2 OpenCLIP key (relative to `cond_stage_model.model.`), with the chunk
 * index for q/k/v (which join into one `in_proj_*` tensor). Null when not an SD2 name.
 */
export function hfToOpenClip(name: string): { key: string; part?: number } | null {
  const root = ROOT_HF_TO_OC[name];
  if (root !== undefined) return { key: root };
  const m = /^text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  if (m === null) return null;
  const [, n, module, param] = m;
  const qkv = /^self_attn\.([qkv])_proj$/.exec(module);
  if (qkv !== null) {
    return {
      key: `transformer.resblocks.${n}.attn.in_proj_${param}`,
      part: "qkv".indexOf(qkv[1]),
    };
  }
  const oc = BLOCK_HF_TO_OC[module];
  return oc === undefined ? null : { key: `transformer.resblocks.${n}.${oc}.${param}` };
}

/** Highest OpenCLIP resblock index among the keys (relative to `cond_stage_model.model.`). */
export function openClipLastBlock(keys: Iterable<string>): number {
  let max = -1;
  for (const key of keys) {
    const m = /^transformer\.resblocks\.(\d+)\./.exec(key);
    if (m) max = Math.max(max, Number(m[1]));
  }
  return max;
}

/** Pushes the entries of one text-encoder key (three for a fused q,k,v tensor). */
export function pushTextEntries(
  out: MapEntry[],
  m: TextMapped & { kind: "model" },
  prefix: string,
  t: TensorInfo,
  where: string,
): void {
  if (m.names.length === 1) {
    out.push({ name: prefix + m.names[0], key: t.name, shape: [...t.shape] });
    return;
  }
  const parts = m.names.length;
  if (t.shape.length === 0 || t.shape[0] % parts !== 0) {
    throw new LorakitError(
      `${where}: '${t.name}': expected q,k,v stacked along dim 0 (a multiple of ${parts} rows), ` +
        `found ${shapeText(t.shape)}`,
    );
  }
  const shape = [t.shape[0] / parts, ...t.shape.slice(1)];
  m.names.forEach((n, part) => out.push({ name: prefix + n, key: t.name, shape, part, parts }));
}
