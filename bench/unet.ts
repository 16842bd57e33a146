/**
 * The full-size SD 1.5 networks (random weights built in memory, no file), batch 1, forward only,
 * in f32 and f16 on whatever adapter is present, each with the GPU pool's peak memory and the same
 * network run by PyTorch in the same run (bench/peer/unet.py, a plain-PyTorch copy of diffusers'
 * topology with the same layers and shapes, so the same FLOPs; its parameter counts are checked
 * against ours):
 * - the U-Net (320/640/1280/1280 channels, 8 heads, context 768) at 32x32 and 64x64 latents;
 * - the VAE (128/256/512/512) decoding 64x64 latents to a 512x512 image.
 *
 * On a software adapter the 64x64 U-Net and the VAE decode take many minutes each, so they run
 * only with `LORAKIT_BENCH_FULL=1`; on a hardware adapter they always run.
 *
 * Run alone: `deno run -A bench/unet.ts`.
 */
import { type DType, initGpu, noGrad, rt, scope, Tensor } from "../gpu/mod.ts";
import type { SDConfig, UNetConfig, VAEConfig } from "../core/model_config/config.ts";
import { type ExpectedTensor, expectedTensors } from "../core/model_config/keys.ts";
import { UNet2DConditionModel } from "../core/models/unet.ts";
import { AutoencoderKL } from "../core/models/vae.ts";
import { randomWeights } from "../core/models/weights.ts";
import {
  type BenchRow,
  firstLine,
  measureCases,
  type Measured as HarnessMeasured,
  peerLabel,
  releaseForPeer,
  runPeer,
  table,
  timeGpu,
} from "./harness.ts";

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

/** SD's VAE (`AutoencoderKL`) as diffusers configures it. */
export const SD_VAE: VAEConfig = {
  inChannels: 3,
  outChannels: 3,
  latentChannels: 4,
  blockOutChannels: [128, 256, 512, 512],
  layersPerBlock: 2,
  normGroups: 32,
  normEps: 1e-6,
  scalingFactor: 0.18215,
};

/**
 * A pipeline config around `unet` and `vae` (default SD 1.5's) with a one-layer placeholder text
 * encoder: `expectedTensors` wants a whole pipeline, and the benches use its U-Net and VAE only.
 */
export function sdConfig(unet: UNetConfig = SD15_UNET, vae: VAEConfig = SD_VAE): SDConfig {
  return {
    v2: false,
    vPrediction: false,
    unet,
    vae,
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

const CONTEXT = 77;

/** Wall-clock cap per case on slow adapters: one timed run only when the warm-up was slow. */
const SLOW_SECONDS = 60;

type ModelKind = "unet" | "vae";

/** One benchmark case; `latent` is the latent side (the VAE decodes to 8x that). */
interface Case {
  name: string;
  model: ModelKind;
  latent: number;
  dtype: DType;
  /** Slow on a software adapter: runs there only with LORAKIT_BENCH_FULL=1. */
  long: boolean;
}

const CASES: Case[] = (["f32", "f16"] as const).flatMap((dtype) => [
  { name: `unet sd1.5 32x32 b1 ${dtype}`, model: "unet", latent: 32, dtype, long: false },
  { name: `unet sd1.5 64x64 b1 ${dtype}`, model: "unet", latent: 64, dtype, long: true },
  { name: `vae decode sd 512x512 b1 ${dtype}`, model: "vae", latent: 64, dtype, long: true },
]);

/** Our measurement of one case, before the peer joins it. */
type Measured = HarnessMeasured<Case>;

const count = (specs: readonly ExpectedTensor[], keep: (name: string) => boolean): number =>
  specs.filter((s) => keep(s.name)).reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);

/** Parameters of what each bench runs (the U-Net; the VAE's post_quant_conv and decoder). */
function paramCounts(specs: readonly ExpectedTensor[]): Record<ModelKind, number> {
  return {
    unet: count(specs, (n) => n.startsWith("unet.")),
    vae: count(specs, (n) => /^vae\.(decoder|post_quant_conv)\./.test(n)),
  };
}

const gib = (b: number) => (b / 2 ** 30).toFixed(2);

/** Deterministic inputs: latents, and for the U-Net a text context. */
function input(shape: number[], dtype: DType, f: (i: number) => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(Float32Array.from({ length: n }, (_, i) => f(i)), shape, dtype).keep();
}

/**
 * Time the cases of one model in one dtype with one set of weights. `before` is the pool's live
 * bytes before the weights were built, so each peak includes the weights.
 */
async function runModel(
  kind: ModelKind,
  dtype: DType,
  cases: Case[],
  specs: readonly ExpectedTensor[],
): Promise<Measured[]> {
  const before = rt().storage.stats().liveBytes;
  const weights = randomWeights(specs, kind, { dtype, seed: 7 });
  const weightBytes = rt().storage.stats().liveBytes - before;
  const unet = kind === "unet" ? new UNet2DConditionModel(weights, SD15_UNET) : null;
  const vae = kind === "vae" ? new AutoencoderKL(weights, SD_VAE) : null;
  const ctx = unet ? input([1, CONTEXT, 768], dtype, Math.cos) : null;
  const out: Measured[] = [];
  try {
    for (const c of cases) {
      const latents = input([1, 4, c.latent, c.latent], dtype, Math.sin);
      const step = () =>
        noGrad(() =>
          scope(() => (unet ? unet.forward(latents, [500], ctx!) : vae!.decode(latents)).dispose())
        );
      try {
        await rt().sync();
        rt().storage.resetPeak();
        // The first run compiles the pipelines it needs; time it separately to pick the count.
        const t0 = performance.now();
        step();
        await rt().sync();
        const first = (performance.now() - t0) / 1000;
        const slow = first > SLOW_SECONDS;
        const seconds = await timeGpu(step, { warmup: 0, iters: slow ? 1 : 5, minSeconds: 20 });
        const peak = rt().storage.stats().peakBytes - before;
        out.push({
          case: c,
          seconds,
          note: `peak pool ${gib(peak)} GiB (weights ${gib(weightBytes)} GiB${
            vae ? " incl. encoder" : ""
          }); first run ${first.toFixed(1)} s with compiles`,
        });
      } catch (e) {
        out.push({ case: c, seconds: NaN, note: `did not run: ${firstLine(e)}` });
      } finally {
        latents.dispose();
      }
    }
  } finally {
    ctx?.dispose();
    unet?.dispose();
    vae?.dispose();
  }
  return out;
}

/** The peer's side of one row: its seconds, label and a note (skips, memory, mismatches). */
function joinPeer(
  m: Measured,
  peer: Record<string, unknown> | null,
  ours: Record<ModelKind, number>,
): BenchRow {
  const row: BenchRow = { name: m.case.name, seconds: m.seconds, note: m.note };
  const notes: string[] = [];
  const r = peer?.[m.case.name] as
    | { seconds?: number; peak_bytes?: number; skipped?: string }
    | undefined;
  if (!peer) notes.push("no peer");
  else if (r?.skipped) notes.push(`peer skipped: ${r.skipped}`);
  else if (r?.seconds !== undefined) {
    row.peerSeconds = r.seconds;
    row.peer = peerLabel(peer);
    if (r.peak_bytes !== undefined) notes.push(`peer peak ${gib(r.peak_bytes)} GiB`);
    const theirs = (peer.params as Record<string, number> | undefined)?.[m.case.model];
    if (theirs !== ours[m.case.model]) {
      notes.push(`peer params ${theirs} != ours ${ours[m.case.model]}`);
    }
  }
  row.note = [m.note, rt().gpu.description, ...notes].join("; ");
  return row;
}

/** Every case that applies here, then the peer on the cases that ran; failures are rows. */
export async function bench(): Promise<BenchRow[]> {
  await initGpu();
  const full = !rt().gpu.isSoftware || Deno.env.get("LORAKIT_BENCH_FULL") === "1";
  const specs = expectedTensors(sdConfig());
  const params = paramCounts(specs);
  const measured: Measured[] = [];
  const skipped: BenchRow[] = [];
  for (const kind of ["unet", "vae"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      const cases = CASES.filter((c) => c.model === kind && c.dtype === dtype);
      for (const c of cases.filter((c) => c.long && !full)) {
        skipped.push({
          name: c.name,
          seconds: NaN,
          note: "skipped on a software adapter (LORAKIT_BENCH_FULL=1 runs it)",
        });
      }
      const run = cases.filter((c) => full || !c.long);
      if (run.length === 0) continue;
      measured.push(...await measureCases(run, () => runModel(kind, dtype, run, specs)));
    }
  }
  // PyTorch on the CPU takes seconds (U-Net 32x32) to half a minute (VAE decode) per run.
  const peerCpu = await releaseForPeer();
  const ran = measured.filter((m) => Number.isFinite(m.seconds)).map(({ case: c }) => ({
    name: c.name,
    model: c.model,
    latent: c.latent,
    dtype: c.dtype,
    iters: !peerCpu ? 10 : c.model === "unet" && c.latent === 32 ? 3 : 1,
  }));
  const peer = ran.length ? await runPeer("unet.py", { cases: ran }) : null;
  const peerParams = peer?.params as Record<string, number> | undefined;
  console.error(
    `unet bench parameters: U-Net ours ${params.unet}, peer ${peerParams?.unet ?? "-"}; ` +
      `VAE decoder ours ${params.vae}, peer ${peerParams?.vae ?? "-"}`,
  );
  const order = (name: string) => CASES.findIndex((c) => c.name === name);
  return [...measured.map((m) => joinPeer(m, peer, params)), ...skipped]
    .sort((a, b) => order(a.name) - order(b.name));
}

if (import.meta.main) console.log(table(await bench()));
