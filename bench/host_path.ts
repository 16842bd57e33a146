/**
 * The host path, counted: what one training step and one U-Net forward cost the CPU before any
 * GPU work — dispatches, new bind groups, uniform writes, submits, awaited read-backs, and host
 * microseconds per dispatch with every dispatch made empty (zero workgroups), so the CPU cost
 * stands alone (time inside `queue.submit` is left out: lavapipe does per-dispatch work there
 * even for empty dispatches, ~1 ms for a large GEMM kernel, which a hardware driver does not). For the U-Net it also reports, per kernel family, the FLOP-weighted median of
 * threads per GEMM/conv/attention dispatch at SD 1.5's 64x64 latents (512x512 px): how much of a
 * real GPU one such dispatch can fill (an H100 holds ~270k resident threads).
 *
 * - train_network on sd1-tiny (the fixture), 64x64 px, LoRA dim 8, AdamW, cached latents:
 *   steady-state counters per step (the first steps compile pipelines and fill the pool).
 * - U-Net forward, SD 1.5 shapes (random f16 weights), 64x64 latents, batch 1.
 *
 * Run alone: `deno run -A bench/host_path.ts [--by-kernel]`.
 *
 * @module
 */
import { initGpu, noGrad, rt, scope, Tensor } from "../gpu/mod.ts";
import type { DispatchRecord, HostCounters } from "../gpu/runtime.ts";
import { setKernelFamily } from "../gpu/family.ts";
import { encodePng } from "../core/image/encode.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { trainNetwork } from "../core/train/loop.ts";
import { UNet2DConditionModel } from "../core/models/unet.ts";
import { randomWeights } from "../core/models/weights.ts";
import { expectedTensors } from "../core/model_config/keys.ts";
import { SD15_UNET, sdConfig } from "./unet.ts";

/** Counters per step (or per forward), averaged over the measured ones. */
export interface HostReport {
  name: string;
  per: HostCounters;
  /** Host microseconds per dispatch with empty dispatches. */
  usPerDispatch: number;
}

function diff(a: HostCounters, b: HostCounters, n: number): HostCounters {
  const out = {} as HostCounters;
  for (const k of Object.keys(a) as (keyof HostCounters)[]) out[k] = (b[k] - a[k]) / n;
  return out;
}

/** A DreamBooth folder `<dir>/img/2_sks` of `images` captioned 64x64 PNGs. */
export async function makeDataset(dir: string, images = 4): Promise<void> {
  await Deno.mkdir(`${dir}/img/2_sks`, { recursive: true });
  for (let k = 0; k < images; k++) {
    const data = new Uint8Array(64 * 64 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * (k + 7) * 31) & 255;
    const png = await encodePng({ width: 64, height: 64, channels: 3, data });
    await Deno.writeFile(`${dir}/img/2_sks/${k}.png`, png);
    await Deno.writeTextFile(`${dir}/img/2_sks/${k}.txt`, `sks thing number ${k}`);
  }
}

/**
 * The measured command: train_network on `model` with the dataset of `makeDataset(dir)`,
 * 64x64 px, LoRA dim 8, AdamW, cached latents, `steps` steps.
 */
export function trainArgv(model: string, dir: string, steps: number, ...extra: string[]): string[] {
  return [
    "--pretrained_model_name_or_path",
    model,
    "--train_data_dir",
    `${dir}/img`,
    "--resolution",
    "64",
    "--output_dir",
    `${dir}/out`,
    "--output_name",
    "hp",
    "--network_module",
    "networks.lora",
    "--network_dim",
    "8",
    "--network_alpha",
    "8",
    "--learning_rate",
    "1e-3",
    "--optimizer_type",
    "AdamW",
    "--cache_latents",
    "--max_train_steps",
    String(steps),
    "--seed",
    "1",
    ...extra,
  ];
}

/** Counters and wall time at each step of a train_network run, as the step is encoded. */
async function trainRun(
  model: string,
  dir: string,
  steps: number,
  onStep?: (step: number) => void,
) {
  const args = await parseTrainArgs(trainArgv(model, dir, steps), { onNote: () => {} });
  const snaps: { c: HostCounters; t: number }[] = [];
  await trainNetwork(planTrainRun(args), {
    message: () => {},
    stepEncoded: (step) => {
      snaps.push({ c: rt().counters(), t: performance.now() });
      onStep?.(step);
    },
    remove: (p) => Deno.remove(p, { recursive: true }).catch(() => {}),
  });
  return snaps;
}

/**
 * Counters per training step in the steady state (the first steps compile pipelines and fill the
 * pool), sampled as each step is encoded; host us per dispatch likewise, with empty dispatches.
 */
export async function trainStepReport(model: string, byKernel = false): Promise<HostReport> {
  await initGpu();
  const dir = await Deno.makeTempDir({ prefix: "lorakit-hostpath-" });
  try {
    await makeDataset(dir);
    const warm = 3, measured = 6, steps = warm + measured;
    const snaps = await trainRun(model, dir, steps);
    const per = diff(snaps[warm - 1].c, snaps[steps - 1].c, measured);
    if (byKernel) {
      const records: DispatchRecord[] = [];
      rt().profile = null;
      await trainRun(model, dir, steps, (step) => {
        if (step === warm) rt().profile = records;
        if (step === steps) rt().profile = null;
      });
      printByKernel(records, measured);
    }
    rt().emptyDispatches = true;
    const samples: number[] = [];
    try {
      // The median of three runs: the driver's threads share the CPU with the host.
      for (let i = 0; i < 3; i++) {
        const e = await trainRun(model, dir, steps);
        const a = e[warm - 1], b = e[steps - 1];
        // The software driver works inside queue.submit even for empty dispatches: not host path.
        const hostMs = b.t - a.t - (b.c.submitMs - a.c.submitMs);
        samples.push((hostMs * 1000) / (b.c.dispatches - a.c.dispatches));
      }
    } finally {
      rt().emptyDispatches = false;
    }
    const usPerDispatch = samples.sort((x, y) => x - y)[1];
    return { name: "train_network step, sd1-tiny 64x64 px, dim 8, AdamW", per, usPerDispatch };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Dispatches per kernel per step. */
function printByKernel(records: DispatchRecord[], steps: number): void {
  const by = new Map<string, number>();
  for (const r of records) {
    const k = r.key.split("|").slice(0, 2).join("|");
    by.set(k, (by.get(k) ?? 0) + 1 / steps);
  }
  const rows = [...by].sort((a, b) => b[1] - a[1]);
  for (const [k, c] of rows) console.error(`${c.toFixed(1).padStart(8)}  ${k}`);
}

/** FLOP-weighted median of threads per dispatch over the records that state FLOPs. */
export function flopWeightedMedianThreads(records: DispatchRecord[]): number {
  const rs = records.filter((r) => r.flops > 0).sort((a, b) => a.threads - b.threads);
  const total = rs.reduce((s, r) => s + r.flops, 0);
  let acc = 0;
  for (const r of rs) {
    acc += r.flops;
    if (acc >= total / 2) return r.threads;
  }
  return 0;
}

/** One SD 1.5 U-Net forward at 64x64 latents: counters, host us per dispatch, threads. */
export async function unetForwardReport(): Promise<{ report: HostReport; threads: string }> {
  await initGpu();
  const weights = randomWeights(expectedTensors(sdConfig()), "unet", { dtype: "f16", seed: 7 });
  const unet = new UNet2DConditionModel(weights, SD15_UNET);
  const forward = () =>
    noGrad(() =>
      scope(() => {
        const x = Tensor.zeros([1, 4, 64, 64], "f16");
        const ctx = Tensor.zeros([1, 77, 768], "f16");
        unet.forward(x, [500], ctx).dispose();
      })
    );
  rt().emptyDispatches = true;
  const threads: string[] = [];
  try {
    // Two forwards first: pipelines, then the pool's steady state (the same buffers each time).
    for (let i = 0; i < 2; i++) {
      forward();
      await rt().sync();
    }
    const c0 = rt().counters(), t0 = performance.now();
    forward();
    rt().flush();
    const c1 = rt().counters(), t1 = performance.now() - (c1.submitMs - c0.submitMs);
    await rt().sync();
    for (const family of ["software", "hardware"] as const) {
      setKernelFamily(family);
      const records: DispatchRecord[] = rt().profile = [];
      forward();
      threads.push(`${family} ${flopWeightedMedianThreads(records)}`);
      rt().profile = null;
      await rt().sync();
    }
    setKernelFamily(null);
    const per = diff(c0, c1, 1);
    return {
      report: {
        name: "U-Net forward, SD 1.5 shapes, 64x64 latents, f16",
        per,
        usPerDispatch: ((t1 - t0) * 1000) / per.dispatches,
      },
      threads: threads.join(", "),
    };
  } finally {
    rt().emptyDispatches = false;
    unet.dispose();
  }
}

/** The report as a markdown table. */
export function hostTable(reports: HostReport[]): string {
  const head =
    "| case | dispatches | new bind groups | uniform writes | all writeBuffer | submits | " +
    "awaited read-backs | host us / dispatch |\n|---|---|---|---|---|---|---|---|\n";
  return head + reports.map((r) => {
    const p = r.per;
    return `| ${r.name} | ${p.dispatches.toFixed(0)} | ${p.bindGroupsCreated.toFixed(1)} | ` +
      `${p.uniformWrites.toFixed(1)} | ${p.bufferWrites.toFixed(1)} | ${p.submits.toFixed(1)} | ` +
      `${p.awaitedReads.toFixed(1)} | ${r.usPerDispatch.toFixed(1)} |`;
  }).join("\n") + "\n";
}

/**
 * The whole report as markdown (for `deno task bench`): the training step needs the sd1-tiny
 * fixture (`../shared/fixtures` or `$LORAKIT_FIXTURES`) and is left out without it.
 */
export async function report(opts: { byKernel?: boolean; trainOnly?: boolean } = {}) {
  const root = Deno.env.get("LORAKIT_FIXTURES") ??
    new URL("../../shared/fixtures", import.meta.url).pathname;
  const model = `${root}/sd1-tiny/model.safetensors`;
  const reports: HostReport[] = [];
  const notes: string[] = [];
  if (await Deno.stat(model).then(() => true, () => false)) {
    reports.push(await trainStepReport(model, opts.byKernel));
  } else notes.push(`(training step skipped: ${model} not found)`);
  if (!opts.trainOnly) {
    const u = await unetForwardReport();
    reports.push(u.report);
    notes.push(
      `FLOP-weighted median threads per GEMM/conv/attention dispatch of the SD 1.5 U-Net ` +
        `forward at 64x64 latents, per kernel family: ${u.threads}.`,
    );
  }
  return `## Host path

${hostTable(reports)}
${notes.join("\n")}
`;
}

if (import.meta.main) {
  console.log(
    await report({
      byKernel: Deno.args.includes("--by-kernel"),
      trainOnly: Deno.args.includes("--train-only"),
    }),
  );
}
