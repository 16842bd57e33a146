/**
 * Loads a full-size checkpoint (e.g. one written by scripts/make_big_checkpoint.ts) the way the
 * tools do: infer the config, then read every tensor converted to f32, one at a time. Prints the
 * inferred architecture, the read rate against `cat FILE > /dev/null` in the same run, and the
 * peak resident memory relative to the file size.
 *
 * usage: deno run -A bench/load_checkpoint.ts FILE [--v2]
 */
import { loadCheckpoint } from "../core/io/checkpoint.ts";

const path = Deno.args.find((a) => !a.startsWith("--"));
if (!path) {
  console.error("usage: deno run -A bench/load_checkpoint.ts FILE [--v2]");
  Deno.exit(2);
}
const size = (await Deno.stat(path)).size;
const catStart = performance.now();
await new Deno.Command("cat", { args: [path], stdout: "null" }).output();
const catS = (performance.now() - catStart) / 1000;

let peak = Deno.memoryUsage().rss;
const timer = setInterval(() => (peak = Math.max(peak, Deno.memoryUsage().rss)), 20);
const t0 = performance.now();
const ckpt = await loadCheckpoint(path, { v2: Deno.args.includes("--v2") ? true : undefined });
const tInfer = (performance.now() - t0) / 1000;
let n = 0;
for (const name of ckpt.names()) {
  await ckpt.readF32(name);
  n++;
  peak = Math.max(peak, Deno.memoryUsage().rss);
}
const total = (performance.now() - t0) / 1000;
clearInterval(timer);
ckpt.close();
const c = ckpt.config;
console.log(`file: ${path} (${(size / 1e9).toFixed(2)} GB, ${ckpt.format})`);
console.log(
  `config: v2=${c.v2} vPrediction=${c.vPrediction} unet channels=${c.unet.blockOutChannels} ` +
    `heads=${c.unet.numHeads} context=${c.unet.crossAttentionDim} ` +
    `linearProj=${c.unet.useLinearProjection} te=${c.textEncoder.hiddenSize}x${c.textEncoder.numLayers} ` +
    `(${c.textEncoder.hiddenAct}) vae=${c.vae.blockOutChannels}`,
);
console.log(
  `open+infer ${tInfer.toFixed(2)} s; read ${n} tensors as f32 in ${total.toFixed(1)} s ` +
    `(${(size / total / 1e6).toFixed(0)} MB/s of file; cat: ${
      (size / catS / 1e6).toFixed(0)
    } MB/s)`,
);
console.log(
  `peak RSS ${(peak / 1e6).toFixed(0)} MB = ${(peak / size).toFixed(2)}x the file size`,
);
