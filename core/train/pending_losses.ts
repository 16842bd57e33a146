/**
 * Losses read back without stalling the GPU. Each micro-batch's loss starts a download and the
 * loop moves on; the step's report (loss recorder, progress line, log record) runs once the value
 * has arrived, in step order. The host stays at most `maxPending` micro-batches ahead of the
 * reports, so the progress line lags the GPU by a step or two and never drains its queue.
 *
 * @module
 */

interface Entry<T> {
  ctx: T;
  done: boolean;
  value: number;
  error: unknown;
  arrival: Promise<void>;
}

export class PendingLosses<T> {
  private queue: Entry<T>[] = [];

  constructor(
    private report: (loss: number, ctx: T) => void | Promise<void>,
    private maxPending = 2,
  ) {}

  /** Queue the download of one micro-batch's loss (a one-element read started by the caller). */
  push(read: Promise<Float32Array>, ctx: T): void {
    const e: Entry<T> = { ctx, done: false, value: NaN, error: null, arrival: Promise.resolve() };
    e.arrival = read.then(
      (v) => {
        e.value = v[0];
        e.done = true;
      },
      (err) => {
        e.error = err ?? new Error("loss read-back failed");
        e.done = true;
      },
    );
    this.queue.push(e);
  }

  /** Report every loss that has arrived; wait only for those beyond `maxPending`. */
  async settle(): Promise<void> {
    while (this.queue.length > this.maxPending) await this.next();
    while (this.queue.length && this.queue[0].done) await this.next();
  }

  /** Wait for and report every queued loss (before a save, an interruption or the end). */
  async drain(): Promise<void> {
    while (this.queue.length) await this.next();
  }

  private async next(): Promise<void> {
    const e = this.queue.shift()!;
    await e.arrival;
    if (e.error) throw e.error;
    await this.report(e.value, e.ctx);
  }
}
