/**
 * Writing a single-file checkpoint (LDM or SGM) from a plan of its keys: each key's data comes
 * from internal tensors (converted to the save dtype), a synthesised value, or the original
 * file's bytes (extras), one tensor in memory at a time, to a temporary file then renamed.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { LdmTemplate, LdmWritePlan } from "./keymap_ldm.ts";
import { elementCount, transposeBytes } from "./keymap_types.ts";
import { type TensorToWrite, writeSafetensors } from "./safetensors.ts";
import type { FileDType, HostTensor, TensorInfo } from "./tensor_source.ts";

/** kohya's `--save_precision` values. */
export type SavePrecision = "float" | "fp16" | "bf16";

/** What a checkpoint saver reads: tensors in the internal naming. */
export interface InternalTensors {
  names(): string[];
  info(name: string): TensorInfo;
  readF32(name: string): Promise<HostTensor>;
}

const PRECISION: Record<SavePrecision, FileDType> = {
  float: "F32",
  fp16: "F16",
  bf16: "BF16",
};

/** The file dtype of a `--save_precision` value; a one-line error naming the flag otherwise. */
export function saveDtype(precision: SavePrecision): FileDType {
  const dtype = PRECISION[precision];
  if (dtype === undefined) {
    throw new LorakitError(
      `--save_precision: expected "float", "fp16" or "bf16", found "${precision}"`,
    );
  }
  return dtype;
}

/**
 * Writes the planned keys of a single-file checkpoint (LDM or SGM): internal tensors in `dtype`
 * (joined along dim 0, or transposed where the plan says), synthesised ones, and extras copied
 * byte for byte from the template; temporary file, then rename.
 */
export async function writeCheckpointPlans(
  path: string,
  source: InternalTensors,
  plans: readonly LdmWritePlan[],
  template: LdmTemplate,
  dtype: FileDType,
  metadata?: Record<string, string>,
): Promise<void> {
  const byKey = new Map(plans.map((p) => [p.key, p]));
  const produce = async (p: LdmWritePlan): Promise<Float32Array | Uint8Array> => {
    switch (p.kind) {
      case "internal": {
        if (p.transpose) {
          // Stored [in, out] from the internal [out, in] (SDXL's OpenCLIP text_projection).
          const t = await source.readF32(p.names[0]);
          const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
          return new Float32Array(transposeBytes(bytes, p.shape[1], p.shape[0], 4).buffer);
        }
        if (p.names.length === 1) return (await source.readF32(p.names[0])).data;
        const parts = await Promise.all(p.names.map((n) => source.readF32(n)));
        const out = new Float32Array(elementCount(p.shape));
        let at = 0;
        for (const t of parts) {
          out.set(t.data, at);
          at += t.data.length;
        }
        return out;
      }
      case "copy": {
        const of = byKey.get(p.of);
        if (of === undefined || of.kind === "copy") {
          throw new LorakitError(
            `${path}: LDM key '${p.key}' copies '${p.of}', which is not written`,
          );
        }
        return produce(of);
      }
      case "fill":
        return new Float32Array(elementCount(p.shape)).fill(p.value);
      case "raw":
        if (template.readRaw === undefined) {
          throw new LorakitError(
            `${path}: LDM key '${p.key}' has no internal tensor and the template carries no bytes for it`,
          );
        }
        return await template.readRaw(p.key);
    }
  };
  const tensors: TensorToWrite[] = plans.map((p) => ({
    name: p.key,
    dtype: p.kind === "raw" ? p.dtype : dtype,
    shape: p.shape,
    data: () => produce(p),
  }));
  await writeSafetensors(path, tensors, metadata);
}
