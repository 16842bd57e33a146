/**
 * Step 1 of the demo base model's training (see scripts/demo_base/README.md): draw the synthetic
 * world's training and validation images and compute, with lorakit's own text encoder, the
 * conditioning of every caption they use. The text encoder is the demo's random one (seed 42),
 * stored in f16 exactly as the committed checkpoint stores it, so the U-Net trains on the
 * embeddings it will see at generation time.
 *
 * Usage: deno run -A scripts/demo_base/export_world.ts [out_dir] [train_images]
 * Writes <out_dir>/world.safetensors (images u8 NHWC, caption ids, embeddings [C, 77, 32], and
 * half as many uncaptioned random-colour images for the VAE) and
 * <out_dir>/text_encoder_f16.safetensors (the random model the embeddings come from).
 */
import { initGpu } from "../../gpu/mod.ts";
import { saveLdmCheckpoint } from "../../core/io/checkpoint.ts";
import { makeDir, writeFileAtomic } from "../../core/io/fs.ts";
import { writeSafetensors } from "../../core/io/safetensors_write.ts";
import { loadStableDiffusion } from "../../core/models/stable_diffusion.ts";
import { encodeConditioning } from "../../core/sample/conditioning.ts";
import {
  tinySd1Config,
  tinySd1Yaml,
  tokenPositionTensors,
  yamlPathFor,
} from "../../core/demo/tiny_model.ts";
import {
  baseTrainingScenes,
  colourScenes,
  drawScene,
  heldOutPrompts,
  type Scene,
  WORLD_SIZE,
} from "../../core/demo/world.ts";

/** The demo's model seed: the random text encoder comes from it. */
export const BASE_SEED = 42;
const TRAIN_SEED = 1001;
const VAL_SEED = 2002;
const COLOUR_SEED = 3003;

const outDir = Deno.args[0] ?? "out/demo_base";
const trainCount = Number(Deno.args[1] ?? 8000);
const valCount = 256;
await makeDir(outDir);
await initGpu();

const config = tinySd1Config();
const randomPath = `${outDir}/text_encoder_f16.safetensors`;
await saveLdmCheckpoint(randomPath, tokenPositionTensors(config, BASE_SEED), config, {
  savePrecision: "fp16",
});
await writeFileAtomic(yamlPathFor(randomPath), tinySd1Yaml(config));

const train = baseTrainingScenes(trainCount, TRAIN_SEED);
const val = baseTrainingScenes(valCount, VAL_SEED);
const colours = colourScenes(trainCount / 2, COLOUR_SEED);
const captions = ["", ...new Set([...train, ...val].map((s) => s.caption))];
for (const p of heldOutPrompts()) if (!captions.includes(p.caption)) captions.push(p.caption);
const index = new Map(captions.map((c, i) => [c, i]));

const sd = await loadStableDiffusion(randomPath, { parts: ["text_encoder"] });
const emb = new Float32Array(captions.length * 77 * 32);
const batch = 64;
for (let i = 0; i < captions.length; i += batch) {
  const chunk = captions.slice(i, i + batch);
  const cond = encodeConditioning(sd.tokenizer, sd.textEncoder, chunk, [], { guidanceScale: 1 });
  const data = await cond.context.toArray();
  cond.context.dispose();
  if (data.length !== chunk.length * 77 * 32) throw new Error(`unexpected context size`);
  emb.set(data, i * 77 * 32);
}
sd.dispose();

function pixels(scenes: Scene[]): Uint8Array {
  const n = WORLD_SIZE * WORLD_SIZE * 3;
  const out = new Uint8Array(scenes.length * n);
  scenes.forEach((s, i) => out.set(drawScene(s).data, i * n));
  return out;
}
const ids = (scenes: Scene[]) => {
  const a = new Int32Array(scenes.map((s) => index.get(s.caption)!));
  return new Uint8Array(a.buffer);
};
const S = WORLD_SIZE;
await writeSafetensors(`${outDir}/world.safetensors`, [
  { name: "train_images", dtype: "U8", shape: [train.length, S, S, 3], data: pixels(train) },
  { name: "train_caption_ids", dtype: "I32", shape: [train.length], data: ids(train) },
  { name: "val_images", dtype: "U8", shape: [val.length, S, S, 3], data: pixels(val) },
  { name: "val_caption_ids", dtype: "I32", shape: [val.length], data: ids(val) },
  { name: "colour_images", dtype: "U8", shape: [colours.length, S, S, 3], data: pixels(colours) },
  { name: "embeddings", dtype: "F32", shape: [captions.length, 77, 32], data: emb },
], { captions: JSON.stringify(captions) });
console.log(
  `${train.length} training and ${val.length} validation images, ${captions.length} captions`,
);
