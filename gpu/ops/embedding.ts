/**
 * Lookups and generated tensors: embedding lookup (backward: scatter-add via a host-built CSR of
 * positions per id, since WGSL has no float atomics), the sinusoidal timestep embedding, and fill.
 *
 * @module
 */
import embSrc from "../../shaders/embedding.wgsl" with { type: "text" };
import embBwdSrc from "../../shaders/embedding_bwd.wgsl" with { type: "text" };
import fillSrc from "../../shaders/fill.wgsl" with { type: "text" };
import { record } from "../autograd.ts";
import { rt, uniforms } from "../runtime.ts";
import { type DType, Storage, Tensor } from "../tensor.ts";
import { headed } from "../kernel_header.ts";
import { grid, specKernel } from "../wgsl.ts";
import { check, fmt } from "./check.ts";

const WG = 256;
const FILL = headed(
  { bindings: "out: rw T", params: "n: u32; value: f32; pad0 pad1: u32" },
  fillSrc,
);
const EMB = headed(
  { bindings: "weight: T; ids: u32; out: rw T", params: "nTok C V pad0: u32" },
  embSrc,
);
// csr: [ids(nU), start(nU+1), positions]
const EMB_BWD = headed(
  { bindings: "g: T; csr: u32; dw: rw T", params: "nUnique C pad0 pad1: u32" },
  embBwdSrc,
);

/** A pooled buffer holding u32 data (ids, index tables); released by the caller. */
function uploadU32(data: Uint32Array<ArrayBuffer>): Storage {
  const bytes = Math.max(4, data.byteLength);
  const s = new Storage(rt().storage.acquire(bytes), bytes);
  rt().write(s.buffer, 0, data);
  return s;
}

/** Fill a new tensor with `value` on the GPU (no host upload). */
export function fill(shape: number[], value: number, dtype: DType = "f32"): Tensor {
  const t = Tensor.empty(shape, dtype);
  const n = t.size;
  if (n > 0) {
    rt().dispatch(
      specKernel("embedding:fillSrc", FILL, dtype, { WG }),
      [t.buffer],
      uniforms().u(n).f(value).u(0, 0),
      grid(n, WG),
    );
  }
  return t;
}

/** weight [V, C] gathered at `ids` (shape `idsShape`) -> [...idsShape, C]. */
export function embedding(weight: Tensor, ids: Int32Array | number[], idsShape?: number[]): Tensor {
  check(weight.rank === 2, "embedding", () => `weight ${fmt(weight)} must be [V, C]`);
  const [v, c] = weight.shape;
  const shape = idsShape ?? [ids.length];
  check(
    shape.reduce((a, b) => a * b, 1) === ids.length,
    "embedding",
    () => `${ids.length} ids for shape [${shape}]`,
  );
  for (let i = 0; i < ids.length; i++) {
    check(
      ids[i] >= 0 && ids[i] < v && Number.isInteger(ids[i]),
      "embedding",
      () => `id ${ids[i]} at position ${i} is outside the vocabulary of ${fmt(weight)}`,
    );
  }
  const idBuf = uploadU32(Uint32Array.from(ids));
  const out = Tensor.empty([...shape, c], weight.dtype);
  rt().dispatch(
    specKernel("embedding:embSrc", EMB, weight.dtype, { WG }),
    [weight.buffer, idBuf.buffer, out.buffer],
    uniforms().u(ids.length, c, v, 0),
    grid(ids.length * c, WG),
  );
  idBuf.release();
  const idsCopy = Array.from(ids);
  return record("embedding", [weight], out, [], (g) => {
    const byId = new Map<number, number[]>();
    idsCopy.forEach((id, pos) => {
      const l = byId.get(id);
      if (l) l.push(pos);
      else byId.set(id, [pos]);
    });
    const uniq = [...byId.keys()];
    const csr = new Uint32Array(2 * uniq.length + 1 + idsCopy.length);
    let off = 0;
    uniq.forEach((id, u) => {
      csr[u] = id;
      csr[uniq.length + u] = off;
      for (const pos of byId.get(id)!) csr[2 * uniq.length + 1 + off++] = pos;
    });
    csr[2 * uniq.length] = off;
    const csrBuf = uploadU32(csr);
    const dw = fill([v, c], 0, weight.dtype);
    rt().dispatch(
      specKernel("embedding:embBwdSrc", EMB_BWD, weight.dtype, { WG }),
      [g.buffer, csrBuf.buffer, dw.buffer],
      uniforms().u(uniq.length, c, 0, 0),
      grid(uniq.length * c, WG),
    );
    csrBuf.release();
    return [dw];
  });
}

/**
 * Sinusoidal timestep embedding [B, dim] as diffusers computes it (`flip_sin_to_cos`,
 * `downscale_freq_shift`, max period 10000). Timesteps come from the host; no gradient.
 *
 * Computed on the host, rounded to float32 at each step where diffusers' float32 code rounds
 * (diffusers and the reference U-Nets build it in float32 even for a float64 model). A GPU kernel
 * cannot match it: WGSL's exp may be several ulp off (lavapipe's: up to 9 ulp on [-10, 0]), and
 * at t near 1000 one ulp of a frequency moves the argument by 6e-5, so the sines and cosines
 * (up to 1.2e-4 off) fed every ResNet's time_emb_proj a visible error.
 */
export function timestepEmbedding(
  timesteps: ArrayLike<number>,
  dim: number,
  opts: { flipSinToCos?: boolean; freqShift?: number; maxPeriod?: number; dtype?: DType } = {},
): Tensor {
  const f = Math.fround;
  const b = timesteps.length, half = Math.floor(dim / 2);
  const shift = opts.freqShift ?? 1, flip = opts.flipSinToCos ?? true;
  // exponent = float32(-ln(maxPeriod)) * k / (half - shift); freq = exp(exponent); arg = t * freq.
  const negLog = f(-Math.log(opts.maxPeriod ?? 10000));
  const freqs = Array.from(
    { length: half },
    (_, k) => f(Math.exp(f(f(negLog * k) / (half - shift)))),
  );
  const out = new Float32Array(b * dim); // an odd dim keeps its last column zero
  for (let i = 0; i < b; i++) {
    const t = f(timesteps[i]);
    for (let k = 0; k < half; k++) {
      const arg = f(t * freqs[k]);
      // Unflipped order is [sin, cos]; flipped is [cos, sin].
      out[i * dim + k] = flip ? Math.cos(arg) : Math.sin(arg);
      out[i * dim + half + k] = flip ? Math.sin(arg) : Math.cos(arg);
    }
  }
  return Tensor.fromArray(out, [b, dim], opts.dtype ?? "f32");
}
