/**
 * The demo's trained base model (core/demo/base/), measured through lorakit's own models: its VAE
 * reconstructs held-out world images at >= 25 dB PSNR, and its U-Net should draw the caption —
 * for held-out "a <colour> <shape> on a <colour> background" prompts, the pixel-colour test
 * should read back both colours in >= 80% of the images. To keep CI short this checks 16 images
 * and the first 10 of the 50 held-out prompts; scripts/demo_base/evaluate.ts measures all of them
 * (figures in scripts/demo_base/README.md).
 */
import assert from "node:assert/strict";
import { initGpu } from "../gpu/mod.ts";
import { loadStableDiffusion } from "../core/models/stable_diffusion.ts";
import { captionChecks, heldOutImages, vaePsnr } from "../core/demo/base_eval.ts";
import { demoBasePath } from "../core/demo/base_model.ts";
import { heldOutPrompts } from "../core/demo/world.ts";

Deno.test({
  name: "demo base model: VAE PSNR on held-out world images",
  sanitizeResources: false,
  async fn() {
    await initGpu();
    const sd = await loadStableDiffusion(demoBasePath(), { parts: ["vae"] });
    try {
      const psnr = await vaePsnr(sd, heldOutImages(16));
      assert.ok(psnr >= 25, `VAE PSNR ${psnr.toFixed(2)} dB`);
    } finally {
      sd.dispose();
    }
  },
});

Deno.test({
  name: "demo base model: generation follows held-out captions",
  sanitizeResources: false,
  async fn() {
    await initGpu();
    const sd = await loadStableDiffusion(demoBasePath());
    try {
      const checks = await captionChecks(sd, heldOutPrompts(10));
      const misses = checks.filter((c) => !c.correct).map((c) =>
        `${c.prompt.caption} -> ${c.reading.object} on ${c.reading.background}`
      );
      assert.ok(checks.length - misses.length >= 8, misses.join("; "));
    } finally {
      sd.dispose();
    }
  },
});
