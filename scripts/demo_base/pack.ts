/**
 * Last step of the demo base model's training (see scripts/demo_base/README.md): join the
 * trained U-Net and VAE (lorakit's internal names, f32, as train.py writes them) with the demo's
 * random text encoder (seed 42) and write the LDM single-file checkpoint with lorakit's own key
 * maps, plus the A1111 yaml beside it.
 *
 * Usage: deno run -A scripts/demo_base/pack.ts <weights.safetensors> <out.safetensors> [fp16|float]
 */
import { type InternalTensors, saveLdmCheckpoint } from "../../core/io/checkpoint.ts";
import { writeFileAtomic } from "../../core/io/fs.ts";
import { openSafetensors } from "../../core/io/safetensors.ts";
import {
  tinySd1Config,
  tinySd1Yaml,
  tokenPositionTensors,
  yamlPathFor,
} from "../../core/demo/tiny_model.ts";

const [weightsPath, outPath, precision = "fp16"] = Deno.args;
if (!weightsPath || !outPath) {
  console.error("usage: pack.ts <weights.safetensors> <out.safetensors> [fp16|float]");
  Deno.exit(2);
}
const config = tinySd1Config();
const random = tokenPositionTensors(config, 42);
const trained = await openSafetensors(weightsPath);
const mine = new Set(trained.list().map((t) => t.name));
const joined: InternalTensors = {
  names: () => random.names(),
  info: (n) => (mine.has(n) ? trained.info(n) : random.info(n)),
  readF32: (n) => (mine.has(n) ? trained.readF32(n) : random.readF32(n)),
};
const missing = random.names().filter((n) => !n.startsWith("text_encoder.") && !mine.has(n));
if (missing.length > 0) throw new Error(`${weightsPath}: missing ${missing.slice(0, 5)}`);
await saveLdmCheckpoint(outPath, joined, config, {
  savePrecision: precision as "fp16" | "float",
  metadata: {
    "lorakit.demo": "SD1-shaped base model trained on the demo's synthetic world",
    ...trained.metadata,
  },
});
await writeFileAtomic(yamlPathFor(outPath), tinySd1Yaml(config));
trained.close();
console.log(`wrote ${outPath}`);
