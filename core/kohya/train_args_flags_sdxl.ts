/**
 * The flags sdxl_train_network adds to train_network's (kohya's
 * `sdxl_train_util.add_sdxl_training_arguments`).
 *
 * @module
 */
import type { FlagSpec } from "./train_args_types.ts";

// deno-fmt-ignore
export const SDXL_FLAGS = [
  { name: "cache_text_encoder_outputs", type: "bool", default: false, help: "encode every caption once before training (needs --network_train_unet_only and captions without random changes)" },
  { name: "cache_text_encoder_outputs_to_disk", type: "bool", default: false, help: "also keep the text encoder outputs in files beside the images (turns --cache_text_encoder_outputs on)" },
  { name: "disable_mmap_load_safetensors", type: "bool", default: false, help: "read safetensors without mmap", support: "noop", note: "lorakit reads checkpoints in slices, never through mmap" },
] as const satisfies readonly FlagSpec[];
