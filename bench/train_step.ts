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
 * - the full-size SD 1.5 U-Net at 64x64 latents (512x512 px): on a hardware adapter only;
 * - SDXL as kohya's sdxl_train_network runs it (LierLa dim 16 on the U-Net, `--mixed_precision
 *   fp16`, gradient checkpointing, batch 1; the U-Net also takes the vector `y`): the sdxl-tiny
 *   architecture (../shared/fixtures/sdxl-tiny: 32/32/64 channels, no attention at level 0,
 *   transformer depth [1, 1, 2], head dim 16, linear projections, context 16, adm 56) at 64x64 px,
 *   always (f32 and f16, with and without checkpointing), and the full-size SDXL base U-Net at
 *   128x128 latents (1024x1024 px) in f16, on a hardware adapter only (or with
 *   `LORAKIT_BENCH_FULL=1`): its peak pool with checkpointing is the 12 GB question.
 * Before timing, one f32 forward of the sdxl-tiny U-Net (biases and norms randomised too) is
 * compared with the peer's on the same weights, which the bench writes to a temporary file by
 * internal name; the tiny SDXL peer also trains on those weights.
 * A first step longer than a minute (the full-size U-Net on lavapipe: ~5 minutes) is the case's
 * only timed run, pipeline compiles included; otherwise the median of up to 5 more.
 *
 * f32 trains an f32 U-Net; f16 is `--mixed_precision fp16` as core/train runs it: f16 U-Net
 * weights and activations, f32 LoRA factors, dynamic loss scaling (one flag read-back per step).
 * The peer's f16 is autocast with an f16 U-Net, f32 LoRA and GradScaler, as kohya runs it on
 * CUDA; PyTorch 1.13 has no f16 matmul or conv2d on the CPU, so there the row carries its error.
 *
 * Run alone: `deno run -A bench/train_step.ts [FILTER...]` (only the cases whose name contains
 * one of the filters, e.g. `sdxl-tiny`).
 *
 * @module
 */
import {
  AdamW,
  backward,
  cast,
  clipGradNorm,
  type DType,
  getGpu,
  initGpu,
  LossScaler,
  mseLoss,
  noGrad,
  reshape,
  rt,
  scope,
  Tensor,
} from "../gpu/mod.ts";
import { uniformRandom } from "../gpu/random.ts";
import type { UNetConfig } from "../core/model_config/config.ts";
import { type ExpectedTensor, unetTensors } from "../core/model_config/keys.ts";
import { UNet2DConditionModel } from "../core/models/unet.ts";
import { type ModelWeights, randomWeights } from "../core/models/weights.ts";
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
import { SD15_UNET } from "./unet.ts";

/** sd1-tiny's U-Net (../shared/fixtures/sd1-tiny/README.md), random weights. */
export const TINY_UNET: UNetConfig = {
  ...SD15_UNET,
  blockOutChannels: [32, 64, 64, 64],
  numHeads: [2, 2, 2, 2],
  headDim: [16, 32, 32, 32],
  crossAttentionDim: 32,
  timeEmbedDim: 128,
};

/** SDXL base 1.0's U-Net as diffusers configures it (2,567,463,684 parameters). */
export const SDXL_UNET: UNetConfig = {
  inChannels: 4,
  outChannels: 4,
  blockOutChannels: [320, 640, 1280],
  layersPerBlock: 2,
  downBlockTypes: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
  upBlockTypes: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  numHeads: [5, 10, 20],
  headDim: [64, 64, 64],
  transformerDepth: [0, 2, 10],
  midTransformerDepth: 10,
  crossAttentionDim: 2048,
  useLinearProjection: true,
  timeEmbedDim: 1280,
  normGroups: 32,
  normEps: 1e-5,
  transformerNormEps: 1e-6,
  layerNormEps: 1e-5,
  addEmbedding: { inChannels: 2816, timeIdEmbedDim: 256, numTimeIds: 6 },
};

/** sdxl-tiny's U-Net (../shared/fixtures/sdxl-tiny/README.md), random weights. */
export const SDXL_TINY_UNET: UNetConfig = {
  ...SDXL_UNET,
  blockOutChannels: [32, 32, 64],
  numHeads: [2, 2, 4],
  headDim: [16, 16, 16],
  transformerDepth: [1, 1, 2],
  midTransformerDepth: 2,
  crossAttentionDim: 16,
  timeEmbedDim: 128,
  addEmbedding: { inChannels: 56, timeIdEmbedDim: 8, numTimeIds: 6 },
};

type ModelKind = "tiny" | "sd15" | "sdxltiny" | "sdxl";

const MODELS: Record<ModelKind, { config: UNetConfig; label: string; sdxl: boolean }> = {
  tiny: { config: TINY_UNET, label: "sd1-tiny", sdxl: false },
  sd15: { config: SD15_UNET, label: "sd1.5", sdxl: false },
  sdxltiny: { config: SDXL_TINY_UNET, label: "sdxl-tiny", sdxl: true },
  sdxl: { config: SDXL_UNET, label: "sdxl", sdxl: true },
};

/**
 * Models whose random weights the peer gets too (by internal name): small ones, whose 1-D
 * tensors (biases, norm scales) are also randomised so that the forward check sees them.
 */
const SHARED_WEIGHTS: readonly ModelKind[] = ["sdxltiny"];

/** The bench's random U-Net weights for a model (seed 7), as the peer gets them. */
function modelWeights(kind: ModelKind, dtype: DType): ModelWeights {
  const specs = unetSpecs(MODELS[kind].config);
  const weights = randomWeights(specs, "unet", { dtype, seed: 7 });
  if (SHARED_WEIGHTS.includes(kind)) {
    const rng = uniformRandom(11);
    for (const { name, shape } of specs) {
      if (shape.length !== 1) continue;
      const base = /norm[^.]*\.weight$|layer_norm\d?\.weight$/.test(name) ? 1 : 0;
      const data = Float32Array.from({ length: shape[0] }, () => base + 0.2 * (2 * rng() - 1));
      overwriteTensor(weights.get(name), data);
    }
  }
  return weights;
}

/** The U-Net's tensors (internal names) in `randomWeights`' order. */
function unetSpecs(config: UNetConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [];
  unetTensors((name, shape) => out.push({ name, shape }), config);
  return out;
}

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

/**
 * Model, latent side, when it runs and its dtypes (default f32 and f16); each without and with
 * checkpointing. The full-size SDXL step is f16 as kohya trains it (an f32 SDXL U-Net alone is
 * 10 GB).
 */
const SIZES: [ModelKind, number, When, DType[]?][] = [
  ["tiny", 8, "always"],
  ["sd15", 32, "full"],
  ["sd15", 64, "hardware"],
  ["sdxltiny", 8, "always"],
  ["sdxl", 128, "full", ["f16"]],
];

const CASES: Case[] = [];
for (const dtype of ["f32", "f16"] as const) {
  for (const [model, latent, when, dtypes] of SIZES) {
    if (dtypes && !dtypes.includes(dtype)) continue;
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

/**
 * A LoRA network on the U-Net alone (no text encoder is built). SDXL's model has a second text
 * encoder and its U-Net config, so the network uses kohya's SDXL module names.
 */
function loraNetwork(unet: UNet2DConditionModel, kind: ModelKind): LoraNetwork {
  const none = { modules: () => [] };
  const model =
    (MODELS[kind].sdxl
      ? { unet, textEncoder: none, textEncoder2: none, config: { unet: MODELS[kind].config } }
      : { unet, textEncoder: none }) as unknown as Parameters<typeof createNetwork>[0];
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

/**
 * One training step as core/train/loop.ts runs it: the loss in f32 (as kohya's
 * `F.mse_loss(pred.float(), target.float())`); with a loss scaler the backward starts from the
 * scale (core/train/micro_batch.ts).
 */
async function trainStep(
  unet: UNet2DConditionModel,
  latents: Tensor,
  ctx: Tensor,
  y: Tensor | undefined,
  target: Tensor,
  opt: AdamW,
  scaler: LossScaler | null,
): Promise<void> {
  const f32 = (t: Tensor) => t.dtype === "f32" ? t : cast(t, "f32");
  const loss = scope(() =>
    reshape(mseLoss(f32(unet.forward(latents, [TIMESTEP], ctx, y)), f32(target)), [1])
  );
  backward(loss, scaler?.scaleTensor);
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
  const adm = config.addEmbedding?.inChannels;
  const y = adm ? input([1, adm], c.dtype, (i) => Math.cos(0.1 * i)) : undefined;
  const opt = new AdamW([{ params: net.parameters(), lr: LR }], { lr: LR, weightDecay: 0.01 });
  const scaler = c.dtype === "f16" ? new LossScaler() : null;
  const undo = c.gc ? enableGradientCheckpointing(unet) : null;
  let steps = 0;
  const step = async () => {
    steps++;
    await trainStep(unet, latents, ctx, y, target, opt, scaler);
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
    // Progress on stderr: the row survives a run cut short before the peer's turn.
    console.error(`train_step ${c.name}: ${seconds.toFixed(4)} s; ${notes.join("; ")}`);
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
    y?.dispose();
  }
}

/** A model's weights as the peer reads them: raw f32 in one file, and [name, shape, offset]. */
interface SharedWeights {
  path: string;
  index: [string, number[], number][];
}

/** Write `weights` (every tensor of `specs`) to a temporary file for the peer. */
async function writeWeights(
  weights: ModelWeights,
  specs: readonly ExpectedTensor[],
): Promise<SharedWeights> {
  const path = await Deno.makeTempFile({ prefix: "lorakit-bench-", suffix: ".f32" });
  const index: SharedWeights["index"] = [];
  const file = await Deno.open(path, { write: true, truncate: true });
  try {
    let offset = 0;
    for (const { name, shape } of specs) {
      const data = await weights.get(name).toArray();
      index.push([name, shape, offset]);
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      for (let done = 0; done < bytes.length;) done += await file.write(bytes.subarray(done));
      offset += data.byteLength;
    }
  } finally {
    file.close();
  }
  return { path, index };
}

/**
 * One f32 forward of `kind`'s U-Net (the bench's weights, 8x8 latents, timestep 500, and for
 * SDXL the vector y): our output and inputs for the peer's `check`, and the weights it reads.
 */
async function forwardCheck(
  kind: ModelKind,
): Promise<{ weights: SharedWeights; check: Record<string, unknown> }> {
  const config = MODELS[kind].config;
  const fill = (n: number, f: (i: number) => number) =>
    Float32Array.from({ length: n }, (_, i) => f(i));
  const n = 8, adm = config.addEmbedding?.inChannels;
  const sample = fill(4 * n * n, Math.sin);
  const context = fill(CONTEXT * config.crossAttentionDim, (i) => Math.sin(0.3 * i));
  const y = adm ? fill(adm, (i) => Math.cos(0.1 * i)) : null;
  const weights = modelWeights(kind, "f32");
  const unet = new UNet2DConditionModel(weights, config);
  const xs = Tensor.fromArray(sample, [1, 4, n, n]).keep();
  const cs = Tensor.fromArray(context, [1, CONTEXT, config.crossAttentionDim]).keep();
  const ys = y ? Tensor.fromArray(y, [1, adm!]).keep() : undefined;
  try {
    const out = noGrad(() => unet.forward(xs, [TIMESTEP], cs, ys));
    const ours = await out.toArray();
    out.dispose();
    return {
      weights: await writeWeights(weights, unetSpecs(config)),
      check: {
        model: kind,
        timestep: TIMESTEP,
        sample: Array.from(sample),
        context: Array.from(context),
        y: y ? Array.from(y) : null,
        ours: Array.from(ours),
      },
    };
  } finally {
    xs.dispose();
    cs.dispose();
    ys?.dispose();
    unet.dispose();
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
  const weights = modelWeights(kind, dtype);
  const weightBytes = rt().storage.stats().liveBytes - before;
  const unet = new UNet2DConditionModel(weights, config);
  let net: LoraNetwork | null = null;
  try {
    net = loraNetwork(unet, kind);
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
  extra: Partial<Record<ModelKind, string>> = {},
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
  const more = extra[m.case.model];
  row.note = [m.note, adapter, ...notes, ...(more ? [more] : [])].join("; ");
  return row;
}

/**
 * Every case that applies here (and whose name contains one of `filters`, when given), then the
 * peer on the cases that ran; failures are rows.
 */
export async function bench(filters: readonly string[] = []): Promise<BenchRow[]> {
  await initGpu();
  const gpu = await getGpu();
  const full = !gpu.isSoftware || Deno.env.get("LORAKIT_BENCH_FULL") === "1";
  const runs = (c: Case) =>
    c.when === "always" || (c.when === "full" && full) ||
    (c.when === "hardware" && !gpu.isSoftware);
  const cases = CASES.filter((c) => !filters.length || filters.some((f) => c.name.includes(f)));
  const measured: Measured[] = [];
  const skipped: BenchRow[] = [];
  const counts: Partial<Record<ModelKind, LoraCount>> = {};
  for (const c of cases.filter((c) => !runs(c))) {
    const why = c.when === "full"
      ? "skipped on a software adapter (LORAKIT_BENCH_FULL=1 runs it)"
      : "skipped on a software adapter (hardware adapters only)";
    skipped.push({ name: c.name, seconds: NaN, note: why });
  }
  // Before timing: our forward against the peer's on the same weights.
  const shared: Partial<Record<ModelKind, SharedWeights>> = {};
  const checked: Partial<Record<ModelKind, string>> = {};
  const spec = { dim: DIM, alpha: ALPHA, up_init: UP_INIT };
  try {
    for (const kind of SHARED_WEIGHTS.filter((k) => cases.some((c) => c.model === k && runs(c)))) {
      const { weights, check } = await forwardCheck(kind);
      shared[kind] = weights;
      const r = await runPeer("train_step.py", {
        ...spec,
        cases: [],
        weights: { [kind]: weights },
        check,
      });
      const d = r?.check as { max_rel_diff: number; max_abs_diff: number } | undefined;
      checked[kind] = d
        ? `forward vs peer on the same weights (f32): max rel diff ${
          d.max_rel_diff.toExponential(1)
        }`
        : "forward vs peer: no peer";
      console.error(`train_step ${MODELS[kind].label} ${checked[kind]}`);
    }
    for (const kind of ["tiny", "sd15", "sdxltiny", "sdxl"] as const) {
      for (const dtype of ["f32", "f16"] as const) {
        const todo = cases.filter((c) => c.model === kind && c.dtype === dtype && runs(c));
        if (todo.length === 0) continue;
        if (dtype === "f16" && !gpu.hasF16) {
          for (const c of todo) {
            measured.push({ case: c, seconds: NaN, note: "did not run: no shader-f16 here" });
          }
          continue;
        }
        measured.push(...await measureCases(todo, () => runModel(kind, dtype, todo, counts)));
      }
    }
    const peerCpu = await releaseForPeer();
    const ran = measured.filter((m) => Number.isFinite(m.seconds)).map(({ case: c }) => ({
      name: c.name,
      model: c.model,
      latent: c.latent,
      dtype: c.dtype,
      gc: c.gc,
      iters: !peerCpu
        ? 10
        : c.model === "tiny" || c.model === "sdxltiny"
        ? 5
        : c.latent === 32
        ? 2
        : 1,
    }));
    const peer = ran.length
      ? await runPeer("train_step.py", { ...spec, cases: ran, weights: shared })
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
    return [...measured.map((m) => joinPeer(m, peer, counts, gpu.description, checked)), ...skipped]
      .sort((a, b) => order(a.name) - order(b.name));
  } finally {
    for (const w of Object.values(shared)) await Deno.remove(w.path).catch(() => {});
  }
}

if (import.meta.main) {
  console.log(table(await bench(Deno.args.filter((a) => !a.startsWith("-")))));
}
