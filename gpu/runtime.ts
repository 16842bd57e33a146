/**
 * The command stream: kernels found by a short key before any WGSL is built, a single open
 * compute pass into which many dispatches are encoded, and explicit flushes. The host path per
 * dispatch is a key lookup, a bind group from the cache and a few bytes copied into the submit's
 * uniform arena: pipelines have explicit layouts whose uniform binding takes a dynamic offset, so
 * one bind group serves every dispatch on the same buffers, and one `writeBuffer` per submit
 * carries all of its uniforms. The host never reads back inside a step; `readBuffer` and `sync`
 * are the only places that wait for the GPU.
 *
 * @module
 */
import { getGpu, type Gpu, gpuSync } from "./device.ts";
import { Kernel } from "./kernel.ts";
import { BufferPool } from "./pool.ts";
import { BindCache } from "./bind_cache.ts";
import { UniformArena } from "./uniform_arena.ts";
import type { UniformWriter } from "./uniform_writer.ts";

export { uniforms, UniformWriter } from "./uniform_writer.ts";

/** Dispatches encoded before an automatic submit; bounds the memory held by deferred releases. */
const MAX_DISPATCHES_PER_SUBMIT = 256;

/** Uniform parameters: plain numbers are written as u32 unless listed in `floats` by index. */
export type Params = ArrayLike<number>;

/** One dispatch as the profiler records it (see `Runtime.profile`). */
export interface DispatchRecord {
  key: string;
  /** Workgroups x threads per workgroup. */
  threads: number;
  /** Floating-point operations, where the op states them (GEMM, conv, attention). */
  flops: number;
}

/** What the host path has done since start; the bench reports differences of two snapshots. */
export interface HostCounters {
  dispatches: number;
  submits: number;
  bindGroupsCreated: number;
  bindGroupHits: number;
  uniformWrites: number;
  awaitedReads: number;
  /** Every `writeBuffer`: the uniform uploads plus data uploads (`Runtime.write`). */
  bufferWrites: number;
  /**
   * Milliseconds spent inside `queue.submit`. A software driver runs part of the work there, so
   * host-path costs are reported without it.
   */
  submitMs: number;
  pipelines: number;
}

/** Read an environment variable where there is one (gpu/ also runs in a browser tab). */
function envFlag(name: string): string | undefined {
  try {
    return (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env
      .get(name);
  } catch {
    return undefined;
  }
}

class Runtime {
  readonly gpu: Gpu;
  readonly device: GPUDevice;
  readonly storage: BufferPool;
  private kernels = new Map<string, Kernel>();
  private binds: BindCache;
  private arena: UniformArena;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private encoded = 0;
  private errors: string[] = [];
  private validations: Promise<void>[] = [];
  private offsets = new Uint32Array(1);
  /** Build the source on every lookup and require it to equal the cached one (tests). */
  checkKernelKeys: boolean = envFlag("LORAKIT_CHECK_KERNEL_KEYS") === "1";
  /** When set, every dispatch is recorded here (threads per dispatch in the bench). */
  profile: DispatchRecord[] | null = null;
  /** Encode every dispatch with zero workgroups: the host path alone (bench only). */
  emptyDispatches = false;
  dispatches = 0;
  submits = 0;
  awaitedReads = 0;
  dataWrites = 0;
  submitMs = 0;

  constructor(gpu: Gpu) {
    this.gpu = gpu;
    this.device = gpu.device;
    const S = GPUBufferUsage;
    this.storage = new BufferPool(this.device, S.STORAGE | S.COPY_SRC | S.COPY_DST, "tensor");
    this.binds = new BindCache(this.device);
    const align = this.device.limits.minUniformBufferOffsetAlignment;
    this.arena = new UniformArena(this.device, MAX_DISPATCHES_PER_SUBMIT * align, align);
  }

  /**
   * The kernel named `key`: `build` makes its WGSL source only the first time, so `key` must name
   * everything the source depends on (op, dtype, constants, variant flags).
   */
  kernel(key: string, build: () => string, entry = "main"): Kernel {
    const full = entry === "main" ? key : key + "#" + entry;
    let k = this.kernels.get(full);
    if (!k) {
      k = new Kernel(full, build(), entry);
      this.kernels.set(full, k);
    } else if (this.checkKernelKeys && build() !== k.source) {
      throw new Error(`kernel key '${full}' names two different WGSL sources`);
    }
    return k;
  }

  private pipelineOf(k: Kernel, sig: string): GPUComputePipeline {
    let p = k.pipelines.get(sig);
    if (!p) {
      this.device.pushErrorScope("validation");
      const module = this.device.createShaderModule({ code: k.source, label: k.key });
      p = this.device.createComputePipeline({
        layout: this.binds.pipelineLayout(sig),
        compute: { module, entryPoint: k.entry },
        label: k.key,
      });
      // Compilation errors surface at the next read-back or sync instead of as a silent zero.
      const pending = this.device.popErrorScope().then((err) => {
        if (err) {
          const first = k.source.split("\n").find((l) => l.startsWith("// ")) ?? "";
          this.errors.push(`WGSL pipeline '${k.key}' failed: ${err.message}\n${first}`);
        }
      });
      this.validations.push(pending);
      k.pipelines.set(sig, p);
    }
    return p;
  }

  private ensurePass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    return this.pass;
  }

  private endPass(): GPUCommandEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    return this.encoder;
  }

  /**
   * Encode one dispatch. `buffers` bind to @binding(0..n-1) of group 0 in order; `params`, when
   * given, binds as a uniform at @binding(n). `flops` (optional) feeds the profiler.
   */
  dispatch(
    kernel: Kernel,
    buffers: GPUBuffer[],
    params: UniformWriter | null,
    workgroups: [number, number?, number?],
    flops = 0,
  ): void {
    const size = params ? params.byteLength : 0;
    const sig = kernel.signature(buffers.length, size);
    const pipeline = this.pipelineOf(kernel, sig);
    let offset = 0;
    if (params) {
      if (!this.arena.fits(size)) this.flush();
      offset = this.arena.push(params);
    }
    const group = this.binds.group(sig, buffers, params ? this.arena.buffer : null, size);
    const pass = this.ensurePass();
    pass.setPipeline(pipeline);
    if (params) {
      this.offsets[0] = offset;
      pass.setBindGroup(0, group, this.offsets, 0, 1);
    } else pass.setBindGroup(0, group);
    const [x, y = 1, z = 1] = workgroups;
    if (this.emptyDispatches) pass.dispatchWorkgroups(0);
    else pass.dispatchWorkgroups(x, y, z);
    if (this.profile) {
      this.profile.push({ key: kernel.key, threads: x * y * z * kernel.threadsPerGroup, flops });
    }
    this.dispatches++;
    if (++this.encoded >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
  }

  /** Upload host data into a buffer (queue-ordered before the next submit). */
  write(dst: GPUBuffer, offset: number, data: ArrayBufferView<ArrayBuffer>): void {
    this.device.queue.writeBuffer(dst, offset, data.buffer, data.byteOffset, data.byteLength);
    this.dataWrites++;
  }

  /** Encode a buffer-to-buffer copy. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.endPass().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    if (++this.encoded >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
  }

  /** Submit everything encoded so far; released buffers become reusable. */
  flush(): void {
    if (this.encoder) {
      const enc = this.endPass();
      this.arena.upload();
      const t0 = performance.now();
      this.device.queue.submit([enc.finish()]);
      this.submitMs += performance.now() - t0;
      this.encoder = null;
      this.submits++;
    }
    this.encoded = 0;
    this.storage.recycle();
  }

  /**
   * Start copying `bytes` bytes of a buffer to the host and return at once; the promise resolves
   * when the GPU has got there. Nothing waits unless the caller awaits it.
   */
  readBufferLater(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const padded = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: padded,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.endPass().copyBufferToBuffer(src, offset, staging, 0, padded);
    this.flush();
    return staging.mapAsync(GPUMapMode.READ).then(async () => {
      await this.throwPendingErrors();
      const out = staging.getMappedRange().slice(0, bytes);
      staging.unmap();
      staging.destroy();
      return out;
    }, (e) => {
      staging.destroy();
      throw e;
    });
  }

  /**
   * Copy many buffer ranges to the host with one wait: the ranges share staging buffers of up to
   * 64 MiB (a larger range gets its own), all mapped together. Saving a LoRA or an optimizer state
   * reads hundreds of small tensors; one wait each would cost ~10 ms apiece in Deno's poll loop.
   */
  async readBuffers(
    ranges: { buffer: GPUBuffer; offset: number; bytes: number }[],
  ): Promise<ArrayBuffer[]> {
    this.awaitedReads++;
    const CHUNK = 64 << 20;
    const out: ArrayBuffer[] = new Array(ranges.length);
    const maps: Promise<void>[] = [];
    for (let i = 0; i < ranges.length;) {
      let total = 0, j = i;
      while (j < ranges.length && (j === i || total + pad4(ranges[j].bytes) <= CHUNK)) {
        total += pad4(ranges[j].bytes);
        j++;
      }
      const staging = this.device.createBuffer({
        size: Math.max(4, total),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const enc = this.endPass();
      let at = 0;
      const first = i;
      const places: number[] = [];
      for (let k = i; k < j; k++) {
        const r = ranges[k];
        if (r.bytes > 0) enc.copyBufferToBuffer(r.buffer, r.offset, staging, at, pad4(r.bytes));
        places.push(at);
        at += pad4(r.bytes);
      }
      this.flush();
      maps.push(
        staging.mapAsync(GPUMapMode.READ).then(() => {
          const mapped = staging.getMappedRange();
          places.forEach((p, k) => (out[first + k] = mapped.slice(p, p + ranges[first + k].bytes)));
          staging.unmap();
          staging.destroy();
        }),
      );
      i = j;
    }
    try {
      await this.throwPendingErrors();
    } finally {
      await Promise.allSettled(maps);
    }
    await Promise.all(maps);
    return out;
  }

  /** Copy `bytes` bytes of a buffer to the host (flushes pending work first, then waits). */
  async readBuffer(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.awaitedReads++;
    const pending = this.readBufferLater(src, offset, bytes);
    try {
      await this.throwPendingErrors();
    } catch (e) {
      pending.catch(() => {});
      throw e;
    }
    return await pending;
  }

  /** Wait until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.awaitedReads++;
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.throwPendingErrors();
  }

  /** Host-path counters since start. */
  counters(): HostCounters {
    let pipelines = 0;
    for (const k of this.kernels.values()) pipelines += k.pipelines.size;
    return {
      dispatches: this.dispatches,
      submits: this.submits,
      bindGroupsCreated: this.binds.created,
      bindGroupHits: this.binds.hits,
      uniformWrites: this.arena.writes,
      awaitedReads: this.awaitedReads,
      bufferWrites: this.arena.writes + this.dataWrites,
      submitMs: this.submitMs,
      pipelines,
    };
  }

  private async throwPendingErrors(): Promise<void> {
    if (this.validations.length) {
      await Promise.all(this.validations);
      this.validations = [];
    }
    if (this.errors.length) {
      const msg = this.errors.join("\n");
      this.errors = [];
      throw new Error(msg);
    }
  }
}

/** Bytes rounded up to a whole number of 4-byte words (copies move whole words). */
function pad4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

let runtime: Runtime | null = null;

/** Initialise the GPU runtime (idempotent). Call once before using tensors. */
export async function initGpu(): Promise<Runtime> {
  if (!runtime) runtime = new Runtime(await getGpu());
  return runtime;
}

/** The runtime; `initGpu()` must have completed. */
export function rt(): Runtime {
  if (!runtime) {
    gpuSync(); // throws the helpful error when the device was never requested
    runtime = new Runtime(gpuSync());
  }
  return runtime;
}

export type { Kernel, Runtime };
