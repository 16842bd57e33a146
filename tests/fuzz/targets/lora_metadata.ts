/**
 * LoRA files as they are loaded: the safetensors header and `__metadata__` (kohya's `ss_*` keys,
 * `ss_network_args` JSON, `modelspec.*`), then `loraFileFromSource` (key grouping, factor shapes,
 * alpha, DyLoRA unit, SD version from metadata or shapes) and a read of every module.
 * Structural edits rewrite a valid file with mutated metadata values or tensor shapes.
 *
 * @module
 */
import { parseSafetensorsBytes, serializeSafetensors } from "../../../core/io/safetensors.ts";
import type { FileDType } from "../../../core/io/tensor_source.ts";
import { loraFileFromSource } from "../../../core/lora/lora_file.ts";
import { mutateBytes } from "../mutate_bytes.ts";
import { mutateText } from "../mutate_text.ts";
import type { Rng } from "../rng.ts";
import type { FuzzTarget, Seed } from "../target.ts";

interface Tensor {
  name: string;
  dtype: FileDType;
  shape: number[];
}

interface Recipe {
  tensors: Tensor[];
  metadata: Record<string, string>;
}

const recipes = new WeakMap<Uint8Array, Recipe>();

function module(prefix: string, rank: number, inF: number, outF: number, conv?: number): Tensor[] {
  const down = conv ? [rank, inF, conv, conv] : [rank, inF];
  const up = conv ? [outF, rank, 1, 1] : [outF, rank];
  return [
    { name: `${prefix}.lora_down.weight`, dtype: "F16", shape: down },
    { name: `${prefix}.lora_up.weight`, dtype: "F16", shape: up },
    { name: `${prefix}.alpha`, dtype: "F32", shape: [] },
  ];
}

const TENSORS: Tensor[] = [
  ...module("lora_te_text_model_encoder_layers_0_self_attn_q_proj", 2, 8, 8),
  ...module("lora_unet_down_blocks_0_attentions_0_proj_in", 2, 4, 4, 1),
  ...module("lora_unet_down_blocks_0_resnets_0_conv1", 2, 4, 4, 3),
];

const METADATA: Record<string, string>[] = [
  {
    ss_network_module: "networks.lora",
    ss_network_dim: "2",
    ss_network_alpha: "1.0",
    ss_base_model_version: "sd_v1",
    ss_network_args: JSON.stringify({ conv_dim: "2", conv_alpha: "1" }),
    ss_tag_frequency: JSON.stringify({ "10_dog": { dog: 12, "sks dog": 3 } }),
    ss_dataset_dirs: JSON.stringify({ "10_dog": { n_repeats: 10, img_count: 12 } }),
    ss_training_comment: "None",
    "modelspec.architecture": "stable-diffusion-v1/lora",
    "modelspec.title": "dog",
    "modelspec.resolution": "512x512",
  },
  {
    ss_network_module: "networks.dylora",
    ss_network_args: JSON.stringify({ unit: "2" }),
    ss_v2: "True",
  },
  {},
];

const elements = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

function build(r: Recipe): Promise<Uint8Array> {
  return serializeSafetensors(
    r.tensors.map((t) => ({
      ...t,
      data: Float32Array.from({ length: elements(t.shape) }, (_, i) => i % 2),
    })),
    r.metadata,
  );
}

const VALUES = [
  "",
  "None",
  "True",
  "networks.dylora",
  "sd_v2_768_v",
  "sd_v1",
  '{"unit": 0}',
  '{"unit": -4}',
  '{"unit": 1e308}',
  '{"unit": "x"}',
  '{"unit": null}',
  '{"unit": [1]}',
  '{"unit": 2.5}',
  "[]",
  "null",
  "{",
  "[".repeat(5000),
];

/** A metadata value or key edited (JSON text mutated, replaced, removed, a key added). */
async function editMetadata(seed: Seed, r: Rng): Promise<Uint8Array> {
  const recipe = recipes.get(seed.bytes);
  if (recipe === undefined) return mutateBytes(seed.bytes, r);
  const metadata = { ...recipe.metadata };
  const keys = Object.keys(metadata);
  const key = keys.length > 0 && r.chance(0.7)
    ? r.pick(keys)
    : r.pick(["ss_network_module", "ss_network_args", "ss_base_model_version", "ss_v2"]);
  const k = r.int(4);
  if (k === 0 && metadata[key] !== undefined) {
    metadata[key] = mutateText(metadata[key], r, {
      tokens: ['"unit": ', "dylora", ",", "{", "}", "[", "]", "1e999", '"\\ud800"'],
      nesting: [["[", "]"], ['{"a":', "}"]],
    });
  } else if (k === 1) metadata[key] = r.pick(VALUES);
  else if (k === 2) delete metadata[key];
  else {metadata[r.pick(["ss_network_args", "ss_network_module", "x".repeat(300), "\u0000"])] = r
      .pick(VALUES);}
  return await build({ tensors: recipe.tensors, metadata });
}

/** A tensor's shape or dtype changed, one dropped, or a foreign key added. */
async function editTensors(seed: Seed, r: Rng): Promise<Uint8Array> {
  const recipe = recipes.get(seed.bytes);
  if (recipe === undefined) return mutateBytes(seed.bytes, r);
  const tensors = recipe.tensors.map((t) => ({ ...t, shape: [...t.shape] }));
  const t = r.pick(tensors);
  switch (r.int(5)) {
    case 0:
      if (t.shape.length > 0) t.shape[r.int(t.shape.length)] = r.pick([0, 1, 3, 5, 9]);
      break;
    case 1:
      t.shape = r.pick([[], [1], [2, 2, 2], [1, 1, 1, 1, 1], [0]]);
      break;
    case 2:
      t.dtype = r.pick(["F32", "BF16", "I64", "U8", "BOOL", "F64"] as FileDType[]);
      break;
    case 3:
      tensors.splice(tensors.indexOf(t), 1);
      break;
    default:
      tensors.push({
        name: r.pick([
          "lora_unet_x.hada_w1_a",
          "lora_te1_x.lora_down.weight",
          "other.weight",
          "lora_unet_y.dora_scale",
          "lora_unet_z",
        ]),
        dtype: "F16",
        shape: [2, 2],
      });
  }
  return await build({ tensors, metadata: recipe.metadata });
}

export const target: FuzzTarget = {
  name: "lora_metadata",
  what: "parseSafetensorsBytes of a LoRA file, loraFileFromSource, readModule of every module",
  boundText: "4 x input + 64 KiB per buffer",
  allocBound: (n) => 4 * n + 65536,
  async seeds() {
    const out: Seed[] = [];
    for (const metadata of METADATA) {
      const recipe = { tensors: TENSORS, metadata };
      const bytes = await build(recipe);
      recipes.set(bytes, recipe);
      out.push({
        bytes,
        layout: { fields: [{ at: 0, size: 8, little: true, name: "header length" }], chunks: [] },
      });
    }
    return out;
  },
  structural: [editMetadata, editMetadata, editTensors],
  async run(input) {
    const st = parseSafetensorsBytes(input, "fuzz_lora.safetensors");
    const lora = await loraFileFromSource(st);
    try {
      if (
        lora.dyloraUnit !== null && !(Number.isInteger(lora.dyloraUnit) && lora.dyloraUnit >= 1)
      ) {
        throw new Error(`DyLoRA unit ${lora.dyloraUnit} accepted`);
      }
      for (const m of lora.modules) {
        const { down, up, alpha } = await lora.readModule(m.prefix);
        if (down.data.length !== elements(m.downShape) || up.data.length !== elements(m.upShape)) {
          throw new Error(`module ${m.prefix} read with the wrong sizes`);
        }
        if (typeof alpha !== "number") throw new Error(`module ${m.prefix} alpha ${alpha}`);
      }
    } finally {
      lora.close();
    }
  },
};
