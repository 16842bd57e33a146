/**
 * What train_network reports while it runs: kohya's loss recorder (the average shown is over the
 * latest loss of each batch position of an epoch), the progress line (step, epoch, current and
 * average loss, lr, it/s, ETA, GPU pool memory), the JSONL log records and the closing summary.
 * Formatting only; the CLI decides where it goes.
 *
 * @module
 */

/** kohya's `LossRecorder`. */
export class LossRecorder {
  readonly losses: number[] = [];
  #sum = 0;

  /** Record the loss of batch `index` (0-based) of epoch `epoch` (0-based). */
  add(epoch: number, index: number, loss: number): void {
    if (epoch === 0 || index >= this.losses.length) {
      this.losses.push(loss);
      this.#sum += loss;
    } else {
      this.#sum += loss - this.losses[index];
      this.losses[index] = loss;
    }
  }

  /** The mean of the recorded losses (0 when none). */
  get average(): number {
    return this.losses.length === 0 ? 0 : this.#sum / this.losses.length;
  }
}

/** One progress report. */
export interface ProgressInfo {
  step: number;
  totalSteps: number;
  epoch: number;
  totalEpochs: number;
  loss: number;
  averageLoss: number;
  lr: number;
  /** Seconds since training started (excluding setup) and steps done in that time. */
  elapsed: number;
  stepsTimed: number;
  /** GPU pool: live and peak bytes. */
  liveBytes: number;
  peakBytes: number;
  /** fp16 loss scale, when used. */
  lossScale?: number;
}

/** Bytes as MiB/GiB text. */
export function formatBytes(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(2)} GiB` : `${(n / (1 << 20)).toFixed(1)} MiB`;
}

/** Seconds as h:mm:ss or m:ss. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const t = Math.max(0, Math.round(s));
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  const two = (x: number) => String(x).padStart(2, "0");
  return h > 0 ? `${h}:${two(m)}:${two(sec)}` : `${m}:${two(sec)}`;
}

/** The progress line: a bar, step/epoch, losses, lr, speed, ETA and memory. */
export function progressLine(p: ProgressInfo, width = 20): string {
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 1;
  const filled = Math.round(frac * width);
  const bar = "#".repeat(filled) + ".".repeat(width - filled);
  const rate = p.elapsed > 0 ? p.stepsTimed / p.elapsed : 0;
  const eta = rate > 0 ? (p.totalSteps - p.step) / rate : Infinity;
  const speed = rate >= 1 || rate === 0
    ? `${rate.toFixed(2)} it/s`
    : `${(1 / rate).toFixed(2)} s/it`;
  return `steps [${bar}] ${p.step}/${p.totalSteps} epoch ${p.epoch}/${p.totalEpochs} ` +
    `loss ${p.loss.toFixed(4)} avg ${p.averageLoss.toFixed(4)} lr ${p.lr.toExponential(2)} ` +
    `${speed} ETA ${formatDuration(eta)} gpu ${formatBytes(p.liveBytes)} ` +
    `(peak ${formatBytes(p.peakBytes)})` +
    (p.lossScale !== undefined ? ` scale ${p.lossScale}` : "");
}

/** One JSONL log record per step (kohya logs `loss/current`, `loss/average`, `lr/...`). */
export function logRecord(
  p: ProgressInfo,
  lrs: number[],
  extra: Record<string, number> = {},
): string {
  const rec: Record<string, number> = {
    step: p.step,
    epoch: p.epoch,
    "loss/current": p.loss,
    "loss/average": p.averageLoss,
    time: Number(p.elapsed.toFixed(3)),
    gpu_live_bytes: p.liveBytes,
    gpu_peak_bytes: p.peakBytes,
    ...extra,
  };
  lrs.forEach((lr, i) => (rec[lrs.length === 1 ? "lr" : `lr/group${i}`] = lr));
  if (p.lossScale !== undefined) rec.loss_scale = p.lossScale;
  return JSON.stringify(rec);
}

/** The closing summary. */
export interface TrainSummary {
  seconds: number;
  steps: number;
  epochs: number;
  finalLoss: number;
  averageLoss: number;
  skippedSteps: number;
  peakBytes: number;
  files: string[];
}

/** The summary as text. */
export function summaryText(s: TrainSummary): string {
  const lines = [
    `training finished in ${formatDuration(s.seconds)}: ${s.steps} steps, ${s.epochs} epochs` +
    (s.steps > 0 ? ` (${(s.steps / Math.max(s.seconds, 1e-9)).toFixed(3)} it/s)` : ""),
    `final loss ${s.finalLoss.toFixed(5)}, average loss ${s.averageLoss.toFixed(5)}` +
    (s.skippedSteps > 0 ? `, ${s.skippedSteps} steps skipped (fp16 overflow)` : ""),
    `GPU pool peak ${formatBytes(s.peakBytes)}`,
    s.files.length > 0 ? `files written:\n  ${s.files.join("\n  ")}` : "no files written",
  ];
  return lines.join("\n");
}
