/**
 * The model hashes kohya writes into LoRA files and A1111 shows ("sd-webui-additional-networks"
 * hashes; `library/train_util.py`):
 * - `sshs_model_hash` = `addnet_hash_safetensors`: SHA-256 of every byte after the header, i.e.
 *   of the tensor data as laid out by the safetensors library;
 * - `sshs_legacy_hash` = `addnet_hash_legacy`: first 8 hex digits of the SHA-256 of the 64 KiB at
 *   byte offset 1 MiB of the file (fewer or no bytes when the file is shorter; an empty read
 *   hashes to `e3b0c442`).
 * `precalculate_safetensors_hashes` computes both on the file re-serialized with only the `ss_*`
 * metadata, so adding other metadata (the hashes themselves, `modelspec.*`) never changes them.
 * The data bytes do not depend on the metadata; the legacy hash does, through the header length.
 *
 * All hashing uses the web-standard `crypto.subtle.digest`, which is one-shot: the hashed bytes
 * are held in memory (fine for LoRA files; the legacy hash of a checkpoint reads only 64 KiB).
 *
 * @module
 */
import { openRead } from "./fs.ts";
import { planSafetensors, type SafetensorsFile, type TensorToWrite } from "./safetensors.ts";

/** Where the legacy hash reads: offset 1 MiB, 64 KiB. */
export const LEGACY_HASH_OFFSET = 0x100000;
/** Length of the legacy hash's window. */
export const LEGACY_HASH_LENGTH = 0x10000;

/** Lowercase hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** kohya's two LoRA hashes. */
export interface KohyaHashes {
  /** `sshs_model_hash`: 64 hex digits. */
  modelHash: string;
  /** `sshs_legacy_hash`: 8 hex digits. */
  legacyHash: string;
}

/** Only the `ss_*` entries: what kohya keeps in the header it hashes. */
export function ssMetadataOnly(metadata: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata).filter(([k]) => k.startsWith("ss_")));
}

/**
 * Both hashes of a safetensors file made of `header` (length prefix included) followed by `data`
 * (every tensor's bytes, in file order, contiguous).
 */
export async function hashesOfLayout(header: Uint8Array, data: Uint8Array): Promise<KohyaHashes> {
  const modelHash = await sha256Hex(data);
  const total = header.length + data.length;
  const start = Math.min(LEGACY_HASH_OFFSET, total);
  const end = Math.min(LEGACY_HASH_OFFSET + LEGACY_HASH_LENGTH, total);
  const window = new Uint8Array(end - start);
  // The window may straddle the header/data boundary (only with a header past 1 MiB).
  for (let i = start; i < Math.min(end, header.length); i++) window[i - start] = header[i];
  const d0 = Math.max(start, header.length);
  if (d0 < end) window.set(data.subarray(d0 - header.length, end - header.length), d0 - start);
  const legacyHash = (await sha256Hex(window)).slice(0, 8);
  return { modelHash, legacyHash };
}

/**
 * kohya's `precalculate_safetensors_hashes(tensors, metadata)`: the hashes of the file the
 * Python safetensors library would write for these tensors with only the `ss_*` entries of
 * `metadata`. Every tensor's `data` must be raw bytes (`Uint8Array`) in its dtype, as it will be
 * written. `path` names the output in error messages.
 */
export async function precalculateSafetensorsHashes(
  tensors: readonly TensorToWrite[],
  metadata: Record<string, string>,
  path = "<memory>",
): Promise<KohyaHashes> {
  // An empty map is hashed with no `__metadata__` entry at all: that is what kohya's hashes of
  // files without `ss_*` keys (written with metadata `{}`) reproduce.
  const ss = ssMetadataOnly(metadata);
  const plan = planSafetensors(path, tensors, Object.keys(ss).length > 0 ? ss : undefined);
  const data = new Uint8Array(plan.fileSize - plan.header.length);
  let at = 0;
  plan.order.forEach((t, i) => {
    if (!(t.data instanceof Uint8Array) || t.data.length !== plan.byteLengths[i]) {
      throw new TypeError(`precalculateSafetensorsHashes: tensor '${t.name}' needs raw bytes`);
    }
    data.set(t.data, at);
    at += t.data.length;
  });
  return await hashesOfLayout(plan.header, data);
}

/**
 * The hashes kohya would have written into an existing safetensors file: its tensors re-laid out
 * canonically with only its `ss_*` metadata. For a file written by kohya this reproduces its
 * `sshs_model_hash` / `sshs_legacy_hash`.
 */
export async function recomputeFileHashes(file: SafetensorsFile): Promise<KohyaHashes> {
  const tensors: TensorToWrite[] = [];
  for (const t of file.list()) {
    tensors.push({
      name: t.name,
      dtype: t.dtype,
      shape: t.shape,
      data: await file.readRaw(t.name),
    });
  }
  return await precalculateSafetensorsHashes(tensors, file.metadata, file.path);
}

/**
 * A1111's old 8-digit model hash of a whole file (`model_hash`, kohya's `ss_sd_model_hash`):
 * SHA-256 of the 64 KiB at offset 1 MiB. Reads only that window.
 */
export async function legacyFileHash(path: string): Promise<string> {
  const file = await openRead(path);
  try {
    const start = Math.min(LEGACY_HASH_OFFSET, file.size);
    const len = Math.min(LEGACY_HASH_LENGTH, file.size - start);
    return (await sha256Hex(await file.read(start, len))).slice(0, 8);
  } finally {
    file.close();
  }
}
