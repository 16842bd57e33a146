/**
 * Separable resampling of 8-bit images on the GPU (`shaders/resample.wgsl`): a horizontal pass
 * into 32-bit sums, then a vertical pass that rounds to bytes. The filter comes as plain per-axis
 * tables (first source index and weights per output index) with a rounding kind, the structure
 * lorakit's image code builds to reproduce OpenCV's `cv::resize`; the engine knows nothing about
 * which filter made them.
 *
 * Integer kinds (`fixed`, `linear`, `box`) are computed in exact integer arithmetic as on the CPU;
 * the float32 kinds (`float`, and `cubic` rows) may differ by one level where the shader compiler
 * fuses a multiply-add that OpenCV rounds twice.
 *
 * @module
 */
import resampleSrc from "../../shaders/resample.wgsl" with { type: "text" };
import { headed } from "../kernel_header.ts";
import { initGpu, rt, uniforms } from "../runtime.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check } from "./check.ts";

/** One axis of a separable resize: `taps` weights from source index `start[d]` for output d. */
export interface ResampleAxis {
  readonly inSize: number;
  readonly outSize: number;
  readonly taps: number;
  readonly start: Int32Array;
  /** `outSize * taps` weights (integers for the integer kinds). */
  readonly weights: Float32Array;
}

/** How sums become bytes; see the shader's header for each rule. */
export type ResampleRounding = "fixed" | "cubic" | "linear" | "float" | "box";

/** A full resize: horizontal and vertical tables and the rounding kind. */
export interface ResampleTables {
  readonly kind: ResampleRounding;
  readonly x: ResampleAxis;
  readonly y: ResampleAxis;
}

/** An interleaved 8-bit image, rows packed: `data.length === width * height * channels`. */
export interface ByteImage<C extends number = number> {
  readonly width: number;
  readonly height: number;
  readonly channels: C;
  readonly data: Uint8Array;
}

const KIND_CODE: Record<ResampleRounding, number> = {
  fixed: 0,
  cubic: 1,
  linear: 2,
  float: 3,
  box: 4,
};
const WG = 256;
const RESAMPLE = headed({
  bindings: "src: u32; start: i32; weights: f32; dst: rw u32",
  params: "in_size out_size ch taps n simd_end: u32; box_scale: f32; n_bytes: u32",
}, resampleSrc);
const OP = "resampleGpu";

/** A pooled storage buffer holding `data` (padded to 4 bytes); released by the caller. */
function upload(data: Uint8Array | Int32Array | Float32Array): GPUBuffer {
  const bytes = Math.max(4, Math.ceil(data.byteLength / 4) * 4);
  const buf = rt().storage.acquire(bytes);
  let view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (view.byteLength !== bytes) {
    const padded = new Uint8Array(bytes);
    padded.set(view);
    view = padded;
  }
  rt().write(buf, 0, view as Uint8Array<ArrayBuffer>);
  return buf;
}

function checkAxis(a: ResampleAxis, size: number, name: string): void {
  check(
    a.inSize === size && a.outSize >= 1 && a.taps >= 1 && a.start.length === a.outSize &&
      a.weights.length === a.outSize * a.taps,
    OP,
    () =>
      `${name} table (${a.inSize} -> ${a.outSize}, ${a.taps} taps, ${a.start.length} starts, ` +
      `${a.weights.length} weights) does not fit an image ${size} wide on that axis`,
  );
}

/**
 * Resample `img` by `plan` on the GPU; resolves to the new image (same channel count). Initialises
 * the GPU runtime if needed (throws `NoGpuError` when there is no adapter).
 */
export async function resampleGpu<C extends number>(
  img: ByteImage<C>,
  plan: ResampleTables,
): Promise<ByteImage<C>> {
  const c = img.channels;
  check(
    Number.isInteger(c) && c >= 1 && c <= 4 && img.data.length === img.width * img.height * c,
    OP,
    () => `image ${img.width}x${img.height}x${c} holds ${img.data.length} bytes`,
  );
  checkAxis(plan.x, img.width, "horizontal");
  checkAxis(plan.y, img.height, "vertical");
  const kind = KIND_CODE[plan.kind];
  check(kind !== undefined, OP, () => `unknown rounding kind "${plan.kind}"`);
  const r = await initGpu();
  const outW = plan.x.outSize, outH = plan.y.outSize;
  const rowLen = outW * c;
  const nMid = img.height * rowLen;
  const nBytes = outH * rowLen;
  const limit = r.gpu.limits.maxStorageBufferBindingSize;
  check(
    nMid * 4 <= limit && img.data.length <= limit,
    OP,
    () =>
      `a ${img.width}x${img.height} -> ${outW}x${outH} resize needs ${nMid * 4} bytes in one ` +
      `buffer, more than this GPU's ${limit}`,
  );
  const src = upload(img.data);
  const xs = upload(plan.x.start), xw = upload(plan.x.weights);
  const ys = upload(plan.y.start), yw = upload(plan.y.weights);
  const mid = r.storage.acquire(Math.max(4, nMid * 4));
  const nWords = Math.ceil(nBytes / 4);
  const out = r.storage.acquire(nWords * 4);
  try {
    const box2 = plan.kind === "box" && plan.x.taps === 2 && plan.y.taps === 2;
    const simdEnd = plan.kind === "cubic" ? rowLen - (rowLen % 8) : box2 ? 1 : 0;
    const boxScale = Math.fround(1 / (plan.x.taps * plan.y.taps));
    r.dispatch(
      specKernel("resample", RESAMPLE, "f32", { WG, KIND: kind }, "horizontal"),
      [src, xs, xw, mid],
      uniforms().u(img.width, outW, c, plan.x.taps, nMid, simdEnd).f(boxScale).u(nBytes),
      grid(nMid, WG),
    );
    r.dispatch(
      specKernel("resample", RESAMPLE, "f32", { WG, KIND: kind }, "vertical"),
      [mid, ys, yw, out],
      uniforms().u(img.height, outH, rowLen, plan.y.taps, nWords, simdEnd).f(boxScale).u(nBytes),
      grid(nWords, WG),
    );
    const data = new Uint8Array(await r.readBuffer(out, 0, nBytes));
    return { width: outW, height: outH, channels: c, data };
  } finally {
    for (const b of [src, xs, xw, ys, yw, mid, out]) r.storage.release(b);
  }
}
