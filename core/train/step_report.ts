/**
 * What happens when a micro-batch's loss arrives (a step or more after it was trained, without a
 * wait): the running average, and at an optimizer step the progress line, the tracker scalars
 * and the JSONL log record, each with the lr the step was trained at.
 *
 * @module
 */
import { type LossScaler, type Optimizer, rt } from "../../gpu/mod.ts";
import { logRecord, LossRecorder, progressLine } from "./progress.ts";
import { type KohyaLrGroup, stepScalars } from "./step_logs.ts";
import type { TrainIo } from "./train_io.ts";
import type { Schedule } from "./train_session.ts";

/** What a micro-batch's report needs once its loss has arrived. */
export interface StepReport {
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

/** What the reports of a run are made from. */
export interface StepReporterOptions {
  io: TrainIo;
  schedule: Schedule;
  optimizer: Optimizer;
  /** kohya's lr groups, for the tracker's lr tags. */
  lrGroups: KohyaLrGroup[];
  /** Training the U-Net only (kohya's tracker names count from it). */
  unetOnly: boolean;
  scaler: LossScaler | null;
  /** The epoch the run started at (a resumed run's average starts there). */
  startEpoch: number;
}

/** Receives each micro-batch's loss in order and reports the optimizer steps. */
export class StepReporter {
  readonly recorder = new LossRecorder();
  /** The loss of every optimizer step reported, in order. */
  readonly losses: { step: number; loss: number }[] = [];
  lastLoss = 0;
  #timedSteps = 0;
  readonly #started = performance.now();
  readonly #o: StepReporterOptions;

  constructor(o: StepReporterOptions) {
    this.#o = o;
  }

  /** One micro-batch's loss has arrived. */
  report(lossValue: number, r: StepReport): void {
    const { io, schedule: sched, optimizer, scaler } = this.#o;
    this.recorder.add(r.epoch - this.#o.startEpoch, r.bi, lossValue);
    this.lastLoss = lossValue;
    if (!r.sync) return;
    this.losses.push({ step: r.step, loss: lossValue });
    this.#timedSteps++;
    const stats = rt().storage.stats();
    const info = {
      step: r.step,
      totalSteps: sched.maxTrainSteps,
      epoch: r.epoch,
      totalEpochs: sched.numEpochs,
      loss: lossValue,
      averageLoss: this.recorder.average,
      lr: optimizer.groups[0].lr * sched.lrScale(r.step - 1),
      elapsed: (performance.now() - this.#started) / 1000,
      stepsTimed: this.#timedSteps,
      liveBytes: stats.liveBytes,
      peakBytes: stats.peakBytes,
      lossScale: scaler?.scale,
    };
    io.progress?.(progressLine(info));
    io.scalars?.(
      r.step,
      stepScalars(this.#o.lrGroups, {
        loss: lossValue,
        averageLoss: this.recorder.average,
        lrScale: sched.lrScale(r.step),
        unetOnly: this.#o.unetOnly,
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
  }
}
