/**
 * The command stream: a kernel cache (one pipeline per WGSL source and entry point), a single
 * open compute pass into which many dispatches are encoded, and explicit flushes. The host never
 * reads back inside a step; `readBuffer` is the only place that waits for the GPU.
 *
 * @module
 */
import { getGpu, type Gpu, gpuSync } from "./device.ts";
import { BufferPool } from "./pool.ts";

/** Dispatches encoded before an automatic submit; bounds the memory held by deferred releases. */
const MAX_DISPATCHES_PER_SUBMIT = 256;

/** Uniform parameters: plain numbers are written as u32 unless listed in `floats` by index. */
export type Params = ArrayLike<number>;

/** A value written into a uniform block: `u(x)` for u32/i32, `f(x)` for f32. */
export class UniformWriter {
  private words: number[] = [];
  private kinds: ("u" | "i" | "f")[] = [];
  u(...xs: number[]): this {
    for (const x of xs) (this.words.push(x), this.kinds.push("u"));
    return this;
  }
  i(...xs: number[]): this {
    for (const x of xs) (this.words.push(x), this.kinds.push("i"));
    return this;
  }
  f(...xs: number[]): this {
    for (const x of xs) (this.words.push(x), this.kinds.push("f"));
    return this;
  }
  /** Bytes, padded to 16 (the uniform address space rounds struct sizes to 16). */
  bytes(): Uint8Array<ArrayBuffer> {
    const n = Math.max(4, Math.ceil(this.words.length / 4) * 4);
    const buf = new ArrayBuffer(n * 4);
    const u = new Uint32Array(buf), i = new Int32Array(buf), f = new Float32Array(buf);
    this.words.forEach((w, k) => {
      const kind = this.kinds[k];
      if (kind === "f") f[k] = w;
      else if (kind === "i") i[k] = w;
      else u[k] = w >>> 0;
    });
    return new Uint8Array(buf);
  }
}

/** Shorthand for a new uniform block. */
export function uniforms(): UniformWriter {
  return new UniformWriter();
}

class Runtime {
  readonly gpu: Gpu;
  readonly device: GPUDevice;
  readonly storage: BufferPool;
  readonly uniform: BufferPool;
  private pipelines = new Map<string, GPUComputePipeline>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private encoded = 0;
  /** Uniform buffers used by the pending encoder; released after submit. */
  private pendingUniforms: GPUBuffer[] = [];
  private errors: string[] = [];
  private validations: Promise<void>[] = [];
  /** Dispatch count since start (for profiling). */
  dispatches = 0;
  submits = 0;

  constructor(gpu: Gpu) {
    this.gpu = gpu;
    this.device = gpu.device;
    const S = GPUBufferUsage;
    this.storage = new BufferPool(this.device, S.STORAGE | S.COPY_SRC | S.COPY_DST, "tensor");
    this.uniform = new BufferPool(this.device, S.UNIFORM | S.COPY_DST, "params");
  }

  /** The pipeline for a WGSL source and entry point, compiled once. */
  pipeline(source: string, entry = "main"): GPUComputePipeline {
    const key = entry + "\u0000" + source;
    let p = this.pipelines.get(key);
    if (!p) {
      this.device.pushErrorScope("validation");
      const module = this.device.createShaderModule({ code: source });
      p = this.device.createComputePipeline({
        layout: "auto",
        compute: { module, entryPoint: entry },
      });
      // Compilation errors surface at the next read-back or sync instead of as a silent zero.
      const pending = this.device.popErrorScope().then((err) => {
        if (err) {
          const first = source.split("\n").find((l) => l.startsWith("// ")) ?? "";
          this.errors.push(`WGSL pipeline '${entry}' failed: ${err.message}\n${first}`);
        }
      });
      this.validations.push(pending);
      this.pipelines.set(key, p);
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
   * given, binds as a uniform at @binding(n).
   */
  dispatch(
    pipeline: GPUComputePipeline,
    buffers: GPUBuffer[],
    params: UniformWriter | null,
    workgroups: [number, number?, number?],
  ): void {
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({
      binding,
      resource: { buffer },
    }));
    if (params) {
      const bytes = params.bytes();
      const ub = this.uniform.acquire(bytes.byteLength);
      this.device.queue.writeBuffer(ub, 0, bytes);
      this.pendingUniforms.push(ub);
      entries.push({ binding: buffers.length, resource: { buffer: ub, size: bytes.byteLength } });
    }
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.ensurePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    this.dispatches++;
    if (++this.encoded >= MAX_DISPATCHES_PER_SUBMIT) this.flush();
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
      this.device.queue.submit([enc.finish()]);
      this.encoder = null;
      this.submits++;
    }
    this.encoded = 0;
    for (const ub of this.pendingUniforms) this.uniform.release(ub);
    this.pendingUniforms.length = 0;
    this.storage.recycle();
    this.uniform.recycle();
  }

  /** Copy `bytes` bytes of a buffer to the host (flushes pending work first). */
  async readBuffer(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const padded = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: padded,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.endPass().copyBufferToBuffer(src, offset, staging, 0, padded);
    this.flush();
    await this.throwPendingErrors();
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    return out;
  }

  /** Wait until the GPU has finished all submitted work. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.throwPendingErrors();
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

export type { Runtime };
