/**
 * The shared shape of every weight file lorakit reads: a safetensors file, a PyTorch `.ckpt`, or a
 * folder of them. Readers parse the index up front and read tensor bytes lazily, one tensor at a
 * time, so a multi-gigabyte checkpoint never has to sit in memory whole.
 *
 * @module
 */

/** Element types found in Stable Diffusion weight files. Only f32/f16 reach the GPU. */
export type FileDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL";

/** Index entry of one tensor in a file. */
export interface TensorInfo {
  /** Key as stored in the file. */
  name: string;
  dtype: FileDType;
  /** Dimensions; `[]` for a 0-d scalar such as kohya's `alpha`. */
  shape: number[];
}

/** A decoded tensor on the host. `data` is f32 unless the caller asked to keep another type. */
export interface HostTensor {
  shape: number[];
  /** f32 values (integers and bools are converted to their numeric value). */
  data: Float32Array;
}

/** A readable set of named tensors plus string metadata. */
export interface TensorSource {
  /** Path (or a description) used in error messages. */
  readonly path: string;
  /** `__metadata__` for safetensors; empty for other formats. */
  readonly metadata: Record<string, string>;
  /** All tensors, in file order. */
  list(): TensorInfo[];
  has(name: string): boolean;
  info(name: string): TensorInfo;
  /** Read one tensor and convert it to f32. Throws an error naming the file and key. */
  readF32(name: string): Promise<HostTensor>;
  /** Read one tensor's raw bytes, little-endian, in its stored dtype. */
  readRaw(name: string): Promise<Uint8Array>;
  /** Release file handles. */
  close(): void;
}
