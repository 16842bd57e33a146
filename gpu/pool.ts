/**
 * GPU buffer pool with size classes and accounting. Buffers are recycled, never left to the
 * garbage collector. A released buffer only becomes reusable after the commands that may still
 * read it have been submitted (see `Runtime.flush`), so a later upload can never overwrite data
 * an encoded-but-unsubmitted dispatch still needs.
 *
 * Every buffer has a small integer id, and `acquire` hands out the free buffer of the size class
 * with the lowest id. The choice then depends only on which buffers are free, not on the order
 * they were released in, so a repeated training step (which starts from the same free set) gets
 * the same buffers for the same tensors, and its bind groups come from the cache.
 *
 * @module
 */

/** Byte counts the pool reports. */
export interface PoolStats {
  /** Bytes in buffers handed out and not yet released. */
  liveBytes: number;
  /** Highest `liveBytes` since the last `resetPeak()`. */
  peakBytes: number;
  /** Bytes in free buffers kept for reuse. */
  cachedBytes: number;
  /** Number of live buffers. */
  liveBuffers: number;
}

/** Round a request up to its size class: 256 B minimum, then steps of 1/4 of a power of two. */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const p = 2 ** Math.floor(Math.log2(bytes - 1));
  const step = Math.max(256, p / 4);
  return Math.ceil(bytes / step) * step;
}

const ID = Symbol("lorakit.bufferId");
let nextId = 1;

/** A small integer naming a buffer (assigned on first use; never reused). */
export function bufferId(b: GPUBuffer): number {
  const tagged = b as GPUBuffer & { [ID]?: number };
  return tagged[ID] ??= nextId++;
}

/** Insert into a list kept in decreasing id order, so `pop()` returns the lowest id. */
function insertByIdDesc(list: GPUBuffer[], buf: GPUBuffer): void {
  const id = bufferId(buf);
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (bufferId(list[mid]) > id) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, buf);
}

/** A pool for one usage (storage or uniform). */
export class BufferPool {
  /** Free buffers per size class, in decreasing id order. */
  private free = new Map<number, GPUBuffer[]>();
  private deferred: GPUBuffer[] = [];
  private sizes = new WeakMap<GPUBuffer, number>();
  private live = 0;
  private peak = 0;
  private cached = 0;
  private liveCount = 0;

  constructor(
    private device: GPUDevice,
    private usage: GPUBufferUsageFlags,
    private label: string,
  ) {}

  /** A buffer of at least `bytes` bytes (contents undefined). */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const list = this.free.get(size);
    let buf = list?.pop();
    if (buf) {
      this.cached -= size;
    } else {
      buf = this.device.createBuffer({ size, usage: this.usage, label: this.label });
      this.sizes.set(buf, size);
      bufferId(buf);
    }
    this.live += size;
    this.liveCount++;
    if (this.live > this.peak) this.peak = this.live;
    return buf;
  }

  /** Give a buffer back; it is reusable after the next `recycle()` (i.e. after a submit). */
  release(buf: GPUBuffer): void {
    const size = this.sizes.get(buf)!;
    this.live -= size;
    this.liveCount--;
    this.deferred.push(buf);
  }

  /** Called after a queue submit: released buffers become reusable. */
  recycle(): void {
    for (const buf of this.deferred) {
      const size = this.sizes.get(buf)!;
      let list = this.free.get(size);
      if (!list) this.free.set(size, list = []);
      insertByIdDesc(list, buf);
      this.cached += size;
    }
    this.deferred.length = 0;
  }

  /** Destroy all cached free buffers (after a submit). */
  trim(): void {
    this.recycle();
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.cached = 0;
  }

  stats(): PoolStats {
    return {
      liveBytes: this.live,
      peakBytes: this.peak,
      cachedBytes: this.cached,
      liveBuffers: this.liveCount,
    };
  }

  resetPeak(): void {
    this.peak = this.live;
  }
}
