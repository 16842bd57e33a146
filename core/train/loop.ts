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
import { backward, LossScaler, mul, rt, scale, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { checkLatentCacheFolders, checkTrainOutputs } from "./output_checks.ts";
import { BatchLoader, type CachedLatents, type HostBatch, planEpoch } from "./data_loader.ts";
import { cacheLatents, encodeImagesToLatents } from "./latent_cache.ts";
import { DdpmSchedule } from "./noise_schedule.ts";
import { applyMaxNorm, reseedNetwork } from "./network_training.ts";
import { logRecord, LossRecorder, progressLine, type TrainSummary } from "./progress.ts";
import { epochScalars, kohyaLrGroups, stepScalars } from "./step_logs.ts";
import { PendingLosses } from "./pending_losses.ts";
import { trainStepForward } from "./step.ts";
import { drawBatchTargets } from "./batch_targets.ts";
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
import { dropImages, prepareData } from "./train_setup.ts";
import { loadTrainState, readStateSeed } from "./checkpoint_state.ts";
import { formatBytes } from "./progress.ts";

/** What a run returns. */
export interface TrainResult {
  summary: TrainSummary;
  /** The loss of every optimizer step of this run, in order (index = global step - 1). */
  losses: { step: number; loss: number }[];
  interrupted: boolean;
}

/** What a micro-batch's report needs once its loss has arrived. */
interface StepReport {
  epoch: number;
  bi: number;
  /** True at an optimizer step (the end of an accumulation). */
  sync: boolean;
  /** Optimizer steps done, this one included. */
  step: number;
  /** `--scale_weight_norms` figures of this step. */
  norms?: { keysScaled: number; meanNorm: number; maxNorm: number };
  /** The batch's bucket (width, height). */
  bucket: readonly [number, number];
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
  for (const m of data.messages) note(m);
  const model = await loadSessionModel(plan, note);
  let session: Awaited<ReturnType<typeof setupNetwork>> | null = null;
  let loader: BatchLoader | null = null;
  let scaler: LossScaler | null = null;
  try {
    await mergeBaseWeights(model.sd, plan.model.baseWeights, note);
    session = await setupNetwork(model, plan, seed, note);
    const { net, optimizer, params } = session;
    const lrGroups = kohyaLrGroups(net.modules.map((m) => m.spec), plan.network, plan.optimizer);
    const est = await checkMemory(model, session, plan, data);
    note(
      `estimated GPU memory: ${formatBytes(est.total)} (weights ${formatBytes(est.weights)}, ` +
        `LoRA+optimizer ${formatBytes(est.lora)}, activations ${formatBytes(est.activations)}` +
        (est.vae > 0 ? `, VAE ${formatBytes(est.vae)}` : "") + ")",
    );
    let cache: Map<string, CachedLatents> | null = null;
    if (plan.data.cacheLatents) {
      const c = await cacheLatents(model.sd.vae, data, {
        seed,
        vaeBatchSize: Math.max(1, plan.data.vaeBatchSize),
        toDisk: plan.data.cacheLatentsToDisk,
        skipCheck: plan.data.skipCacheCheck,
        vaeId: plan.model.vae ?? plan.model.path,
      });
      for (const f of c.failed) {
        note(`skipped ${f.key}: ${f.reason}`);
        dropImages(data.datasets[f.datasetIndex], new Set([f.key]));
      }
      note(`latents: ${c.computed} computed, ${c.reused} reused from disk`);
      cache = c.cache;
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
      tokenizer: model.sd.tokenizer,
      maxTokenLength: plan.model.maxTokenLength,
      resizeInterpolation: plan.data.resizeInterpolation,
      cache,
      workers: plan.data.workers,
      persistentWorkers: plan.data.persistentWorkers,
    });
    loader = batches;
    const ddpm = new DdpmSchedule();
    const recorder = new LossRecorder();
    const losses: { step: number; loss: number }[] = [];
    const accum = plan.schedule.gradientAccumulationSteps;
    const lossPlan = { ...plan.loss, vParameterization: plan.model.vParameterization };
    const reported = new Set<string>();
    let lastLoss = 0, interrupted = false, timedSteps = 0;
    let epochNow = 0, epochLogged = 0;
    const tTrain = performance.now();
    rt().storage.resetPeak();
    if (plan.sampling.atFirst) await saver.sample(0, null);
    const pendingLosses = new PendingLosses<StepReport>((lossValue, r) => {
      recorder.add(r.epoch - startEpoch, r.bi, lossValue);
      lastLoss = lossValue;
      if (!r.sync) return;
      losses.push({ step: r.step, loss: lossValue });
      timedSteps++;
      const stats = rt().storage.stats();
      const info = {
        step: r.step,
        totalSteps: sched.maxTrainSteps,
        epoch: r.epoch,
        totalEpochs: sched.numEpochs,
        loss: lossValue,
        averageLoss: recorder.average,
        lr: optimizer.groups[0].lr * sched.lrScale(r.step - 1),
        elapsed: (performance.now() - tTrain) / 1000,
        stepsTimed: timedSteps,
        liveBytes: stats.liveBytes,
        peakBytes: stats.peakBytes,
        lossScale: scaler?.scale,
      };
      io.progress?.(progressLine(info));
      io.scalars?.(
        r.step,
        stepScalars(lrGroups, {
          loss: lossValue,
          averageLoss: recorder.average,
          lrScale: sched.lrScale(r.step),
          unetOnly: plan.network.unetOnly,
          norms: r.norms,
        }),
      );
      const lrs = optimizer.groups.map((g) => g.lr * sched.lrScale(r.step - 1));
      io.log?.(logRecord(info, lrs, {
        total_steps: sched.maxTrainSteps,
        total_epochs: sched.numEpochs,
        batch: r.bi + 1,
        batches_per_epoch: sched.batchesPerEpoch,
        bucket_width: r.bucket[0],
        bucket_height: r.bucket[1],
      }));
    });
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
        const micro = ctx.micro;
        const [bw, bh] = hb.bucket;
        const n = hb.keys.length;
        const latentData = hb.latents ??
          await encodeImagesToLatents(model.sd.vae, hb.images!, n, hb.bucket, seed, hb.keys, micro);
        const targets = drawBatchTargets(lossPlan, ddpm, { seed, micro }, {
          n,
          h: bh / 8,
          w: bw / 8,
          baseWeights: hb.lossWeights,
        });
        reseedNetwork(net, seed, micro);
        const latents = Tensor.fromArray(latentData, [n, 4, bh / 8, bw / 8]);
        const noise = Tensor.fromArray(targets.noise, [n, 4, bh / 8, bw / 8]);
        const out = trainStepForward(model.stepModel, ddpm, {
          latents,
          noise,
          timesteps: targets.timesteps,
          inputIds: hb.ids.ids,
          lossWeights: targets.lossWeights,
        }, session.settings);
        // With fp16 the loss scale is a GPU scalar: the scaler decides it without a read-back.
        const scaled = scaler ? mul(out.loss, scaler.scaleTensor) : out.loss;
        const root = accum === 1 ? scaled : scale(scaled, 1 / accum);
        backward(root);
        if (root !== out.loss) root.dispose();
        if (scaled !== out.loss && scaled !== root) scaled.dispose();
        latents.dispose();
        noise.dispose();
        out.modelPred.dispose();
        out.target.dispose();
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
        pendingLosses.push(out.loss.readLater(), {
          epoch,
          bi,
          sync,
          step,
          norms,
          bucket: hb.bucket,
        });
        out.loss.dispose();
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
        io.scalars(epoch, epochScalars(recorder.average));
        epochLogged = epoch;
      }
      await saver.afterEpoch(saveCtx(epoch + 1, 0), epoch);
    }
    await pendingLosses.drain();
    // kohya also logs the last epoch when the step limit ends it early.
    if (io.scalars && !interrupted && epochNow > epochLogged) {
      io.scalars(epochNow, epochScalars(recorder.average));
    }
    if (!interrupted) await saver.atEnd(saveCtx(sched.numEpochs + 1, 0));
    await scaler?.settle();
    const summary: TrainSummary = {
      seconds: (performance.now() - t0) / 1000,
      steps: step,
      epochs: Math.min(sched.numEpochs, Math.ceil(step / sched.updatesPerEpoch)),
      finalLoss: lastLoss,
      averageLoss: recorder.average,
      skippedSteps: scaler?.skippedSteps ?? 0,
      peakBytes: rt().storage.stats().peakBytes,
      files: saver.files,
    };
    return { summary, losses, interrupted };
  } finally {
    loader?.close();
    scaler?.dispose();
    session?.dispose();
    model.dispose();
  }
}
