/**
 * The sdxl-tiny single file rewritten as a PyTorch `.ckpt` (zip format, tensors under
 * `state_dict` as SD checkpoints hold them) in a temporary folder, with `model.yaml` beside it.
 */
import { openSafetensors } from "../core/io/safetensors.ts";
import { zipStoredChunks } from "../core/io/zip_write.ts";
import { ckptPickle, type StorageSpec, type TensorSpec } from "./ckpt_build.ts";
import { fixture } from "./fixtures.ts";

const STORAGE: Record<string, [string, number]> = {
  F32: ["FloatStorage", 4],
  F16: ["HalfStorage", 2],
  BF16: ["BFloat16Storage", 2],
  I64: ["LongStorage", 8],
  I32: ["IntStorage", 4],
};

/** Runs `fn` with the path of `model.ckpt` (same tensors as sdxl-tiny/model.safetensors). */
export async function withSdxlCkpt(fn: (path: string) => Promise<void>): Promise<boolean> {
  const src = fixture("sdxl-tiny/model.safetensors");
  const yaml = fixture("sdxl-tiny/model.yaml");
  if (src === null || yaml === null) return false;
  const dir = await Deno.makeTempDir({ prefix: "lorakit_sdxl_" });
  try {
    const st = await openSafetensors(src);
    const tensors: TensorSpec[] = [];
    const storages: Record<string, StorageSpec> = {};
    try {
      for (const [i, t] of st.list().entries()) {
        const [type, elementSize] = STORAGE[t.dtype];
        storages[String(i)] = { type, elementSize, data: await st.readRaw(t.name) };
        tensors.push({ name: t.name, storage: String(i), size: t.shape });
      }
    } finally {
      st.close();
    }
    const entries = [
      { name: "model/data.pkl", data: ckptPickle(tensors, storages, { stateDict: true }) },
      { name: "model/byteorder", data: new TextEncoder().encode("little") },
      ...Object.entries(storages).map(([k, s]) => ({ name: `model/data/${k}`, data: s.data })),
      { name: "model/version", data: new TextEncoder().encode("3\n") },
    ];
    const file = await Deno.open(`${dir}/model.ckpt`, { write: true, create: true });
    try {
      for (const chunk of zipStoredChunks(entries, { align: 64 })) {
        let at = 0;
        while (at < chunk.length) at += await file.write(chunk.subarray(at));
      }
    } finally {
      file.close();
    }
    await Deno.copyFile(yaml, `${dir}/model.yaml`);
    await fn(`${dir}/model.ckpt`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return true;
}
