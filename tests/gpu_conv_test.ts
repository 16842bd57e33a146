import assert from "node:assert/strict";
import { type KernelFamily, setKernelFamily } from "../gpu/family.ts";
import {
  concat,
  concatChannels,
  conv2d,
  type ConvPadding,
  initGpu,
  OpArgumentError,
  resizeNearest,
  slice,
  sliceChannels,
  Tensor,
  upsampleNearest2x,
} from "../gpu/mod.ts";
import { checkOp } from "./op_check.ts";
import { checkMixedAutograd } from "./mixed_precision_check.ts";

/** float64 reference convolution, NCHW, weight [Cout, Cin, kh, kw]. */
function convRef(
  [n, cin, h, w]: number[],
  [cout, , kh, kw]: number[],
  stride: number,
  padding: number | ConvPadding,
): (xs: Float64Array[]) => Float64Array {
  const [top, bottom, left, right] = typeof padding === "number"
    ? [padding, padding, padding, padding]
    : padding;
  const ho = Math.floor((h + top + bottom - kh) / stride) + 1;
  const wo = Math.floor((w + left + right - kw) / stride) + 1;
  return ([x, wt, b]) => {
    const out = new Float64Array(n * cout * ho * wo);
    for (let b0 = 0; b0 < n; b0++) {
      for (let co = 0; co < cout; co++) {
        for (let oy = 0; oy < ho; oy++) {
          for (let ox = 0; ox < wo; ox++) {
            let s = b ? b[co] : 0;
            for (let ci = 0; ci < cin; ci++) {
              for (let ky = 0; ky < kh; ky++) {
                const iy = oy * stride + ky - top;
                if (iy < 0 || iy >= h) continue;
                for (let kx = 0; kx < kw; kx++) {
                  const ix = ox * stride + kx - left;
                  if (ix < 0 || ix >= w) continue;
                  s += x[((b0 * cin + ci) * h + iy) * w + ix] *
                    wt[((co * cin + ci) * kh + ky) * kw + kx];
                }
              }
            }
            out[((b0 * cout + co) * ho + oy) * wo + ox] = s;
          }
        }
      }
    }
    return out;
  };
}

interface ConvCase {
  k: number;
  stride: number;
  pad: number;
  bias: boolean;
  x: number[];
  cout: number;
}

const cases: ConvCase[] = [
  { k: 3, stride: 1, pad: 1, bias: true, x: [2, 3, 7, 6], cout: 5 },
  { k: 3, stride: 1, pad: 0, bias: false, x: [2, 3, 7, 6], cout: 5 },
  { k: 3, stride: 2, pad: 1, bias: true, x: [2, 3, 7, 6], cout: 5 },
  { k: 3, stride: 2, pad: 0, bias: false, x: [1, 4, 8, 7], cout: 6 },
  { k: 1, stride: 1, pad: 0, bias: true, x: [2, 3, 7, 6], cout: 5 },
  { k: 1, stride: 2, pad: 0, bias: false, x: [2, 3, 7, 6], cout: 5 },
  { k: 3, stride: 1, pad: 1, bias: true, x: [1, 17, 4, 3], cout: 18 },
];

for (const dtype of ["f32", "f16"] as const) {
  for (const c of cases) {
    const name = `conv2d k${c.k} s${c.stride} p${c.pad}${c.bias ? " bias" : ""} ` +
      `x[${c.x}] cout ${c.cout} ${dtype}`;
    Deno.test(name, async () => {
      const wShape = [c.cout, c.x[1], c.k, c.k];
      const shapes = c.bias ? [c.x, wShape, [c.cout]] : [c.x, wShape];
      const opts = { stride: c.stride, padding: c.pad };
      await checkOp({
        name,
        dtype,
        shapes,
        gpu: ([x, w, b]) => conv2d(x, w, b ?? null, opts),
        cpu: convRef(c.x, wShape, c.stride, c.pad),
        eps: dtype === "f16" ? 1e-2 : 1e-4,
      });
    });
  }
}

/** Padding per side ([top, bottom, left, right]), in both kernel families. */
const paddedCases: (Omit<ConvCase, "pad"> & { pad: ConvPadding })[] = [
  // diffusers' VAE downsampler, F.pad (0, 1, 0, 1) then conv: even and odd sizes.
  { k: 3, stride: 2, pad: [0, 1, 0, 1], bias: true, x: [1, 3, 6, 8], cout: 5 },
  { k: 3, stride: 2, pad: [0, 1, 0, 1], bias: false, x: [2, 2, 5, 7], cout: 4 },
  // Every side different, wider than the kernel reach on one side.
  { k: 3, stride: 1, pad: [2, 0, 1, 3], bias: true, x: [1, 3, 4, 5], cout: 6 },
  { k: 2, stride: 3, pad: [1, 2, 0, 1], bias: false, x: [2, 3, 7, 6], cout: 3 },
  // A 1x1 kernel with padding is not a plain GEMM.
  { k: 1, stride: 1, pad: [1, 0, 0, 2], bias: true, x: [1, 4, 3, 3], cout: 9 },
];

async function withFamily(family: KernelFamily, fn: () => Promise<void>): Promise<void> {
  setKernelFamily(family);
  try {
    await fn();
  } finally {
    setKernelFamily(null);
  }
}

for (const family of ["software", "hardware"] as const) {
  for (const dtype of ["f32", "f16"] as const) {
    for (const c of paddedCases) {
      const name = `conv2d ${family} k${c.k} s${c.stride} padding [${c.pad}]` +
        `${c.bias ? " bias" : ""} x[${c.x}] cout ${c.cout} ${dtype}`;
      Deno.test(name, () =>
        withFamily(family, async () => {
          const wShape = [c.cout, c.x[1], c.k, c.k];
          const shapes = c.bias ? [c.x, wShape, [c.cout]] : [c.x, wShape];
          const opts = { stride: c.stride, padding: c.pad };
          await checkOp({
            name,
            dtype,
            shapes,
            gpu: ([x, w, b]) => conv2d(x, w, b ?? null, opts),
            cpu: convRef(c.x, wShape, c.stride, c.pad),
            eps: dtype === "f16" ? 1e-2 : 1e-4,
          });
        }));
    }
  }
}

Deno.test("conv2d padding [t, t, t, t] is padding t", async () => {
  await initGpu();
  const x = Tensor.fromArray(Float32Array.from({ length: 2 * 3 * 5 * 4 }, (_, i) => i % 7), [
    2,
    3,
    5,
    4,
  ]);
  const w = Tensor.fromArray(Float32Array.from({ length: 4 * 3 * 9 }, (_, i) => (i % 5) - 2), [
    4,
    3,
    3,
    3,
  ]);
  const a = conv2d(x, w, null, { stride: 2, padding: 1 });
  const b = conv2d(x, w, null, { stride: 2, padding: [1, 1, 1, 1] });
  assert.deepEqual(b.shape, a.shape);
  assert.deepEqual(await b.toArray(), await a.toArray());
  for (const t of [x, w, a, b]) t.dispose();
});

Deno.test("conv2d rejects bad shapes naming the op and the shapes", async () => {
  await initGpu();
  const x = Tensor.zeros([1, 3, 4, 4]);
  const w = Tensor.zeros([2, 4, 3, 3]);
  const w3 = Tensor.zeros([2, 3, 3]);
  assert.throws(
    () => conv2d(x, w),
    (e: unknown) =>
      e instanceof OpArgumentError && /conv2d/.test(e.message) &&
      /channel mismatch/.test(e.message) && /f32\[1,3,4,4\]/.test(e.message) &&
      /f32\[2,4,3,3\]/.test(e.message),
  );
  assert.throws(
    () => conv2d(x, w3),
    (e: unknown) =>
      e instanceof OpArgumentError && /conv2d/.test(e.message) && /4-D/.test(e.message) &&
      /f32\[2,3,3\]/.test(e.message),
  );
  const w33 = Tensor.zeros([2, 3, 3, 3]);
  assert.throws(
    () => conv2d(x, w33, null, { padding: [1, -1, 0, 0] }),
    (e: unknown) =>
      e instanceof OpArgumentError && /conv2d/.test(e.message) && /\[1,-1,0,0\]/.test(e.message),
  );
  for (const t of [x, w, w3, w33]) t.dispose();
});

/** float64 reference of a concat along `axis` of row-major tensors. */
function concatRef(shapes: number[][], axis: number): (xs: Float64Array[]) => Float64Array {
  const outer = shapes[0].slice(0, axis).reduce((a, b) => a * b, 1);
  const inners = shapes.map((s) => s.slice(axis).reduce((a, b) => a * b, 1));
  return (xs) => {
    const out: number[] = [];
    for (let o = 0; o < outer; o++) {
      xs.forEach((x, k) => out.push(...x.subarray(o * inners[k], (o + 1) * inners[k])));
    }
    return Float64Array.from(out);
  };
}

/** float64 reference of entries [start, end) along `axis`. */
function sliceRef(shape: number[], axis: number, start: number, end: number) {
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return ([x]: Float64Array[]): Float64Array => {
    const out: number[] = [];
    for (let o = 0; o < outer; o++) {
      out.push(...x.subarray((o * shape[axis] + start) * inner, (o * shape[axis] + end) * inner));
    }
    return Float64Array.from(out);
  };
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`upsampleNearest2x ${dtype}`, async () => {
    const [n, c, h, w] = [2, 3, 3, 5];
    await checkOp({
      name: "upsampleNearest2x",
      dtype,
      shapes: [[n, c, h, w]],
      gpu: ([x]) => upsampleNearest2x(x),
      cpu: ([x]) => {
        const out = new Float64Array(n * c * 4 * h * w);
        for (let q = 0; q < n * c; q++) {
          for (let y = 0; y < 2 * h; y++) {
            for (let z = 0; z < 2 * w; z++) {
              out[(q * 2 * h + y) * 2 * w + z] = x[(q * h + (y >> 1)) * w + (z >> 1)];
            }
          }
        }
        return out;
      },
      eps: dtype === "f16" ? 1e-2 : 1e-4,
    });
  });

  // Up by odd ratios (the U-Net's skip sizes), down, both at once, and unchanged.
  for (const [h, w, oh, ow] of [[3, 5, 5, 9], [5, 7, 3, 4], [4, 3, 2, 7], [3, 4, 3, 4]]) {
    Deno.test(`resizeNearest ${h}x${w} -> ${oh}x${ow} ${dtype}`, async () => {
      const [n, c] = [2, 3];
      await checkOp({
        name: "resizeNearest",
        dtype,
        shapes: [[n, c, h, w]],
        gpu: ([x]) => resizeNearest(x, oh, ow),
        cpu: ([x]) => {
          // PyTorch's F.interpolate(mode="nearest", size=(oh, ow)): src = floor(dst * in / out).
          const out = new Float64Array(n * c * oh * ow);
          for (let q = 0; q < n * c; q++) {
            for (let y = 0; y < oh; y++) {
              for (let z = 0; z < ow; z++) {
                const sy = Math.floor((y * h) / oh), sz = Math.floor((z * w) / ow);
                out[(q * oh + y) * ow + z] = x[(q * h + sy) * w + sz];
              }
            }
          }
          return out;
        },
        eps: dtype === "f16" ? 1e-2 : 1e-4,
      });
    });
  }

  Deno.test(`concatChannels and sliceChannels ${dtype}`, async () => {
    const shapes = [[2, 3, 2, 3], [2, 1, 2, 3], [2, 4, 2, 3]];
    await checkOp({
      name: "concatChannels",
      dtype,
      shapes,
      gpu: (xs) => concatChannels(xs),
      cpu: concatRef(shapes, 1),
      eps: dtype === "f16" ? 1e-2 : 1e-4,
    });
    await checkOp({
      name: "sliceChannels",
      dtype,
      shapes: [[2, 5, 2, 3]],
      gpu: ([x]) => sliceChannels(x, 1, 4),
      cpu: sliceRef([2, 5, 2, 3], 1, 1, 4),
      eps: dtype === "f16" ? 1e-2 : 1e-4,
    });
  });
}

Deno.test("concat and slice along the last axis (GEGLU's chunk)", async () => {
  const shapes = [[2, 3, 4], [2, 3, 5]];
  await checkOp({
    name: "concat(-1)",
    shapes,
    gpu: (xs) => concat(xs, -1),
    cpu: concatRef(shapes, 2),
  });
  await checkOp({
    name: "slice(-1) second half",
    shapes: [[2, 3, 8]],
    gpu: ([x]) => slice(x, -1, 4, 8),
    cpu: sliceRef([2, 3, 8], 2, 4, 8),
  });
  await checkOp({
    name: "concat(0)",
    shapes: [[1, 3], [2, 3]],
    gpu: (xs) => concat(xs, 0),
    cpu: concatRef([[1, 3], [2, 3]], 0),
  });
});

Deno.test("concat and slice reject bad arguments naming the op and the shapes", async () => {
  await initGpu();
  const a = Tensor.zeros([1, 2, 3, 3]);
  const b = Tensor.zeros([1, 2, 4, 3]);
  const isOpError = (op: string, ...parts: RegExp[]) => (e: unknown) =>
    e instanceof OpArgumentError && e.message.startsWith(op + ":") &&
    parts.every((r) => r.test(e.message));
  assert.throws(
    () => concatChannels([a, b]),
    isOpError("concat", /f32\[1,2,3,3\]/, /f32\[1,2,4,3\]/),
  );
  assert.throws(() => concat([a], 4), isOpError("concat", /axis 4/));
  assert.throws(() => slice(a, 1, 1, 3), isOpError("slice", /f32\[1,2,3,3\]/, /\[1, 3\)/));
  assert.throws(() => upsampleNearest2x(Tensor.zeros([3, 3])), isOpError("upsampleNearest2x"));
  assert.throws(() => resizeNearest(a, 0, 3), isOpError("resizeNearest", /0x3/));
  a.dispose();
  b.dispose();
});

// Mixed precision (an f32 LoRA factor against f16 activations): a pointwise convolution's GEMMs
// read the f32 weight as f16 and store its gradient in f32; other convolutions take the weight
// cast to f16. Either way the result and the gradients equal, bit for bit, the same convolution
// of the weight cast to f16, in both kernel families.
const mixedCases: { k: number; pad: number; bias: boolean; x: number[]; cout: number }[] = [
  { k: 1, pad: 0, bias: false, x: [2, 8, 4, 4], cout: 4 },
  { k: 1, pad: 0, bias: true, x: [1, 5, 3, 7], cout: 6 },
  { k: 3, pad: 1, bias: false, x: [2, 3, 5, 4], cout: 4 },
];

for (const family of ["software", "hardware"] as const) {
  for (const c of mixedCases) {
    const name = `conv2d ${family} k${c.k} p${c.pad}${c.bias ? " bias" : ""} x[${c.x}] ` +
      `cout ${c.cout}, f32 weight and f16 x`;
    Deno.test(name, () =>
      withFamily(family, async () => {
        const wShape = [c.cout, c.x[1], c.k, c.k];
        const opts = { padding: c.pad };
        await checkOp({
          name,
          dtype: "f16",
          dtypes: [undefined, "f32"],
          shapes: c.bias ? [c.x, wShape, [c.cout]] : [c.x, wShape],
          gpu: ([x, w, b]) => conv2d(x, w, b ?? null, opts),
          cpu: convRef(c.x, wShape, 1, c.pad),
          eps: 1e-2,
        });
        if (c.bias) return;
        const out = [c.x[0], c.cout, c.x[2], c.x[3]];
        await checkMixedAutograd(
          name,
          { x: c.x, w: wShape, out },
          (x, w, r) => conv2d(x, w, null, { ...opts, alpha: 0.5, residual: r }),
        );
      }));
  }
}
