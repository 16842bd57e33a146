/**
 * `Tensor`: a shape, a dtype and a reference-counted pooled GPU buffer, plus the autograd fields.
 * Tensors are released deterministically: by `dispose()`, or by the `scope()` they were made in.
 * Reshape is free (a new handle on the same storage); everything else is an op.
 *
 * @module
 */
import { f16BitsToF32, f32ToF16Bits } from "./f16.ts";
import { rt } from "./runtime.ts";

/** Element types that live on the GPU. */
export type DType = "f32" | "f16";

/** Bytes per element. */
export function dtypeBytes(d: DType): number {
  return d === "f32" ? 4 : 2;
}

/** A pooled buffer shared by tensor handles (reshapes, saved-for-backward references). */
export class Storage {
  refs = 1;
  /**
   * True when the contents are never written after they were first uploaded (frozen model
   * weights): ops may then keep what they derive from them in `derived`.
   */
  constant = false;
  /** Tensors derived from a constant storage by ops (e.g. conv2d's packed weight), by key. */
  derived: Map<string, Tensor> | null = null;
  constructor(readonly buffer: GPUBuffer, readonly bytes: number) {}
  retain(): this {
    this.refs++;
    return this;
  }
  release(): void {
    if (--this.refs === 0) {
      rt().storage.release(this.buffer);
      if (this.derived) { for (const t of this.derived.values()) t.dispose(); }
      this.derived = null;
    }
    if (this.refs < 0) throw new Error("Storage released twice");
  }
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// The autograd record a tensor carries (`autograd.ts` builds and walks the graph).

/**
 * What a backward function may take over from the tape: the gradient accumulated so far for an
 * input (other ops that read the same tensor already contributed it). An op that takes it adds
 * it into the gradient it returns for that input (a GEMM does so in its epilogue), which saves
 * the tape one add.
 */
export interface GradAccumulator {
  /**
   * The gradient accumulated so far for input `k`, or null. Once taken, the op must return a
   * gradient for input `k` that includes it; the tape disposes the taken tensor afterwards.
   */
  take(k: number): Tensor | null;
}

/** Backward of one op: gradient of the output in, gradients of the inputs out (null = none). */
export type BackwardFn = (
  gradOut: Tensor,
  saved: Tensor[],
  acc: GradAccumulator,
) => (Tensor | null)[];

/** One recorded op. */
export class Node {
  constructor(
    readonly name: string,
    readonly inputs: Tensor[],
    public saved: Tensor[],
    readonly backward: BackwardFn,
  ) {}
  release(): void {
    for (const s of this.saved) s.dispose();
    this.saved = [];
  }
}

/** Scope stack: tensors created inside a scope are disposed when it ends unless kept. */
const scopes: Set<Tensor>[] = [];

/** A GPU tensor. */
export class Tensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly storage: Storage;
  /** True for parameters (leaves) and for results of ops on them while grad is enabled. */
  requiresGrad = false;
  /** Accumulated gradient of a leaf after `backward()`. */
  grad: Tensor | null = null;
  /** The op that produced this tensor, when recorded for autograd. */
  node: Node | null = null;
  private disposed = false;

  constructor(shape: number[], dtype: DType, storage: Storage) {
    this.shape = shape;
    this.dtype = dtype;
    this.storage = storage;
    const top = scopes[scopes.length - 1];
    if (top) top.add(this);
  }

  get size(): number {
    return numel(this.shape);
  }
  get rank(): number {
    return this.shape.length;
  }
  get buffer(): GPUBuffer {
    if (this.disposed) throw new Error(`use of a disposed tensor [${this.shape}]`);
    return this.storage.buffer;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  /** A new uninitialised tensor. */
  static empty(shape: number[], dtype: DType = "f32"): Tensor {
    const bytes = Math.max(4, Math.ceil((numel(shape) * dtypeBytes(dtype)) / 4) * 4);
    return new Tensor(shape, dtype, new Storage(rt().storage.acquire(bytes), bytes));
  }

  /** Upload host data (f32 values; converted when `dtype` is f16). */
  static fromArray(data: ArrayLike<number>, shape: number[], dtype: DType = "f32"): Tensor {
    const n = numel(shape);
    if (data.length !== n) {
      throw new Error(`Tensor.fromArray: ${data.length} values for shape [${shape}] (${n})`);
    }
    const t = Tensor.empty(shape, dtype);
    let bytes: Uint8Array<ArrayBuffer>;
    if (dtype === "f32") {
      const f = data instanceof Float32Array && data.buffer instanceof ArrayBuffer
        ? data as Float32Array<ArrayBuffer>
        : Float32Array.from(data);
      bytes = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    } else {
      const h = new Uint16Array(Math.ceil(n / 2) * 2);
      for (let i = 0; i < n; i++) h[i] = f32ToF16(data[i]);
      bytes = new Uint8Array(h.buffer);
    }
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    rt().write(t.storage.buffer, 0, bytes);
    return t;
  }

  /** A tensor filled with `value`. */
  static full(shape: number[], value: number, dtype: DType = "f32"): Tensor {
    return Tensor.fromArray(new Float32Array(numel(shape)).fill(value), shape, dtype);
  }

  static zeros(shape: number[], dtype: DType = "f32"): Tensor {
    return Tensor.full(shape, 0, dtype);
  }

  /** Download as f32 (waits for the GPU). */
  async toArray(): Promise<Float32Array> {
    const raw = await rt().readBuffer(this.buffer, 0, this.size * dtypeBytes(this.dtype));
    return this.#decode(raw);
  }

  /** Download several tensors as f32 with one wait for all of them. */
  static async readAll(ts: readonly Tensor[]): Promise<Float32Array[]> {
    const raws = await rt().readBuffers(
      ts.map((t) => ({ buffer: t.buffer, offset: 0, bytes: t.size * dtypeBytes(t.dtype) })),
    );
    return raws.map((raw, i) => ts[i].#decode(raw));
  }

  /**
   * Start a download as f32 and return at once; nothing waits for the GPU unless the caller
   * awaits the promise. The tensor may be disposed right after the call (the copy is queued).
   */
  readLater(): Promise<Float32Array> {
    const read = rt().readBufferLater(this.buffer, 0, this.size * dtypeBytes(this.dtype));
    return read.then((raw) => this.#decode(raw));
  }

  #decode(raw: ArrayBuffer): Float32Array {
    if (this.dtype === "f32") return new Float32Array(raw);
    const h = new Uint16Array(raw);
    const out = new Float32Array(this.size);
    for (let i = 0; i < out.length; i++) out[i] = f16ToF32(h[i]);
    return out;
  }

  /** Read a one-element tensor. */
  async item(): Promise<number> {
    return (await this.toArray())[0];
  }

  /** Another handle on the same storage (kept alive until both are disposed). */
  retain(): Tensor {
    return new Tensor(this.shape.slice(), this.dtype, this.storage.retain());
  }

  /** Release this handle; the buffer returns to the pool when no handle uses it. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
    for (const s of scopes) s.delete(this);
  }

  /**
   * Promise that this tensor's contents never change from now on (frozen model weights), so ops
   * may cache what they derive from it. Parameters that train must not be marked.
   */
  markConstant(): this {
    this.storage.constant = true;
    return this;
  }

  /** Mark a leaf as trainable (it stops being constant: cached derivations are dropped). */
  param(): this {
    this.requiresGrad = true;
    const st = this.storage;
    st.constant = false;
    if (st.derived) { for (const t of st.derived.values()) t.dispose(); }
    st.derived = null;
    return this;
  }

  /** Move this tensor out of the current scope so it outlives it. */
  keep(): this {
    for (const s of scopes) s.delete(this);
    return this;
  }

  toString(): string {
    return `Tensor(${this.dtype}[${this.shape.join(",")}])`;
  }
}

/** Collect tensors in a returned value (a tensor, array or plain object of tensors). */
function collect(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) { for (const x of v) collect(x, out); }
  else if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collect(x, out);
  }
}

/** Run `fn`; dispose every tensor it created except those it returns or `keep()`s. */
export function scope<T>(fn: () => T): T {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
  } finally {
    scopes.pop();
  }
  const keep = new Set<Tensor>();
  collect(result, keep);
  const parent = scopes[scopes.length - 1];
  for (const t of mine) {
    if (keep.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Async variant of `scope`. Do not interleave two async scopes. */
export async function scopeAsync<T>(fn: () => Promise<T>): Promise<T> {
  const mine = new Set<Tensor>();
  scopes.push(mine);
  let result: T;
  try {
    result = await fn();
  } finally {
    scopes.splice(scopes.indexOf(mine), 1);
  }
  const keep = new Set<Tensor>();
  collect(result, keep);
  const parent = scopes[scopes.length - 1];
  for (const t of mine) {
    if (keep.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** IEEE half bits from a number, round to nearest even (the codec of gpu/f16.ts). */
export const f32ToF16: (v: number) => number = f32ToF16Bits;
/** Number from IEEE half bits. */
export const f16ToF32: (h: number) => number = f16BitsToF32;
