/**
 * Shared shapes of the LDM <-> diffusers key maps. Every map is a pure function of key names
 * (and, where the layouts differ, of shapes); no tensor data is read to decide a name.
 *
 * @module
 */

/**
 * How one internal tensor is made from a stored tensor. Internal names are diffusers/HF module
 * names namespaced by part (`unet.`, `vae.`, `text_encoder.`). The element order is always the
 * stored row-major order: layouts differ only in shape (a 1x1 conv vs a linear weight has the
 * same bytes) or by a split of a fused tensor along dim 0 (a contiguous byte range), with one
 * exception: SDXL's OpenCLIP `text_projection`, stored transposed (`transpose`).
 */
export interface MapEntry {
  /** Internal (namespaced diffusers/HF) name. */
  name: string;
  /** Key in the stored file. */
  key: string;
  /** Internal shape (same element count as the stored tensor, or as its chunk). */
  shape: number[];
  /** For a fused tensor split along dim 0 into `parts` equal chunks: which chunk. */
  part?: number;
  /** Number of equal dim-0 chunks of the stored tensor (OpenCLIP's q,k,v: 3). */
  parts?: number;
  /**
   * The internal 2-D tensor is the stored one transposed (`shape` is the internal one): SDXL's
   * OpenCLIP `text_projection` (stored in x out, used as a Linear weight out x in).
   */
  transpose?: boolean;
}

/**
 * A row-major [rows, cols] matrix of `size`-byte elements transposed to [cols, rows]; works on
 * raw bytes, so any dtype.
 */
export function transposeBytes(
  src: Uint8Array,
  rows: number,
  cols: number,
  size: number,
): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const from = (r * cols + c) * size;
      out.set(src.subarray(from, from + size), (c * rows + r) * size);
    }
  }
  return out;
}

/** Number of elements of a shape (1 for a 0-d scalar). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** `[a,b,c]` for messages. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(",")}]`;
}

/** Parses a non-negative decimal integer segment; null if `s` is not one. */
export function parseIndex(s: string | undefined): number | null {
  if (s === undefined || !/^(0|[1-9][0-9]*)$/.test(s)) return null;
  return Number(s);
}
