/**
 * One LoRA training step (U-Net forward, MSE loss, backward, clipGradNorm, AdamW update,
 * zeroGrad), batch 1, LoRA dim 16 / alpha 16 on the U-Net only (kohya's LierLa targets: every
 * Linear and 1x1 conv of the transformer blocks), random weights built in memory, against the
 * same step in PyTorch in the same run (bench/peer/train_step.py: sd_torch.py's U-Net with the
 * same LoRA modules, torch AdamW and clip_grad_norm_). Each case reports the GPU pool's peak
 * (weights, LoRA, optimizer state and activations), with and without gradient checkpointing:
 * - sd1-tiny (the fixtures' architecture: 32/64/64/64 channels, 2 heads, context 32) at 64x64 px
 *   (8x8 latents), always;
 * - the full-size SD 1.5 U-Net at 32x32 latents: with `LORAKIT_BENCH_FULL=1` on a software
 *   adapter (minutes per step there), always on a hardware one;
 * - the full-size SD 1.5 U-Net at 64x64 latents (512x512 px): on a hardware adapter only.
 * A first step longer than a minute (the full-size U-Net on lavapipe: ~5 minutes) is the case's
 * only timed run, pipeline compiles included; otherwise the median of up to 5 more.
 *
 * f32 trains an f32 U-Net; f16 is `--mixed_precision fp16` as core/train runs it: f16 U-Net
 * weights and activations, f32 LoRA factors, dynamic loss scaling (one flag read-back per step).
 * The peer's f16 is autocast with an f16 U-Net, f32 LoRA and GradScaler, as kohya runs it on
 * CUDA; PyTorch 1.13 has no f16 matmul or conv2d on the CPU, so there the row carries its error.
 *
 * Run alone: `deno run -A bench/train_step.ts`.
 *
 * @module
 */
import {
  AdamW,
  backward,
  clipGradNorm,
  type DType,
  getGpu,
  initGpu,
  LossScaler,
  mseLoss,
  mul,
  rt,
  scope,
  Tensor,
} from "../gpu/mod.ts";
import { uniformRandom } from "../gpu/random.ts";
import type { UNetConfig } from "../core/model_config/config.ts";
import { expectedTensors } from "../core/model_config/keys.ts";
import { UNet2DConditionModel } from "../core/models/unet.ts";
import { randomWeights } from "../core/models/weights.ts";
import { createNetwork, type LoraNetwork } from "../core/lora/network.ts";
import { enableGradientCheckpointing, overwriteTensor } from "../core/train/network_training.ts";
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
import { SD15_UNET, sdConfig } from "./unet.ts";

/** sd1-tiny's U-Net (../shared/fixtures/sd1-tiny/README.md), random weights. */
export const TINY_UNET: UNetConfig = {
  ...SD15_UNET,
  blockOutChannels: [32, 64, 64, 64],
  numHeads: [2, 2, 2, 2],
  headDim: [16, 32, 32, 32],
  crossAttentionDim: 32,
  timeEmbedDim: 128,
};

type ModelKind = "tiny" | "sd15";

const MODELS: Record<ModelKind, { config: UNetConfig; label: string }> = {
  tiny: { config: TINY_UNET, label: "sd1-tiny" },
  sd15: { config: SD15_UNET, label: "sd1.5" },
};

const DIM = 16, ALPHA = 16, MAX_NORM = 1, LR = 1e-4, TIMESTEP = 500, CONTEXT = 77;
/** lora_up starts at uniform(-UP_INIT, UP_INIT) instead of kohya's zeros, so lora_down gets a
 * nonzero gradient too (the work is the same either way). The peer uses the same bound. */
const UP_INIT = 1e-3;
/** A first step slower than this is the case's only timed run. */
const SLOW_SECONDS = 60;

/** When a case runs (see the module comment). */
type When = "always" | "full" | "hardware";

interface Case {
  name: string;
  model: ModelKind;
  /** Latent side; the image is 8x. */
  latent: number;
  dtype: DType;
  gc: boolean;
  when: When;
}

/** Model, latent side and when it runs; each in f32 and f16, without and with checkpointing. */
const SIZES: [ModelKind, number, When][] = [
  ["tiny", 8, "always"],
  ["sd15", 32, "full"],
  ["sd15", 64, "hardware"],
];

const CASES: Case[] = [];
for (const dtype of ["f32", "f16"] as const) {
  for (const [model, latent, when] of SIZES) {
    for (const gc of [false, true]) {
      const size = `${latent}x${latent} latents`;
      const name = `train step ${MODELS[model].label} ${size} dim${DIM} ${dtype}`;
      CASES.push({ name: gc ? `${name} grad ckpt` : name, model, latent, dtype, gc, when });
    }
  }
}

/** Our measurement of one case, before the peer joins it. */
type Measured = HarnessMeasured<Case>;

const mib = (b: number) =>
  b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;

/** Deterministic inputs. */
function input(shape: number[], dtype: DType, f: (i: number) => number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(Float32Array.from({ length: n }, (_, i) => f(i)), shape, dtype).keep();
}

/** A LoRA network on the U-Net alone (no text encoder is built). */
function loraNetwork(unet: UNet2DConditionModel): LoraNetwork {
  const model = { unet, textEncoder: { modules: () => [] } } as unknown as Parameters<
    typeof createNetwork
  >[0];
  const net = createNetwork(model, {
    dim: DIM,
    alpha: ALPHA,
    unetOnly: true,
    seed: 1,
  });
  const rng = uniformRandom(2);
  for (const m of net.modules) {
    for (const up of m.ups) {
      overwriteTensor(up, Float32Array.from({ length: up.size }, () => (2 * rng() - 1) * UP_INIT));
    }
  }
  net.applyTo();
  return net;
}

/** One training step as core/train/loop.ts runs it. */
async function trainStep(
  unet: UNet2DConditionModel,
  latents: Tensor,
  ctx: Tensor,
  target: Tensor,
  opt: AdamW,
  scaler: LossScaler | null,
): Promise<void> {
  const loss = scope(() => mseLoss(unet.forward(latents, [TIMESTEP], ctx), target));
  const root = scaler ? mul(loss, scaler.scaleTensor) : loss;
  backward(root);
  if (root !== loss) root.dispose();
  loss.dispose();
  if (scaler) {
    const r = await scaler.step(opt, { maxNorm: MAX_NORM });
    r.clip?.dispose();
  } else {
    const clip = clipGradNorm(opt.groups.flatMap((g) => g.params), MAX_NORM);
    opt.update({ gradScaleTensor: clip.scale });
    clip.dispose();
  }
  opt.zeroGrad();
}

/** Time and measure one case on a built model. `before`: live pool bytes before the weights. */
async function runCase(
  c: Case,
  unet: UNet2DConditionModel,
  net: LoraNetwork,
  before: number,
  weightBytes: number,
): Promise<Measured> {
  const config = MODELS[c.model].config;
  const latents = input([1, 4, c.latent, c.latent], c.dtype, Math.sin);
  const target = input([1, 4, c.latent, c.latent], c.dtype, (i) => Math.cos(0.7 * i));
  const ctx = input([1, CONTEXT, config.crossAttentionDim], c.dtype, (i) => Math.sin(0.3 * i));
  const opt = new AdamW([{ params: net.parameters(), lr: LR }], { lr: LR, weightDecay: 0.01 });
  const scaler = c.dtype === "f16" ? new LossScaler() : null;
  const undo = c.gc ? enableGradientCheckpointing(unet) : null;
  let steps = 0;
  const step = async () => {
    steps++;
    await trainStep(unet, latents, ctx, target, opt, scaler);
  };
  try {
    await rt().sync();
    rt().storage.resetPeak();
    const t0 = performance.now();
    await step();
    await rt().sync();
    const first = (performance.now() - t0) / 1000;
    const slow = first > SLOW_SECONDS;
    const seconds = slow ? first : await timeGpu(step, { warmup: 0, iters: 5, minSeconds: 20 });
    const peak = rt().storage.stats().peakBytes - before;
    const notes = [
      `peak pool ${mib(peak)} (weights ${mib(weightBytes)})`,
      slow ? "one run, incl. compiles" : `first run ${first.toFixed(2)} s with compiles`,
    ];
    if (scaler) {
      await scaler.settle();
      notes.push(`loss scale ${scaler.scale}, ${scaler.skippedSteps}/${steps} steps skipped`);
    }
    return { case: c, seconds, note: notes.join("; ") };
  } catch (e) {
    return { case: c, seconds: NaN, note: `did not run: ${firstLine(e)}` };
  } finally {
    undo?.();
    scaler?.dispose();
    opt.dispose();
    latents.dispose();
    target.dispose();
    ctx.dispose();
  }
}

/** LoRA module and parameter counts of a network. */
interface LoraCount {
  modules: number;
  params: number;
}

/** The cases of one model in one dtype, on one set of weights and one network. */
async function runModel(
  kind: ModelKind,
  dtype: DType,
  cases: Case[],
  counts: Partial<Record<ModelKind, LoraCount>>,
): Promise<Measured[]> {
  const config = MODELS[kind].config;
  await rt().sync();
  const before = rt().storage.stats().liveBytes;
  const weights = randomWeights(expectedTensors(sdConfig(config)), "unet", { dtype, seed: 7 });
  const weightBytes = rt().storage.stats().liveBytes - before;
  const unet = new UNet2DConditionModel(weights, config);
  let net: LoraNetwork | null = null;
  try {
    net = loraNetwork(unet);
    counts[kind] = {
      modules: net.modules.length,
      params: net.parameters().reduce((a, p) => a + p.size, 0),
    };
    const out: Measured[] = [];
    for (const c of cases) out.push(await runCase(c, unet, net, before, weightBytes));
    return out;
  } finally {
    net?.dispose();
    unet.dispose();
  }
}

/** What the peer reports for one case. */
interface PeerCase {
  seconds?: number;
  /** Threads of the kept CPU timing, and the timing with each thread count tried. */
  threads?: number;
  seconds_by_threads?: Record<string, number>;
  peak_bytes?: number;
  skipped?: string;
}

/** The peer's side of one row: its seconds, label and a note. */
function joinPeer(
  m: Measured,
  peer: Record<string, unknown> | null,
  ours: Partial<Record<ModelKind, LoraCount>>,
  adapter: string,
): BenchRow {
  const row: BenchRow = { name: m.case.name, seconds: m.seconds };
  const notes: string[] = [];
  const r = peer?.[m.case.name] as PeerCase | undefined;
  if (!peer) notes.push("no peer");
  else if (r?.skipped) notes.push(`peer skipped: ${r.skipped}`);
  else if (r?.seconds !== undefined) {
    row.peerSeconds = r.seconds;
    row.peer = peerLabel(r.threads ? { ...peer, threads: r.threads } : peer);
    if (r.peak_bytes !== undefined) notes.push(`peer peak ${mib(r.peak_bytes)}`);
    const by = Object.entries(r.seconds_by_threads ?? {});
    if (by.length > 1) {
      notes.push(`peer ${by.map(([k, s]) => `${s.toFixed(3)} s x${k}`).join(", ")}`);
    }
    const theirs = (peer.lora as Record<string, LoraCount> | undefined)?.[m.case.model];
    const mine = ours[m.case.model];
    if (theirs && mine && (theirs.modules !== mine.modules || theirs.params !== mine.params)) {
      notes.push(
        `peer LoRA ${theirs.modules} modules/${theirs.params} params != ours ` +
          `${mine.modules}/${mine.params}`,
      );
    }
  }
  row.note = [m.note, adapter, ...notes].join("; ");
  return row;
}

/** Every case that applies here, then the peer on the cases that ran; failures are rows. */
export async function bench(): Promise<BenchRow[]> {
  await initGpu();
  const gpu = await getGpu();
  const full = !gpu.isSoftware || Deno.env.get("LORAKIT_BENCH_FULL") === "1";
  const runs = (c: Case) =>
    c.when === "always" || (c.when === "full" && full) ||
    (c.when === "hardware" && !gpu.isSoftware);
  const measured: Measured[] = [];
  const skipped: BenchRow[] = [];
  const counts: Partial<Record<ModelKind, LoraCount>> = {};
  for (const c of CASES.filter((c) => !runs(c))) {
    const why = c.when === "full"
      ? "skipped on a software adapter (LORAKIT_BENCH_FULL=1 runs it)"
      : "skipped on a software adapter (hardware adapters only)";
    skipped.push({ name: c.name, seconds: NaN, note: why });
  }
  for (const kind of ["tiny", "sd15"] as const) {
    for (const dtype of ["f32", "f16"] as const) {
      const cases = CASES.filter((c) => c.model === kind && c.dtype === dtype && runs(c));
      if (cases.length === 0) continue;
      if (dtype === "f16" && !gpu.hasF16) {
        for (const c of cases) {
          measured.push({ case: c, seconds: NaN, note: "did not run: no shader-f16 here" });
        }
        continue;
      }
      measured.push(...await measureCases(cases, () => runModel(kind, dtype, cases, counts)));
    }
  }
  const peerCpu = await releaseForPeer();
  const ran = measured.filter((m) => Number.isFinite(m.seconds)).map(({ case: c }) => ({
    name: c.name,
    model: c.model,
    latent: c.latent,
    dtype: c.dtype,
    gc: c.gc,
    iters: !peerCpu ? 10 : c.model === "tiny" ? 5 : c.latent === 32 ? 2 : 1,
  }));
  const peer = ran.length
    ? await runPeer("train_step.py", { cases: ran, dim: DIM, alpha: ALPHA, up_init: UP_INIT })
    : null;
  const peerLora = peer?.lora as Record<string, LoraCount> | undefined;
  for (const kind of Object.keys(counts) as ModelKind[]) {
    console.error(
      `train_step LoRA on ${MODELS[kind].label}: ours ${counts[kind]!.modules} modules / ` +
        `${counts[kind]!.params} params, peer ${peerLora?.[kind]?.modules ?? "-"} / ` +
        `${peerLora?.[kind]?.params ?? "-"}`,
    );
  }
  const order = (name: string) => CASES.findIndex((c) => c.name === name);
  return [...measured.map((m) => joinPeer(m, peer, counts, gpu.description)), ...skipped]
    .sort((a, b) => order(a.name) - order(b.name));
}

if (import.meta.main) console.log(table(await bench()));
