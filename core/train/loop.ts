/**
 * `trainNetwork(args, io)`: kohya's train_network loop for SD 1.x/2.x LoRA. Per batch: latents
 * (cached, or the VAE on the decoded images), seeded noise (plus `--noise_offset`), uniform
 * timesteps in `[--min_timestep, --max_timestep)`, the forward and loss of step.ts (epsilon or v
 * target, min-SNR, prior loss weight, and kohya's per-sample `--scale_v_pred_loss_like_noise_pred`
 * / `--v_pred_like_loss` / `--debiased_estimation_loss` factors), backward (divided by
 * `--gradient_accumulation_steps`, times the loss scale under fp16), then at each accumulation
 * boundary gradient clipping (`--max_grad_norm`, 0 = off), the optimizer step at the scheduled lr,
 * `--scale_weight_norms`, progress, saves, states and samples. The next batch is loaded while the
 * GPU works on the current one, its images decoded by the `--max_data_loader_n_workers` workers,
 * which are stopped after each epoch (unless `--persistent_data_loader_workers`) and whenever the
 * run ends, fails or is interrupted.
 *
 * File removal, progress output, the log and interruption come through {@link TrainIo}, so this
 * module stays on web-standard APIs.
 *
 * @module
 */
import { backward, clipGradNorm, LossScaler, mul, rt, scale, Tensor } from "../../gpu/mod.ts";
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
import { readSamplePrompts } from "./train_samples.ts";
import type { TrainArgs } from "../kohya/train_args.ts";
import { type SaveContext, Saver } from "./train_saves.ts";
import {
  checkMemory,
  loadSessionModel,
  makeSchedule,
  mergeBaseWeights,
  setupNetwork,
} from "./train_session.ts";
import { checkTrainSupport, dropImages, prepareData } from "./train_setup.ts";
import { STREAM, streamGaussian, streamRandom } from "./train_rng.ts";
import { loadTrainState, readStateSeed } from "./checkpoint_state.ts";
import { formatBytes } from "./progress.ts";

/** What the loop needs from its host (the CLI). */
export interface TrainIo {
  /** Messages (notes, warnings, summaries). */
  message(text: string): void;
  /** The progress line, rewritten per step. */
  progress?(line: string): void;
  /** One JSONL record per step (`--logging_dir`). */
  log?(record: string): void;
  /** kohya's tracker scalars (tag -> value) at `step` (the epoch number for epoch logs). */
  scalars?(step: number, values: Record<string, number>): void;
  /** Remove a file or folder (old saves beyond `--save_last_n_*`). */
  remove(path: string): Promise<void>;
  /** True once the user asked to stop (SIGINT). */
  interrupted?(): boolean;
  /**
   * Called as soon as an optimizer step is encoded (before its loss is known), with the number of
   * steps done: the moment to sample host-side counters per step.
   */
  stepEncoded?(step: number): void;
  /** The full command line that resumes from the state at `statePath` (for the Ctrl-C message). */
  resumeCommand?(statePath: string): string;
  /** A sample image was written (`--sample_prompts`). */
  sampleWritten?(
    sample: { path: string; prompt: string; step: number; epoch: number | null },
  ): void;
}

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

/** kohya's clamp of the SNR in its per-sample loss scalings. */
function snrClamped(schedule: DdpmSchedule, t: number): number {
  return Math.min(schedule.snr(t), 1000);
}

/** Run train_network. */
export async function trainNetwork(args: TrainArgs, io: TrainIo): Promise<TrainResult> {
  const t0 = performance.now();
  checkTrainSupport(args);
  // Outputs must be writable before any model is loaded or step trained.
  await checkTrainOutputs(args);
  // The prompt file is read now, so a bad line fails before training, not at the first sample.
  if (args.sample_prompts !== null) await readSamplePrompts(args.sample_prompts);
  const note = (m: string) => io.message(m);
  // Without --seed, a resumed run continues with the seed its state was saved with.
  const seed = args.seed ??
    (args.resume !== null ? await readStateSeed(args.resume) : Math.floor(Math.random() * 2 ** 32));
  const data = await prepareData(args);
  if (args.cache_latents_to_disk) await checkLatentCacheFolders(data);
  for (const m of data.messages) note(m);
  const model = await loadSessionModel(args, note);
  let session: Awaited<ReturnType<typeof setupNetwork>> | null = null;
  let loader: BatchLoader | null = null;
  let scaler: LossScaler | null = null;
  try {
    await mergeBaseWeights(model.sd, args, note);
    session = await setupNetwork(model, args, seed, note);
    const { net, created, params } = session;
    const optimizer = created.optimizer;
    const lrGroups = kohyaLrGroups(net.modules.map((m) => m.spec), args);
    const est = await checkMemory(model, session, args, data);
    note(
      `estimated GPU memory: ${formatBytes(est.total)} (weights ${formatBytes(est.weights)}, ` +
        `LoRA+optimizer ${formatBytes(est.lora)}, activations ${formatBytes(est.activations)}` +
        (est.vae > 0 ? `, VAE ${formatBytes(est.vae)}` : "") + ")",
    );
    let cache: Map<string, CachedLatents> | null = null;
    if (args.cache_latents) {
      const c = await cacheLatents(model.sd.vae, data, {
        seed,
        vaeBatchSize: Math.max(1, args.vae_batch_size),
        toDisk: args.cache_latents_to_disk,
        skipCheck: args.skip_cache_check,
        vaeId: `${args.vae ?? args.pretrained_model_name_or_path}`,
      });
      for (const f of c.failed) {
        note(`skipped ${f.key}: ${f.reason}`);
        dropImages(data.datasets[f.datasetIndex], new Set([f.key]));
      }
      note(`latents: ${c.computed} computed, ${c.reused} reused from disk`);
      cache = c.cache;
    }
    const sched = makeSchedule(args, data, created.lrScheduler);
    if (sched.batchesPerEpoch === 0) throw new LorakitError("no batches: every image was skipped");
    const fingerprint = `${net.moduleName} modules=${net.modules.length} params=${params.length} ` +
      `optimizer=${optimizer.type} args=${JSON.stringify(net.networkArgs)}`;
    const saver = new Saver({
      args,
      io,
      data,
      model,
      session,
      seed,
      schedule: sched,
      startedAt: Date.now() / 1000,
      fingerprint,
    });
    scaler = args.mixed_precision === "fp16" ? new LossScaler() : null;
    let step = 0, startEpoch = 1, startBatch = 0;
    if (args.resume !== null) {
      const st = await loadTrainState(args.resume, params, optimizer, fingerprint);
      if (st.seed !== seed) {
        throw new LorakitError(
          `--resume ${args.resume}: the state was saved with --seed ${st.seed}; pass the same seed`,
        );
      }
      ({ step, epoch: startEpoch, batchInEpoch: startBatch } = st);
      if (scaler && st.scaler) scaler.setState(st.scaler.scale, st.scaler.growthTracker);
      note(`resumed from ${args.resume}: step ${step}, epoch ${startEpoch}`);
    }
    note(
      `running training: ${data.numTrainImages} train images (with repeats), ` +
        `${data.numRegImages} reg images, ${sched.batchesPerEpoch} batches per epoch, ` +
        `${sched.numEpochs} epochs, ${sched.maxTrainSteps} steps`,
    );
    const batches = new BatchLoader(data, {
      seed,
      tokenizer: model.sd.tokenizer,
      maxTokenLength: args.max_token_length,
      resizeInterpolation: args.resize_interpolation,
      cache,
      workers: args.max_data_loader_n_workers,
      persistentWorkers: args.persistent_data_loader_workers,
    });
    loader = batches;
    const ddpm = new DdpmSchedule();
    const recorder = new LossRecorder();
    const losses: { step: number; loss: number }[] = [];
    const accum = args.gradient_accumulation_steps;
    const minT = args.min_timestep ?? 0, maxT = args.max_timestep ?? 1000;
    const reported = new Set<string>();
    let lastLoss = 0, interrupted = false, timedSteps = 0;
    let epochNow = 0, epochLogged = 0;
    const tTrain = performance.now();
    rt().storage.resetPeak();
    if (args.sample_at_first) await saver.sample(0, null);
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
          unetOnly: args.network_train_unet_only,
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
      const plan = planEpoch(data, seed, epoch);
      if (epoch < startEpoch) continue;
      epochNow = epoch;
      let accumulated = 0;
      let pending: Promise<HostBatch> | null = null;
      const first = epoch === startEpoch ? startBatch : 0;
      const ctxOf = (bi: number) => ({
        epoch,
        step: (epoch - 1) * sched.updatesPerEpoch + Math.floor(bi / accum),
        maxTrainSteps: sched.maxTrainSteps,
        micro: (epoch - 1) * plan.length + bi,
      });
      for (let bi = first; bi < plan.length; bi++) {
        if (step >= sched.maxTrainSteps) break outer;
        const ctx = ctxOf(bi);
        const hb = await (pending ?? batches.load(plan[bi], ctx));
        pending = bi + 1 < plan.length ? batches.load(plan[bi + 1], ctxOf(bi + 1)) : null;
        // Handled here so that a load still in flight when training stops never goes unhandled.
        pending?.catch(() => {});
        for (const f of hb.failed) {
          if (!reported.has(f.key)) note(`skipped ${f.key}: ${f.reason}`);
          reported.add(f.key);
        }
        if (hb.keys.length === 0) continue;
        const micro = ctx.micro;
        const [bw, bh] = hb.bucket;
        const n = hb.keys.length, per = 4 * (bh / 8) * (bw / 8);
        const latentData = hb.latents ??
          await encodeImagesToLatents(model.sd.vae, hb.images!, n, hb.bucket, seed, hb.keys, micro);
        const noiseData = streamGaussian(seed, STREAM.noise, micro).gaussian(n * per);
        if (args.noise_offset !== null && args.noise_offset !== 0) {
          const r = streamRandom(seed, STREAM.noiseOffset, micro);
          const g = streamGaussian(seed, STREAM.noiseOffset, micro, 1);
          const off = args.noise_offset_random_strength
            ? r() * args.noise_offset
            : args.noise_offset;
          for (let k = 0; k < n * 4; k++) {
            const v = off * g.nextGaussian(), plane = per / 4;
            for (let j = 0; j < plane; j++) noiseData[k * plane + j] += v;
          }
        }
        const tr = streamRandom(seed, STREAM.timesteps, micro);
        const timesteps = hb.keys.map(() => minT + Math.floor(tr() * (maxT - minT)));
        const weights = hb.lossWeights.map((w, i) => {
          const snr = snrClamped(ddpm, timesteps[i]);
          const vScale = snr / (snr + 1);
          if (args.scale_v_pred_loss_like_noise_pred) w *= vScale;
          if (args.v_pred_like_loss) w *= 1 + args.v_pred_like_loss / vScale;
          if (args.debiased_estimation_loss) w *= 1 / Math.sqrt(snr);
          return w;
        });
        reseedNetwork(net, seed, micro);
        const latents = Tensor.fromArray(latentData, [n, 4, bh / 8, bw / 8]);
        const noise = Tensor.fromArray(noiseData, [n, 4, bh / 8, bw / 8]);
        const out = trainStepForward(model.stepModel, ddpm, {
          latents,
          noise,
          timesteps,
          inputIds: hb.ids.ids,
          lossWeights: weights,
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
        const sync = accumulated === accum || bi === plan.length - 1;
        let norms: StepReport["norms"];
        if (sync) {
          const lrScale = sched.lrScale(step);
          const maxNorm = args.max_grad_norm > 0 ? args.max_grad_norm : undefined;
          if (scaler) {
            const r = await scaler.step(optimizer, { lrScale, maxNorm });
            r.clip?.dispose();
          } else if (maxNorm !== undefined) {
            const clip = clipGradNorm(optimizer.groups.flatMap((g) => g.params), maxNorm);
            optimizer.update({ lrScale, gradScaleTensor: clip.scale });
            clip.dispose();
          } else optimizer.update({ lrScale });
          optimizer.zeroGrad();
          accumulated = 0;
          if (args.scale_weight_norms !== null && args.scale_weight_norms > 0) {
            norms = await applyMaxNorm(net, args.scale_weight_norms);
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
