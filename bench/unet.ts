/**
 * The full-size SD 1.5 U-Net (320/640/1280/1280 channels, 8 heads, context 768; random weights
 * built in memory, no file) forward at 32x32 latents, batch 1, in f32 and f16 on whatever
 * adapter is present, with the GPU pool's peak memory. No PyTorch peer: Debian's torch has no
 * diffusers, and a second U-Net written for the peer would not measure diffusers anyway.
 *
 * Run alone: `deno run -A bench/unet.ts`.
 */
import { type DType, initGpu, noGrad, rt, scope, Tensor } from "../gpu/mod.ts";
import type { SDConfig, UNetConfig } from "../core/models/config.ts";
import { expectedTensors } from "../core/models/config_keys.ts";
import { UNet2DConditionModel } from "../core/models/unet.ts";
import { randomWeights } from "../core/models/weights.ts";
import { type BenchRow, table, timeGpu } from "./harness.ts";

/** SD 1.5's U-Net as diffusers configures it. */
export const SD15_UNET: UNetConfig = {
  inChannels: 4,
  outChannels: 4,
  blockOutChannels: [320, 640, 1280, 1280],
  layersPerBlock: 2,
  downBlockTypes: [
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "CrossAttnDownBlock2D",
    "DownBlock2D",
  ],
  upBlockTypes: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
  numHeads: [8, 8, 8, 8],
  headDim: [40, 80, 160, 160],
  transformerDepth: [1, 1, 1, 0],
  midTransformerDepth: 1,
  crossAttentionDim: 768,
  useLinearProjection: false,
  timeEmbedDim: 1280,
  normGroups: 32,
  normEps: 1e-5,
  transformerNormEps: 1e-6,
  layerNormEps: 1e-5,
};

/** `expectedTensors` wants a whole pipeline; only the U-Net's names are used here. */
function sd15Config(): SDConfig {
  return {
    v2: false,
    vPrediction: false,
    unet: SD15_UNET,
    vae: {
      inChannels: 3,
      outChannels: 3,
      latentChannels: 4,
      blockOutChannels: [32],
      layersPerBlock: 1,
      normGroups: 32,
      normEps: 1e-6,
      scalingFactor: 0.18215,
    },
    textEncoder: {
      vocabSize: 8,
      hiddenSize: 64,
      numLayers: 1,
      numHeads: 1,
      intermediateSize: 64,
      maxPositions: 77,
      hiddenAct: "quick_gelu",
      layerNormEps: 1e-5,
    },
  };
}

const LATENT = 32;
const CONTEXT = 77;

/** Wall-clock cap per dtype on slow adapters: one timed run only when the warm-up was slow. */
const SLOW_SECONDS = 60;

async function benchDtype(dtype: DType): Promise<BenchRow> {
  const specs = expectedTensors(sd15Config());
  const before = rt().storage.stats().liveBytes;
  const weights = randomWeights(specs, "unet", { dtype, seed: 7 });
  const unet = new UNet2DConditionModel(weights, SD15_UNET);
  const weightBytes = rt().storage.stats().liveBytes - before;
  const sample = Tensor.fromArray(
    Float32Array.from({ length: 4 * LATENT * LATENT }, (_, i) => Math.sin(i)),
    [1, 4, LATENT, LATENT],
    dtype,
  ).keep();
  const ctx = Tensor.fromArray(
    Float32Array.from({ length: CONTEXT * 768 }, (_, i) => Math.cos(i)),
    [1, CONTEXT, 768],
    dtype,
  ).keep();
  const step = () => noGrad(() => scope(() => unet.forward(sample, [500], ctx).dispose()));
  try {
    // The first run compiles every pipeline; time it separately to pick the iteration count.
    const t0 = performance.now();
    step();
    await rt().sync();
    const first = (performance.now() - t0) / 1000;
    rt().storage.resetPeak();
    const slow = first > SLOW_SECONDS;
    const seconds = await timeGpu(step, { warmup: 0, iters: slow ? 1 : 5, minSeconds: 20 });
    const peak = rt().storage.stats().peakBytes - before;
    const gib = (b: number) => (b / 2 ** 30).toFixed(2);
    return {
      name: `unet sd1.5 ${LATENT}x${LATENT} b1 ${dtype}`,
      seconds,
      note: `peak pool ${gib(peak)} GiB (weights ${gib(weightBytes)} GiB); first run ` +
        `${first.toFixed(1)} s with compiles; ${rt().gpu.description}; no peer`,
    };
  } finally {
    sample.dispose();
    ctx.dispose();
    unet.dispose();
  }
}

/** Both dtypes; a dtype that fails (memory, device limits) is a row saying why. */
export async function bench(): Promise<BenchRow[]> {
  await initGpu();
  const rows: BenchRow[] = [];
  for (const dtype of ["f32", "f16"] as const) {
    try {
      rows.push(await benchDtype(dtype));
    } catch (e) {
      rows.push({
        name: `unet sd1.5 ${LATENT}x${LATENT} b1 ${dtype}`,
        seconds: NaN,
        note: `did not run: ${(e as Error).message.split("\n")[0]}`,
      });
    }
  }
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
