/**
 * The uniforms of one submit in one buffer. Each dispatch's block is copied into a host-side
 * staging array at the next aligned offset and bound at that dynamic offset; the flush writes the
 * used part with a single `writeBuffer` before the submit. One GPU buffer serves every submit:
 * queue operations run in order, so a write issued after submit k is not seen by submit k.
 *
 * @module
 */
import type { UniformWriter } from "./uniform_writer.ts";

export class UniformArena {
  readonly buffer: GPUBuffer;
  private staging: ArrayBuffer;
  private u: Uint32Array;
  private i: Int32Array;
  private f: Float32Array;
  private used = 0;
  /** `writeBuffer` calls made for uniforms. */
  writes = 0;

  constructor(private device: GPUDevice, readonly bytes: number, readonly align: number) {
    this.buffer = device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
      label: "uniform arena",
    });
    this.staging = new ArrayBuffer(bytes);
    this.u = new Uint32Array(this.staging);
    this.i = new Int32Array(this.staging);
    this.f = new Float32Array(this.staging);
  }

  /** True when a block of `bytes` still fits in this submit. */
  fits(bytes: number): boolean {
    return this.used + bytes <= this.bytes;
  }

  /** Copy a block in; returns its offset. The caller checked `fits`. */
  push(params: UniformWriter): number {
    const at = this.used;
    params.writeTo(this.u, this.i, this.f, at / 4);
    this.used = at + Math.ceil(params.byteLength / this.align) * this.align;
    return at;
  }

  /** Upload the blocks of this submit (call right before submitting). */
  upload(): void {
    if (this.used === 0) return;
    this.device.queue.writeBuffer(this.buffer, 0, this.staging, 0, this.used);
    this.writes++;
    this.used = 0;
  }

  destroy(): void {
    this.buffer.destroy();
  }
}
