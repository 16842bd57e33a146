/**
 * The demo base model's figures, measured through lorakit: VAE PSNR on 256 held-out world
 * images and caption accuracy on the 50 held-out prompts (one image each, DDIM 20 steps,
 * guidance 5), printed, with a sheet of the generated images when an output folder is given.
 *
 * Usage: deno run -A scripts/demo_base/evaluate.ts [checkpoint] [out_dir]
 */
import { initGpu } from "../../gpu/mod.ts";
import { encodePng } from "../../core/image/encode.ts";
import { makeImage } from "../../core/image/image.ts";
import { makeDir, writeFileAtomic } from "../../core/io/fs.ts";
import { loadStableDiffusion } from "../../core/models/stable_diffusion.ts";
import { captionChecks, heldOutImages, vaePsnr } from "../../core/demo/base_eval.ts";
import { demoBasePath } from "../../core/demo/base_model.ts";
import { heldOutPrompts } from "../../core/demo/world.ts";

const path = Deno.args[0] ?? demoBasePath();
const outDir = Deno.args[1];
await initGpu();
const sd = await loadStableDiffusion(path);
const t0 = performance.now();
const psnr = await vaePsnr(sd, heldOutImages(256));
console.log(`VAE PSNR on 256 held-out images: ${psnr.toFixed(2)} dB`);
const checks = await captionChecks(sd, heldOutPrompts(50));
const bg = checks.filter((c) => c.reading.background === c.prompt.background).length;
const obj = checks.filter((c) => c.reading.object === c.prompt.colour).length;
const both = checks.filter((c) => c.correct).length;
for (const c of checks) {
  console.log(
    `${c.correct ? "ok  " : "MISS"} ${c.prompt.caption} -> ${c.reading.object} on ` +
      `${c.reading.background}`,
  );
}
console.log(
  `caption accuracy on ${checks.length} held-out prompts: ${both}/${checks.length} ` +
    `(background ${bg}, object ${obj}); ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);
if (outDir) {
  await makeDir(outDir);
  const cols = 10, s = 64;
  const sheet = makeImage(cols * s, Math.ceil(checks.length / cols) * s, 3);
  checks.forEach((c, i) => {
    const ox = (i % cols) * s, oy = Math.floor(i / cols) * s;
    for (let y = 0; y < s; y++) {
      const row = c.image.data.subarray(y * s * 3, (y + 1) * s * 3);
      sheet.data.set(row, ((oy + y) * sheet.width + ox) * 3);
    }
  });
  await writeFileAtomic(`${outDir}/held_out_prompts.png`, await encodePng(sheet));
}
sd.dispose();
