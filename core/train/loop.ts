/**
 * `trainNetwork(plan, io)`: kohya's train_network loop for SD 1.x/2.x LoRA. Per batch: latents
 * (cached, or the VAE on the decoded images), the noise, timesteps and loss weights of
 * batch_targets.ts, the forward and loss of step.ts, backward (divided by the accumulation steps,
 * times the loss scale under fp16), then at each accumulation boundary the optimizer step of
 * optimizer_step.ts at the scheduled lr, max-norm regularization, progress, saves, states and
 * samples. The next batch is loaded while the GPU works on the current one, its images decoded by
 * the data loader's workers, which are stopped after each epoch (unless persistent) and whenever
 * the run ends, fails or is interrupted.
 *
 * File removal, progress output, the log and interruption come through {@link TrainIo}, so this
 * module stays on web-standard APIs.
 *
 * @module
 */
import { LossScaler, rt } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { checkLatentCacheFolders, checkTrainOutputs } from "./output_checks.ts";
import { BatchLoader, type HostBatch, planEpoch } from "./data_loader.ts";
import { cacheRunLatents } from "./latent_cache.ts";
import { sdxlStepModel } from "./sdxl_session.ts";
import {
  cacheTextOutputs,
  checkTextOutputsCacheable,
  checkTextOutputsFolders,
} from "./te_output_cache.ts";
import { DdpmSchedule } from "./noise_schedule.ts";
import { applyMaxNorm } from "./network_training.ts";
import type { TrainSummary } from "./progress.ts";
import { epochScalars, kohyaLrGroups } from "./step_logs.ts";
import { type StepReport, StepReporter } from "./step_report.ts";
import { PendingLosses } from "./pending_losses.ts";
import { type MicroBatchRun, trainMicroBatch } from "./micro_batch.ts";
import { optimizerStep } from "./optimizer_step.ts";
import type { TrainIo } from "./train_io.ts";
import type { TrainPlan } from "../kohya/plan_types.ts";
import { readSamplePrompts } from "./train_samples.ts";
import { type SaveContext, Saver } from "./train_saves.ts";
import {
  checkMemory,
  loadSessionModel,
  makeSchedule,
  mergeBaseWeights,
  setupNetwork,
} from "./train_session.ts";
import { prepareData } from "./train_setup.ts";
import { loadTrainState, readStateSeed } from "./checkpoint_state.ts";
import { formatBytes } from "./progress.ts";

/** What a run returns. */
export interface TrainResult {
  summary: TrainSummary;
  /** The loss of every optimizer step of this run, in order (index = global step - 1). */
  losses: { step: number; loss: number }[];
  interrupted: boolean;
}

export type { TrainIo };

/** Run train_network. */
export async function trainNetwork(plan: TrainPlan, io: TrainIo): Promise<TrainResult> {
  const t0 = performance.now();
  const resume = plan.saving.resume;
  // Outputs must be writable before any model is loaded or step trained.
  await checkTrainOutputs(plan);
  // The prompt file is read now, so a bad line fails before training, not at the first sample.
  if (plan.sampling.prompts !== null) await readSamplePrompts(plan.sampling.prompts);
  const note = (m: string) => io.message(m);
  // Without a seed, a resumed run continues with the seed its state was saved with.
  const seed = plan.seed ??
    (resume !== null ? await readStateSeed(resume) : Math.floor(Math.random() * 2 ** 32));
  const data = await prepareData(plan.data);
  if (plan.data.cacheLatentsToDisk) await checkLatentCacheFolders(data);
  if (plan.data.cacheTextEncoderOutputs) {
    checkTextOutputsCacheable(data, data.label);
    if (plan.data.cacheTextEncoderOutputsToDisk) await checkTextOutputsFolders(data);
  }
  for (const m of data.messages) note(m);
  const model = await loadSessionModel(plan, note);
  let session: Awaited<ReturnType<typeof setupNetwork>> | null = null;
  let loader: BatchLoader | null = null;
  let scaler: LossScaler | null = null;
  try {
    await mergeBaseWeights(model.sd, plan.model.baseWeights, note);
    session = await setupNetwork(model, plan, seed, note);
    const { net, optimizer, params } = session;
    const lrGroups = kohyaLrGroups(
      net.modules.map((m) => m.spec),
      plan.network,
      plan.optimizer,
      net.sdxl,
    );
    const est = await checkMemory(model, session, plan, data);
    note(
      `estimated GPU memory: ${formatBytes(est.total)} (weights ${formatBytes(est.weights)}, ` +
        `LoRA+optimizer ${formatBytes(est.lora)}, activations ${formatBytes(est.activations)}` +
        (est.vae > 0 ? `, VAE ${formatBytes(est.vae)}` : "") + ")",
    );
    const cache = plan.data.cacheLatents
      ? await cacheRunLatents(model.vae, data, plan, seed, note)
      : null;
    if (plan.data.cacheTextEncoderOutputs && model.sdxl) {
      const t = await cacheTextOutputs(model.sdxl, data, {
        toDisk: plan.data.cacheTextEncoderOutputsToDisk,
        modelId: plan.model.path,
        maxTokenLength: plan.model.maxTokenLength,
      });
      model.stepModel = sdxlStepModel(model.sdxl, t.cache);
      note(`text encoder outputs: ${t.computed} captions encoded, ${t.reused} reused from disk`);
    }
    const sched = makeSchedule(plan.schedule, data, plan.optimizer.learningRate);
    if (sched.batchesPerEpoch === 0) throw new LorakitError("no batches: every image was skipped");
    const fingerprint = `${net.moduleName} modules=${net.modules.length} params=${params.length} ` +
      `optimizer=${optimizer.type} args=${JSON.stringify(net.networkArgs)}`;
    const saver = new Saver({
      plan,
      io,
      data,
      model,
      session,
      seed,
      schedule: sched,
      startedAt: Date.now() / 1000,
      fingerprint,
    });
    scaler = plan.precision.fp16 ? new LossScaler() : null;
    let step = 0, startEpoch = 1, startBatch = 0;
    if (resume !== null) {
      const st = await loadTrainState(resume, params, optimizer, fingerprint);
      if (st.seed !== seed) {
        throw new LorakitError(
          `--resume ${resume}: the state was saved with --seed ${st.seed}; pass the same seed`,
        );
      }
      ({ step, epoch: startEpoch, batchInEpoch: startBatch } = st);
      if (scaler && st.scaler) scaler.setState(st.scaler.scale, st.scaler.growthTracker);
      note(`resumed from ${resume}: step ${step}, epoch ${startEpoch}`);
    }
    note(
      `running training: ${data.numTrainImages} train images (with repeats), ` +
        `${data.numRegImages} reg images, ${sched.batchesPerEpoch} batches per epoch, ` +
        `${sched.numEpochs} epochs, ${sched.maxTrainSteps} steps`,
    );
    const batches = new BatchLoader(data, {
      seed,
      tokenizer: model.tokenizer,
      tokenizer2: model.tokenizer2 ?? undefined,
      maxTokenLength: plan.model.maxTokenLength,
      resizeInterpolation: plan.data.resizeInterpolation,
      cache,
      workers: plan.data.workers,
      persistentWorkers: plan.data.persistentWorkers,
    });
    loader = batches;
    const accum = plan.schedule.gradientAccumulationSteps;
    const run: MicroBatchRun = {
      model,
      session,
      schedule: new DdpmSchedule(),
      loss: { ...plan.loss, vParameterization: plan.model.vParameterization },
      seed,
      scaler,
      accumulationSteps: accum,
    };
    const reported = new Set<string>();
    let interrupted = false;
    let epochNow = 0, epochLogged = 0;
    const reporter = new StepReporter({
      io,
      schedule: sched,
      optimizer,
      lrGroups,
      unetOnly: plan.network.unetOnly,
      scaler,
      startEpoch,
    });
    rt().storage.resetPeak();
    if (plan.sampling.atFirst) await saver.sample(0, null);
    const pendingLosses = new PendingLosses<StepReport>((loss, r) => reporter.report(loss, r));
    const saveCtx = (epoch: number, batchInEpoch: number): SaveContext => ({
      step,
      epoch,
      batchInEpoch,
      scaler,
    });
    outer: for (let epoch = 1; epoch <= sched.numEpochs; epoch++) {
      const order = planEpoch(data, seed, epoch);
      if (epoch < startEpoch) continue;
      epochNow = epoch;
      let accumulated = 0;
      let pending: Promise<HostBatch> | null = null;
      const first = epoch === startEpoch ? startBatch : 0;
      const ctxOf = (bi: number) => ({
        epoch,
        step: (epoch - 1) * sched.updatesPerEpoch + Math.floor(bi / accum),
        maxTrainSteps: sched.maxTrainSteps,
        micro: (epoch - 1) * order.length + bi,
      });
      for (let bi = first; bi < order.length; bi++) {
        if (step >= sched.maxTrainSteps) break outer;
        const ctx = ctxOf(bi);
        const hb = await (pending ?? batches.load(order[bi], ctx));
        pending = bi + 1 < order.length ? batches.load(order[bi + 1], ctxOf(bi + 1)) : null;
        // Handled here so that a load still in flight when training stops never goes unhandled.
        pending?.catch(() => {});
        for (const f of hb.failed) {
          if (!reported.has(f.key)) note(`skipped ${f.key}: ${f.reason}`);
          reported.add(f.key);
        }
        if (hb.keys.length === 0) continue;
        const loss = await trainMicroBatch(run, hb, ctx.micro);
        accumulated++;
        const sync = accumulated === accum || bi === order.length - 1;
        let norms: StepReport["norms"];
        if (sync) {
          await optimizerStep(optimizer, scaler, {
            lrScale: sched.lrScale(step),
            maxGradNorm: plan.optimizer.maxGradNorm,
          });
          accumulated = 0;
          if (plan.optimizer.scaleWeightNorms !== null) {
            norms = await applyMaxNorm(net, plan.optimizer.scaleWeightNorms);
          }
          step++;
          io.stepEncoded?.(step);
        }
        // The loss arrives later; its report runs then (see PendingLosses).
        pendingLosses.push(loss.readLater(), {
          epoch,
          bi,
          sync,
          step,
          norms,
          bucket: hb.bucket,
        });
        loss.dispose();
        await pendingLosses.settle();
        if (!sync) continue;
        await saver.afterStep(saveCtx(epoch, bi + 1));
        if (io.interrupted?.()) {
          await pendingLosses.drain();
          interrupted = true;
          await saver.onInterrupt(saveCtx(epoch, bi + 1));
          break outer;
        }
      }
      await pending?.catch(() => {});
      batches.endEpoch();
      if (io.scalars) {
        // kohya logs the epoch's average once every step of it has been logged.
        await pendingLosses.drain();
        io.scalars(epoch, epochScalars(reporter.recorder.average));
        epochLogged = epoch;
      }
      await saver.afterEpoch(saveCtx(epoch + 1, 0), epoch);
    }
    await pendingLosses.drain();
    // kohya also logs the last epoch when the step limit ends it early.
    if (io.scalars && !interrupted && epochNow > epochLogged) {
      io.scalars(epochNow, epochScalars(reporter.recorder.average));
    }
    if (!interrupted) await saver.atEnd(saveCtx(sched.numEpochs + 1, 0));
    await scaler?.settle();
    const summary: TrainSummary = {
      seconds: (performance.now() - t0) / 1000,
      steps: step,
      epochs: Math.min(sched.numEpochs, Math.ceil(step / sched.updatesPerEpoch)),
      finalLoss: reporter.lastLoss,
      averageLoss: reporter.recorder.average,
      skippedSteps: scaler?.skippedSteps ?? 0,
      peakBytes: rt().storage.stats().peakBytes,
      files: saver.files,
    };
    return { summary, losses: reporter.losses, interrupted };
  } finally {
    loader?.close();
    scaler?.dispose();
    session?.dispose();
    model.dispose();
  }
}
