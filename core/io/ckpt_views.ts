/**
 * Tensors as PyTorch stores them: strided views `(storage, offset, size, stride)` into raw
 * storages. A view is read with one range read covering every element it touches, then gathered
 * into row-major order when its strides are not the contiguous ones.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { decodeOwnedToF32, DTYPE_SIZE, swapBytes } from "./dtype.ts";
import type { RandomAccessFile } from "./fs.ts";
import type { FileDType, HostTensor, TensorInfo, TensorSource } from "./tensor_source.ts";

/** A raw storage: `numel` elements of `dtype`, readable by byte range. */
export interface Storage {
  readonly key: string;
  readonly dtype: FileDType;
  /** Bytes actually present for this storage. */
  readonly byteLength: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** One tensor: a strided view into a storage (offset and strides in elements). */
export interface TensorView extends TensorInfo {
  storage: Storage;
  offset: number;
  stride: number[];
}

/** Largest tensor lorakit materialises on the host (typed arrays top out near here). */
const MAX_TENSOR_BYTES = 2 ** 31;

/**
 * A TensorSource over strided views. Raw reads return the view's elements in row-major order as
 * little-endian bytes (swapped when the checkpoint was written on a big-endian machine).
 */
export function viewSource(
  file: RandomAccessFile,
  tensors: TensorView[],
  bigEndian: boolean,
): TensorSource {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const get = (name: string): TensorView => {
    const t = byName.get(name);
    if (t === undefined) throw new LorakitError(`${file.path}: no tensor named '${name}'`);
    return t;
  };
  const readRaw = async (name: string): Promise<Uint8Array> => {
    const t = get(name);
    const bytes = await readView(file.path, t);
    if (bigEndian) swapBytes(bytes, DTYPE_SIZE[t.dtype]);
    return bytes;
  };
  return {
    path: file.path,
    metadata: {},
    list: () => tensors.map(({ name, dtype, shape }) => ({ name, dtype, shape: [...shape] })),
    has: (name) => byName.has(name),
    info: (name) => {
      const { dtype, shape } = get(name);
      return { name, dtype, shape: [...shape] };
    },
    readRaw,
    readF32: async (name: string): Promise<HostTensor> => {
      const t = get(name);
      return { shape: [...t.shape], data: decodeOwnedToF32(t.dtype, await readRaw(name)) };
    },
    close: () => file.close(),
  };
}

/** The view's elements in row-major order, as contiguous little-endian bytes. */
async function readView(path: string, t: TensorView): Promise<Uint8Array> {
  const es = DTYPE_SIZE[t.dtype];
  const numel = t.shape.reduce((a, b) => a * b, 1);
  const bad = (what: string) => new LorakitError(`${path}: tensor '${t.name}': ${what}`);
  if (numel * es > MAX_TENSOR_BYTES) throw bad(`${numel} elements is too large to read`);
  if (numel === 0) return new Uint8Array(0);

  // Highest element the view touches, and whether it is plain row-major (size-1 dims aside).
  let last = t.offset;
  let contiguous = true;
  let expect = 1;
  for (let d = t.shape.length - 1; d >= 0; d--) {
    last += (t.shape[d] - 1) * t.stride[d];
    if (t.shape[d] !== 1 && t.stride[d] !== expect) contiguous = false;
    expect *= t.shape[d];
  }
  if ((last + 1) * es > t.storage.byteLength) {
    throw bad(
      `view (offset ${t.offset}, size [${t.shape}], stride [${t.stride}]) reaches element ${last} of storage '${t.storage.key}', which holds ${
        Math.floor(t.storage.byteLength / es)
      }; the file is truncated or corrupt`,
    );
  }
  const span = await t.storage.read(t.offset * es, (last - t.offset + 1) * es);
  if (contiguous) return span;
  return gather(span, t.shape, t.stride, es, numel);
}

/** Copy a strided view (element offsets relative to `span`) into row-major order. */
function gather(
  span: Uint8Array,
  shape: number[],
  stride: number[],
  es: number,
  numel: number,
): Uint8Array {
  const out = new Uint8Array(numel * es);
  const rank = shape.length;
  const inner = shape[rank - 1];
  const innerStride = stride[rank - 1];
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < out.length;) {
    if (innerStride === 1) {
      out.set(span.subarray(src * es, (src + inner) * es), o);
      o += inner * es;
    } else {
      for (let i = 0; i < inner; i++, o += es) {
        const s = (src + i * innerStride) * es;
        for (let b = 0; b < es; b++) out[o + b] = span[s + b];
      }
    }
    // Advance the outer indices like an odometer.
    for (let d = rank - 2; d >= 0; d--) {
      src += stride[d];
      if (++idx[d] < shape[d]) break;
      src -= stride[d] * shape[d];
      idx[d] = 0;
    }
  }
  return out;
}
