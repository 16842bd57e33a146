/**
 * kohya LoRA files as PyTorch checkpoints (`--save_model_as ckpt|pt`): the same keys and dtypes
 * as the `.safetensors` file (`<prefix>.lora_down.weight`, `.lora_up.weight`, a 0-d `.alpha`),
 * written as kohya does with `torch.save(state_dict, file)`: a flat dict, no metadata.
 *
 * @module
 */
import { type CkptDType, writeTorchCheckpoint } from "../io/ckpt_write.ts";
import { loraTensorsToWrite, type LoraWeightsToSave } from "./lora_file.ts";

/** Options of {@link saveLoraCheckpoint}. */
export interface SaveLoraCheckpointOptions {
  /** `float`, `fp16` (default) or `bf16`; applies to every tensor, alpha included. */
  precision?: "float" | "fp16" | "bf16";
}

/** Write a kohya LoRA as a `torch.save` checkpoint (`.ckpt` or `.pt`), atomically. */
export async function saveLoraCheckpoint(
  path: string,
  modules: readonly LoraWeightsToSave[],
  options: SaveLoraCheckpointOptions = {},
): Promise<void> {
  const tensors = loraTensorsToWrite(path, modules, options.precision ?? "fp16");
  await writeTorchCheckpoint(
    path,
    tensors.map((t) => ({
      name: t.name,
      dtype: t.dtype as CkptDType,
      shape: t.shape,
      data: t.data,
    })),
  );
}
