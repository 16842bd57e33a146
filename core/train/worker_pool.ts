/**
 * A pool of data loader workers, kohya's `--max_data_loader_n_workers` DataLoader processes as
 * Web Workers: each runs decode_worker.ts, which decodes, resizes, crops and flips images
 * ({@link ImageJob}s) off the main thread, so that work stays off the GPU's critical path. Jobs go
 * to the worker with the fewest in flight; each job's promise settles with its own result, so a
 * caller that awaits them in order gets them in order. Pixels come back transferred, not copied.
 *
 * A job whose image is bad rejects with a LorakitError (the same message as in-process); a
 * failure of the worker itself rejects with an Error. {@link DecodePool.terminate} stops every
 * worker and rejects the jobs still in flight; the pool must be terminated when training ends,
 * fails or is interrupted, or the workers keep the process alive.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import type { ImageJob } from "./image_job.ts";

/** A message to a worker: run `job`, or only decode the file at `check` to see that it can be. */
export type ImageJobRequest = { id: number; job: ImageJob } | { id: number; check: string };

/** A worker's answer to {@link ImageJobRequest} `id`. */
export type ImageJobReply =
  | { id: number; ok: true; pixels: Float32Array }
  | { id: number; ok: false; userError: boolean; message: string };

interface Pending {
  resolve(pixels: Float32Array): void;
  reject(error: Error): void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

const WORKER_URL = new URL("./decode_worker.ts", import.meta.url);

/** Web Workers that run {@link ImageJob}s. */
export class DecodePool {
  /** The number of workers. */
  readonly size: number;
  #slots: Slot[] = [];
  #nextId = 1;
  #failure: Error | null = null;
  #terminated = false;

  /** A pool of `size` (at least 1) workers, started on the first job. */
  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`a decode pool needs at least one worker, got ${size}`);
    }
    this.size = size;
  }

  /** True once {@link terminate} was called. */
  get terminated(): boolean {
    return this.#terminated;
  }

  /** Run `job` on a worker: the image as [3, H, W] floats in [-1, 1]. */
  run(job: ImageJob): Promise<Float32Array> {
    return this.#send((id) => ({ id, job }));
  }

  #send(request: (id: number) => ImageJobRequest): Promise<Float32Array> {
    if (this.#terminated) {
      return Promise.reject(new Error("data loader workers were already stopped"));
    }
    if (this.#failure) return Promise.reject(this.#failure);
    if (this.#slots.length === 0) {
      for (let i = 0; i < this.size; i++) this.#slots.push(this.#spawn());
    }
    let slot = this.#slots[0];
    for (const s of this.#slots) if (s.pending.size < slot.pending.size) slot = s;
    const id = this.#nextId++;
    return new Promise<Float32Array>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage(request(id));
    });
  }

  /**
   * Decode the image at `path` on a worker and drop the pixels: resolves when it decodes, rejects
   * with a LorakitError naming it when it does not.
   */
  async check(path: string): Promise<void> {
    await this.#send((id) => ({ id, check: path }));
  }

  /** Stop every worker; jobs still in flight reject. Safe to call more than once. */
  terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    const stopped = new Error("data loader workers were stopped");
    for (const slot of this.#slots) {
      slot.worker.terminate();
      this.#rejectAll(slot, stopped);
    }
    this.#slots = [];
  }

  #spawn(): Slot {
    const worker = new Worker(WORKER_URL, { type: "module" });
    const slot: Slot = { worker, pending: new Map() };
    worker.onmessage = (event: MessageEvent<ImageJobReply>) => {
      const reply = event.data;
      const p = slot.pending.get(reply.id);
      if (p === undefined) return;
      slot.pending.delete(reply.id);
      if (reply.ok) p.resolve(reply.pixels);
      else p.reject(reply.userError ? new LorakitError(reply.message) : new Error(reply.message));
    };
    const fail = (what: string) => {
      this.#failure ??= new Error(`a data loader worker failed: ${what}`);
      this.#rejectAll(slot, this.#failure);
    };
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      fail(event.message);
    };
    worker.onmessageerror = () => fail("a message could not be deserialized");
    return slot;
  }

  #rejectAll(slot: Slot, error: Error): void {
    const pending = [...slot.pending.values()];
    slot.pending.clear();
    for (const p of pending) p.reject(error);
  }
}
