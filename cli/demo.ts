/**
 * `lorakit demo` (`deno task demo`): the whole toolkit end to end with nothing downloaded. It
 * takes the tiny SD1 base model that ships with the repository (trained on the synthetic world of
 * `core/demo/world.ts`, which has no orange), writes a small captioned dataset whose trigger
 * word "lkdemo" means orange objects, trains a LoRA with the `train_network` tool on a kohya
 * command line, samples across LoRA multipliers (measuring the orange in each image), merges the
 * LoRA into the checkpoint and extracts it back, and writes `report.html` (self-contained) with
 * the loss curve, the sample grid and the round trip's numbers.
 *
 * @module
 */
import { resolve } from "node:path";
import { LorakitError } from "../core/errors.ts";
import { checkWritableDir, joinPath, listDir, makeDir, writeFileAtomic } from "../core/io/fs.ts";
import { mergeExtractRoundTrip, sampleAcrossMultipliers } from "../core/demo/evaluate.ts";
import type { MultiplierResponse } from "../core/demo/lora_effect.ts";
import {
  type OrangeCheck,
  orangeCheck,
  renderReport,
  type RoundTripResult,
} from "../core/demo/report.ts";
import { triggerCaption, writeSyntheticDataset } from "../core/demo/synthetic_dataset.ts";
import { installDemoBase } from "../core/demo/base_model.ts";
import { demoTrainArgs, samplePromptsText } from "../core/demo/train_command.ts";
import { pngsIn, readLossLog, summarizeLoss } from "../core/demo/train_log.ts";
import { initGpu } from "../gpu/mod.ts";
import { makeParser, runTool } from "./lora_cli.ts";

/** A tool's entry point, as `cli/main.ts` dispatches it. */
export type ToolMain = (args: string[]) => Promise<number>;

/** Options of {@link runDemo}. */
export interface DemoOptions {
  /** Output folder (default `out/demo`). */
  out: string;
  /** `--max_train_steps`. */
  steps: number;
  trainImages: number;
  regImages: number;
  seed: number;
  /** Sampler steps of the sample grid. */
  sampleSteps: number;
  networkDim: number;
  learningRate: number;
  /** Training batch size (default 4). */
  batchSize?: number;
  /** The training tool (default: `cli/train_network.ts`'s `main`). */
  trainer?: ToolMain;
  /** Progress lines (default: console.log). */
  log?: (line: string) => void;
}

/** What {@link runDemo} wrote. */
export interface DemoOutcome {
  reportPath: string;
  loraPath: string;
  totalSeconds: number;
  lossPoints: number;
  stages: { name: string; seconds: number }[];
  roundTrip: RoundTripResult;
  response: MultiplierResponse[];
  /** Orange objects per multiplier and in the merged model's images. */
  orange: OrangeCheck;
}

/**
 * The demo's trigger word (it stands for orange) and prompts, all with the trigger at the start
 * ({@link triggerCaption}: the base model's word positions are kept); the base model draws
 * such a prompt's object in a palette colour, never orange.
 */
export const TRIGGER = "lkdemo";
/** The LoRA's name (`--output_name`, `<lora:lkdemo:1>`). */
export const LORA_NAME = "lkdemo";
const PROMPTS = [
  triggerCaption(TRIGGER, "circle", "blue"),
  triggerCaption(TRIGGER, "square", "purple"),
  triggerCaption(TRIGGER, "triangle", "white"),
  triggerCaption(TRIGGER, "diamond", "green"),
  triggerCaption(TRIGGER, "circle", "black"),
];
const SEEDS = [11, 22, 33, 55, 66];
const MULTIPLIERS = [0, 0.5, 1];
const RESPONSE_MULTIPLIERS = [0, 0.25, 0.5, 1, 2];
/**
 * `--min_snr_gamma`: the loss weighs the noisy timesteps, where a flat object's colour is
 * decided, over the nearly clean ones (the base model was trained with the same weighting).
 */
const MIN_SNR_GAMMA = 5;
/** Classifier-free guidance scale of every sample. */
const GUIDANCE = 5;

/** Default settings (about 5 minutes on a 2-core machine with the software adapter). */
export const DEMO_DEFAULTS: Omit<DemoOptions, "trainer" | "log"> = {
  out: "out/demo",
  steps: 200,
  trainImages: 12,
  regImages: 8,
  seed: 42,
  sampleSteps: 16,
  networkDim: 8,
  learningRate: 6e-3,
};

/** The file that marks a folder as the demo's, so a rerun may clear what it wrote before. */
const MARKER = ".lorakit-demo";

/**
 * Make `out` the demo's folder: a new or empty folder gets the marker; a non-empty folder
 * without it is refused, so the demo never deletes files it did not write.
 */
async function claimOutDir(out: string): Promise<void> {
  // A read-only disk would otherwise pass makeDir (when the folder exists) and fail later.
  await checkWritableDir(out, "--out");
  await makeDir(out);
  const entries = await listDir(out);
  if (entries.length > 0 && !entries.some((e) => e.name === MARKER)) {
    throw new LorakitError(
      `--out ${out}: expected a new or empty folder (or one an earlier demo run wrote), found ` +
        `${entries.length} entries and no ${MARKER} marker; choose another folder`,
    );
  }
  await writeFileAtomic(joinPath(out, MARKER), "written by lorakit demo\n");
}

/** Delete a folder the demo owns from a previous run, so stale logs are never read. */
async function clearDir(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await makeDir(path);
}

/** Run the whole demo; throws a LorakitError when a stage fails. */
export async function runDemo(opts: DemoOptions): Promise<DemoOutcome> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const t0 = performance.now();
  const out = resolve(opts.out);
  const dirs = {
    base: joinPath(out, "base"),
    data: joinPath(out, "data"),
    lora: joinPath(out, "lora"),
    logs: joinPath(out, "logs"),
    roundTrip: joinPath(out, "round_trip"),
    images: joinPath(out, "images"),
  };
  await claimOutDir(out);
  for (const d of Object.values(dirs)) await clearDir(d);
  const stages: { name: string; seconds: number }[] = [];
  const total = 6;
  const stage = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    log(`[${stages.length + 1}/${total}] ${name}`);
    const s0 = performance.now();
    const r = await fn();
    const seconds = (performance.now() - s0) / 1000;
    stages.push({ name, seconds });
    log(`      done in ${seconds.toFixed(1)} s`);
    return r;
  };
  const sub = (what: string) => log(`      ${what}`);
  const notes: string[] = [];

  await initGpu();
  const modelPath = joinPath(dirs.base, "lkdemo_base.safetensors");
  await stage(
    "base model: tiny SD1 trained on the synthetic world",
    () => installDemoBase(modelPath),
  );
  const data = await stage(
    "dataset: synthetic shapes with captions",
    () =>
      writeSyntheticDataset({
        dir: dirs.data,
        trainImages: opts.trainImages,
        regImages: opts.regImages,
        trigger: TRIGGER,
        seed: opts.seed,
        batchSize: opts.batchSize ?? 4,
      }),
  );
  const sampleSettings = {
    negativePrompt: "",
    width: 64,
    height: 64,
    steps: opts.sampleSteps,
    sampler: "ddim",
    guidanceScale: GUIDANCE,
  };
  const promptsFile = joinPath(dirs.data, "sample_prompts.txt");
  await writeFileAtomic(
    promptsFile,
    samplePromptsText([{
      prompt: PROMPTS[0],
      negative: "",
      width: 64,
      height: 64,
      seed: SEEDS[0],
      steps: opts.sampleSteps,
      scale: GUIDANCE,
    }]),
  );
  const trainArgs = demoTrainArgs({
    model: modelPath,
    datasetConfig: data.tomlPath,
    outputDir: dirs.lora,
    outputName: LORA_NAME,
    loggingDir: dirs.logs,
    steps: opts.steps,
    networkDim: opts.networkDim,
    networkAlpha: opts.networkDim,
    learningRate: opts.learningRate,
    unetOnly: true,
    minSnrGamma: MIN_SNR_GAMMA,
    seed: opts.seed,
    sampling: opts.steps >= 4 ? { everySteps: Math.ceil(opts.steps / 2), promptsFile } : null,
  });
  const loraPath = joinPath(dirs.lora, `${LORA_NAME}.safetensors`);
  await stage(`training: train_network, ${opts.steps} steps`, async () => {
    const train = opts.trainer ?? (await import("./train_network.ts")).main;
    const code = await train(trainArgs);
    if (code !== 0) throw new LorakitError(`demo: train_network exited with code ${code}`);
    try {
      await Deno.stat(loraPath);
    } catch {
      throw new LorakitError(`demo: train_network finished but wrote no ${loraPath}`);
    }
  });

  const loss = await readLossLog(dirs.logs);
  const lossSummary = loss === null ? null : await summarizeLoss(loss.points, loss.path);
  if (lossSummary === null) {
    notes.push(`No per-step loss log (*.jsonl) was found under ${dirs.logs}; no loss curve.`);
  } else {
    await writeFileAtomic(joinPath(dirs.images, "loss.png"), lossSummary.png);
    sub(
      `loss: first tenth ${lossSummary.firstMean.toFixed(4)}, last tenth ` +
        `${lossSummary.lastMean.toFixed(4)} over ${lossSummary.points} steps`,
    );
  }

  const samples = await stage(
    "samples: LoRA multipliers 0 / 0.5 / 1",
    () =>
      sampleAcrossMultipliers(modelPath, loraPath, {
        prompts: PROMPTS,
        seeds: SEEDS,
        multipliers: MULTIPLIERS,
        responseMultipliers: RESPONSE_MULTIPLIERS,
        settings: sampleSettings,
        onProgress: sub,
      }),
  );
  for (const [r, row] of samples.grid.rows.entries()) {
    for (const [c, png] of row.images.entries()) {
      await writeFileAtomic(joinPath(dirs.images, `p${r}_m${MULTIPLIERS[c]}.png`), png);
    }
  }

  const rt = await stage(
    "merge_lora + extract_lora_from_models round trip",
    () =>
      mergeExtractRoundTrip({
        baseModel: modelPath,
        lora: loraPath,
        mergedPath: joinPath(dirs.roundTrip, "merged.safetensors"),
        extractedPath: joinPath(dirs.roundTrip, "extracted.safetensors"),
        dim: opts.networkDim,
        prompts: PROMPTS,
        seeds: SEEDS,
        settings: sampleSettings,
        atOne: samples.atOne,
        onProgress: sub,
      }),
  );
  rt.mergedPngs?.forEach((png, i) => (samples.grid.rows[i].merged = png));
  rt.mergedOrange?.forEach((f, i) => (samples.grid.rows[i].mergedOrange = f));
  const orange = orangeCheck(samples.grid);
  for (const c of orange.counts) {
    sub(
      `${c.label}: orange objects in ${c.withOrange}/${c.total} images (mean orange ` +
        `fraction ${(100 * c.meanFraction).toFixed(1)}%)`,
    );
  }
  sub(orange.passed ? "the LoRA taught the new colour" : "the LoRA did not clearly teach orange");
  const c = rt.result.comparison;
  sub(
    `extracted vs trained deltas: overall relative error ${c.overallRelError.toExponential(2)}, ` +
      `worst module ${c.maxRelError.toExponential(2)}`,
  );
  if (rt.result.mergedVsApplied) {
    sub(
      `merged vs LoRA x1 images: max |diff| ${rt.result.mergedVsApplied.maxAbs.toExponential(2)}`,
    );
  }

  const reportPath = joinPath(out, "report.html");
  await stage("report", async () => {
    const totalSeconds = (performance.now() - t0) / 1000;
    const html = renderReport({
      generatedAt: new Date().toISOString(),
      totalSeconds,
      stages,
      settings: [
        ["base model", `${modelPath} (trained; copied from core/demo/base/)`],
        ["training images", `${data.train.length} (+ ${data.reg.length} regularization)`],
        [
          "steps / rank / learning rate",
          `${opts.steps} / ${opts.networkDim} / ${opts.learningRate}`,
        ],
        ["LoRA", loraPath],
      ],
      trainCommand: ["lorakit", "train_network", ...trainArgs],
      dataset: data.train.map((s, i) => ({ png: data.trainPngs[i], caption: s.caption })),
      datasetNote: `${data.train.length} training images (64x64) of orange objects, a ` +
        `colour the base model never saw, captioned with the trigger word "${TRIGGER}" in ` +
        `the colour's place, and ${data.reg.length} regularization images of the base ` +
        `world captioned without it. Dataset config: ${data.tomlPath}.`,
      loss: lossSummary,
      trainingSamples: await pngsIn(joinPath(dirs.lora, "sample")),
      samples: samples.grid,
      trigger: TRIGGER,
      response: samples.response,
      roundTrip: rt.result,
      notes,
    });
    await writeFileAtomic(reportPath, html);
  });
  const totalSeconds = (performance.now() - t0) / 1000;
  log(`report: ${reportPath}`);
  log(`total: ${totalSeconds.toFixed(1)} s`);
  return {
    reportPath,
    loraPath,
    totalSeconds,
    lossPoints: loss?.points.length ?? 0,
    stages,
    roundTrip: rt.result,
    response: samples.response,
    orange,
  };
}

interface DemoArgs {
  out: string;
  steps: number;
  images: number;
  reg_images: number;
  seed: number;
  sample_steps: number;
  network_dim: number;
  learning_rate: number;
}

/** `lorakit demo [--out DIR] [--steps N] ...`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const p = makeParser(
    "demo",
    "Run lorakit end to end with nothing downloaded: a tiny trained SD1 base model, a " +
      "synthetic dataset that teaches it orange, LoRA training with train_network, samples across multipliers, a " +
      "merge/extract round trip, and an HTML report (<out>/report.html).",
  );
  const d = DEMO_DEFAULTS;
  p.add_argument("--out", { default: d.out, help: `output folder (default ${d.out})` });
  p.add_argument("--steps", {
    type: "int",
    default: d.steps,
    help: `training steps (default ${d.steps})`,
  });
  p.add_argument("--images", {
    type: "int",
    default: d.trainImages,
    help: `training images (default ${d.trainImages})`,
  });
  p.add_argument("--reg_images", {
    type: "int",
    default: d.regImages,
    help: `regularization images, 0 for none (default ${d.regImages})`,
  });
  p.add_argument("--seed", { type: "int", default: d.seed, help: `seed (default ${d.seed})` });
  p.add_argument("--sample_steps", {
    type: "int",
    default: d.sampleSteps,
    help: `sampler steps of the sample grid (default ${d.sampleSteps})`,
  });
  p.add_argument("--network_dim", {
    type: "int",
    default: d.networkDim,
    help: `LoRA rank (default ${d.networkDim})`,
  });
  p.add_argument("--learning_rate", {
    type: "float",
    default: d.learningRate,
    help: `learning rate (default ${d.learningRate})`,
  });
  return await runTool<DemoArgs>(p, args, async (a) => {
    for (
      const [flag, v, min] of [
        ["--steps", a.steps, 1],
        ["--images", a.images, 1],
        ["--reg_images", a.reg_images, 0],
        ["--sample_steps", a.sample_steps, 1],
        ["--network_dim", a.network_dim, 1],
      ] as const
    ) {
      if (!Number.isInteger(v) || v < min) {
        throw new LorakitError(`${flag}: expected an integer >= ${min}, found ${v}`);
      }
    }
    if (!(a.learning_rate > 0)) {
      throw new LorakitError(
        `--learning_rate: expected a positive number, found ${a.learning_rate}`,
      );
    }
    await runDemo({
      out: a.out,
      steps: a.steps,
      trainImages: a.images,
      regImages: a.reg_images,
      seed: a.seed,
      sampleSteps: a.sample_steps,
      networkDim: a.network_dim,
      learningRate: a.learning_rate,
    });
    return 0;
  });
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
