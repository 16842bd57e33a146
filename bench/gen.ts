/**
 * gen_img's loop: images per second for sd1-tiny at 64x64 with 20 euler_a steps and guidance
 * (prompt encoding, noise, sampling, decoding; batch 1 and 4), and, with `--full` (slow on a
 * software adapter), seconds per sampler step for one 512x512 image with the full-size SD 1.5
 * U-Net (random weights built in memory; guidance doubles the U-Net batch to 2).
 *
 * Peer (tiny rows): `bench/peer/gen.py` runs the same loop (Euler-ancestral, guidance, noise
 * drawn up front, decode) in PyTorch on `sd_torch.py`'s U-Net and VAE decoder at sd1-tiny's
 * widths with random weights (diffusers is not installed); the text encoder is left out of the
 * peer (under 1% of the work). The full-size row has no peer.
 *
 * Run alone: `deno run -A bench/gen.ts [--full]`.
 */
import { initGpu, rt, Tensor } from "../gpu/mod.ts";
import { loadStableDiffusion } from "../core/models/mod.ts";
import { expectedTensors } from "../core/model_config/keys.ts";
import { UNet2DConditionModel } from "../core/models/unet.ts";
import { randomWeights } from "../core/models/weights.ts";
import { generateBatch } from "../core/sample/gen_loop.ts";
import { planGeneration } from "../core/sample/gen_plan.ts";
import { createScheduler } from "../core/sample/sampler_registry.ts";
import { denoise } from "../core/sample/txt2img.ts";
import { fixture } from "../tests/fixtures.ts";
import { type BenchRow, peerLabel, runPeer, table, timeGpu } from "./harness.ts";
import { SD15_UNET, sdConfig } from "./unet.ts";

const STEPS = 20;
/** sd1-tiny from the fixtures (`$LORAKIT_FIXTURES` or ../shared/fixtures). */
const MODEL = fixture("sd1-tiny/model.safetensors");

async function tinyRow(
  model: string,
  batch: number,
  peer: Record<string, unknown> | null,
): Promise<BenchRow> {
  const sd = await loadStableDiffusion(model);
  try {
    const [jobs] = planGeneration(
      Array.from({ length: batch }, (_, i) => ({ text: `a photo of a cat ${i}`, where: "bench" })),
      {
        width: 64,
        height: 64,
        steps: STEPS,
        scale: 7.5,
        negativeScale: null,
        strength: 0.8,
        imagesPerPrompt: 1,
        nIter: 1,
        batchSize: batch,
        seed: 1,
        iterSameSeed: false,
        networks: 0,
        initImageSizes: null,
        highresFix: false,
      },
    );
    const run = async () => {
      await generateBatch(sd, jobs, {
        sampler: "euler_a",
        vPrediction: false,
        maxEmbeddingsMultiples: 1,
        clipSkip: 1,
        embNormalizeMode: "original",
        vaeBatchSize: null,
        highres: null,
        networks: [],
        networkDefaultMuls: [],
        initImages: null,
      });
    };
    const seconds = await timeGpu(run, { warmup: 1, iters: 3, minSeconds: 30 });
    return {
      name: `gen_img sd1-tiny 64x64 ${STEPS} steps euler_a b${batch}`,
      seconds,
      note: `${(batch / seconds).toFixed(2)} images/s; ${rt().gpu.description}`,
      peer: peerLabel(peer),
      peerSeconds: (peer?.[`b${batch}`] as { seconds?: number } | undefined)?.seconds,
    };
  } finally {
    sd.dispose();
  }
}

/** One 512x512 image (64x64 latents) with SD 1.5's U-Net shapes: seconds per sampler step. */
async function fullRow(): Promise<BenchRow> {
  const config = sdConfig(SD15_UNET, {
    inChannels: 3,
    outChannels: 3,
    latentChannels: 4,
    blockOutChannels: [32],
    layersPerBlock: 1,
    normGroups: 32,
    normEps: 1e-6,
    scalingFactor: 0.18215,
  });
  const unet = new UNet2DConditionModel(
    randomWeights(expectedTensors(config), "unet", { seed: 3 }),
    SD15_UNET,
  );
  const noise = Tensor.fromArray(
    Float32Array.from({ length: 4 * 64 * 64 }, (_, i) => Math.sin(i * 0.37)),
    [1, 4, 64, 64],
  ).keep();
  const ctx = Tensor.fromArray(
    Float32Array.from({ length: 2 * 77 * 768 }, (_, i) => Math.cos(i * 0.11)),
    [2, 77, 768],
  ).keep();
  try {
    const stepTimes: number[] = [];
    let last = performance.now();
    const out = await denoise(unet, {
      scheduler: createScheduler("ddim"), // draws no noise: the step time is the U-Net's
      steps: 3,
      initNoise: noise,
      context: ctx,
      guidanceScale: 7.5,
      onStep: async () => {
        await rt().sync();
        const now = performance.now();
        stepTimes.push((now - last) / 1000);
        last = now;
      },
    });
    out.dispose();
    // The first step compiles the pipelines; the median of the others is the step time.
    const later = stepTimes.slice(1).sort((a, b) => a - b);
    return {
      name: "gen_img sd1.5 shapes 512x512 b1 (CFG: U-Net b2) f32, per step",
      seconds: later[Math.floor(later.length / 2)],
      note: `first step ${stepTimes[0].toFixed(1)} s with compiles; random weights; no peer`,
    };
  } finally {
    noise.dispose();
    ctx.dispose();
    unet.dispose();
  }
}

/** The tiny-model rows, plus the full-size row on a hardware GPU or with `--full`. */
export async function bench(): Promise<BenchRow[]> {
  await initGpu();
  const rows: BenchRow[] = [];
  if (MODEL) {
    const peer = await runPeer("gen.py", { batches: [1, 4], steps: STEPS, latent: 8, iters: 1 });
    rows.push(await tinyRow(MODEL, 1, peer), await tinyRow(MODEL, 4, peer));
  } else {
    console.error("gen: sd1-tiny fixture not found; the tiny-model rows are skipped");
  }
  const full = Deno.args.includes("--full") || Deno.env.get("LORAKIT_BENCH_FULL") === "1" ||
    !rt().gpu.isSoftware;
  if (full) rows.push(await fullRow());
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
