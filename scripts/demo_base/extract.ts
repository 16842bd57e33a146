/**
 * Read one part of an LDM checkpoint (the committed demo base model by default) back into the
 * internal naming, f32, as train.py reads and writes it: `vae.*` to reuse the committed VAE
 * instead of retraining it, or `unet.*` to continue training the committed U-Net.
 *
 * Usage: deno run -A scripts/demo_base/extract.ts <out.safetensors> [vae|unet] [checkpoint]
 */
import { loadCheckpoint } from "../../core/io/checkpoint.ts";
import { writeSafetensors } from "../../core/io/safetensors_write.ts";
import { demoBasePath } from "../../core/demo/base_model.ts";

const [outPath, part = "vae", path = demoBasePath()] = Deno.args;
if (!outPath || !["vae", "unet"].includes(part)) {
  console.error("usage: extract.ts <out.safetensors> [vae|unet] [checkpoint]");
  Deno.exit(2);
}
const ckpt = await loadCheckpoint(path);
const tensors = [];
for (const name of ckpt.names().filter((n) => n.startsWith(`${part}.`))) {
  const t = await ckpt.readF32(name);
  tensors.push({
    name,
    dtype: "F32" as const,
    shape: t.shape,
    data: new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  });
}
ckpt.close();
await writeSafetensors(outPath, tensors, { "lorakit.demo.from": path });
console.log(`${tensors.length} ${part} tensors from ${path} -> ${outPath}`);
