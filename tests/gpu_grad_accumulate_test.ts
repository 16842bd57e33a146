/**
 * Ops that add the gradient an input has already gathered into their own (a GEMM epilogue, a
 * norm's input-gradient kernel) instead of leaving the add to the tape, and the fused LoRA form
 * `residual + alpha·x·Wᵀ` (and the convolution's, in both kernel families): each checked in a
 * graph where the input has a second reader, against float64 finite differences.
 */
import { add, conv2d, groupNorm, layerNorm, linear, mul } from "../gpu/mod.ts";
import { setKernelFamily } from "../gpu/family.ts";
import { checkOp } from "./op_check.ts";

/** x [rows, c] · W[o, c]ᵀ in float64. */
function matmulT(x: Float64Array, w: Float64Array, rows: number, c: number, o: number) {
  const y = new Float64Array(rows * o);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < o; j++) {
      let s = 0;
      for (let k = 0; k < c; k++) s += x[r * c + k] * w[j * c + k];
      y[r * o + j] = s;
    }
  }
  return y;
}

function layerNormRef(x: Float64Array, w: Float64Array, b: Float64Array, c: number, eps: number) {
  const y = new Float64Array(x.length);
  for (let base = 0; base < x.length; base += c) {
    let m = 0;
    for (let k = 0; k < c; k++) m += x[base + k];
    m /= c;
    let v = 0;
    for (let k = 0; k < c; k++) v += (x[base + k] - m) ** 2;
    const r = 1 / Math.sqrt(v / c + eps);
    for (let k = 0; k < c; k++) y[base + k] = (x[base + k] - m) * r * w[k] + b[k];
  }
  return y;
}

for (const dtype of ["f32", "f16"] as const) {
  const tol = dtype === "f16"
    ? { gradTol: 5e-2, eps: 1e-3, tol: 5e-3 }
    : { gradTol: 1e-3, eps: 1e-4 };

  Deno.test(`layerNorm(x) + x: the norm's input gradient takes the skip's (${dtype})`, async () => {
    await checkOp({
      name: "layerNorm residual",
      dtype,
      ...tol,
      shapes: [[2, 5, 12], [12], [12]],
      gpu: ([x, w, b]) => add(layerNorm(x, w, b, 1e-5), x),
      cpu: ([x, w, b]) => layerNormRef(x, w, b, 12, 1e-5).map((v, i) => v + x[i]),
    });
  });

  Deno.test(`groupNorm(x) * x: the norm's input gradient takes the product's (${dtype})`, async () => {
    // Each group of 3 channels x 4 pixels normalised; the product makes the second path nonlinear.
    const gn = (x: Float64Array, w: Float64Array, b: Float64Array) => {
      const y = new Float64Array(x.length);
      for (let base = 0; base < x.length; base += 12) {
        const g = Math.floor(base / 12) % 2;
        let m = 0;
        for (let k = 0; k < 12; k++) m += x[base + k];
        m /= 12;
        let v = 0;
        for (let k = 0; k < 12; k++) v += (x[base + k] - m) ** 2;
        const r = 1 / Math.sqrt(v / 12 + 1e-5);
        for (let k = 0; k < 12; k++) {
          const ch = g * 3 + Math.floor(k / 4);
          y[base + k] = (x[base + k] - m) * r * w[ch] + b[ch];
        }
      }
      return y;
    };
    await checkOp({
      name: "groupNorm residual",
      dtype,
      ...tol,
      shapes: [[2, 6, 2, 2], [6], [6]],
      gpu: ([x, w, b]) => mul(groupNorm(x, w, b, 2, 1e-5), x),
      cpu: ([x, w, b]) => gn(x, w, b).map((v, i) => v * x[i]),
    });
  });

  Deno.test(`linear(x, W) + x: the GEMM's input gradient takes the skip's (${dtype})`, async () => {
    await checkOp({
      name: "linear residual gradient",
      dtype,
      ...tol,
      shapes: [[3, 7], [7, 7]],
      gpu: ([x, w]) => add(linear(x, w), x),
      cpu: ([x, w]) => matmulT(x, w, 3, 7, 7).map((v, i) => v + x[i]),
    });
  });

  Deno.test(`linear(x, W, b, {alpha, residual}) = r + alpha·x·Wᵀ + b (${dtype})`, async () => {
    await checkOp({
      name: "linear alpha residual",
      dtype,
      ...tol,
      shapes: [[4, 5], [3, 5], [3], [4, 3]],
      gpu: ([x, w, b, r]) => linear(x, w, b, { alpha: 0.375, residual: r }),
      cpu: ([x, w, b, r]) => matmulT(x, w, 4, 5, 3).map((v, i) => r[i] + 0.375 * v + b[i % 3]),
    });
  });
}

/** NCHW convolution, square kernel, stride 1, zero padding `pad`, in float64. */
function convRef(
  x: Float64Array,
  w: Float64Array,
  [n, ci, h, wd]: number[],
  co: number,
  k: number,
  pad: number,
): Float64Array {
  const ho = h + 2 * pad - k + 1, wo = wd + 2 * pad - k + 1;
  const y = new Float64Array(n * co * ho * wo);
  for (let b = 0; b < n; b++) {
    for (let o = 0; o < co; o++) {
      for (let i = 0; i < ho; i++) {
        for (let j = 0; j < wo; j++) {
          let s = 0;
          for (let c = 0; c < ci; c++) {
            for (let u = 0; u < k; u++) {
              for (let v = 0; v < k; v++) {
                const yi = i + u - pad, xj = j + v - pad;
                if (yi < 0 || yi >= h || xj < 0 || xj >= wd) continue;
                s += x[((b * ci + c) * h + yi) * wd + xj] * w[((o * ci + c) * k + u) * k + v];
              }
            }
          }
          y[((b * co + o) * ho + i) * wo + j] = s;
        }
      }
    }
  }
  return y;
}

for (const family of ["software", "hardware"] as const) {
  for (const [k, pad, bias] of [[3, 1, true], [1, 0, false], [1, 0, true]] as const) {
    Deno.test(
      `conv2d ${k}x${k}${bias ? " +bias" : ""} with alpha and a residual (${family} kernels)`,
      async () => {
        setKernelFamily(family);
        try {
          const xs = [2, 3, 4, 5], co = 4;
          const shapes = [xs, [co, 3, k, k], [2, co, 4, 5]];
          if (bias) shapes.push([co]);
          await checkOp({
            name: "conv2d alpha residual",
            shapes,
            gpu: ([x, w, r, b]) =>
              conv2d(x, w, b ?? null, { padding: pad, alpha: 0.625, residual: r }),
            cpu: ([x, w, r, b]) =>
              convRef(x, w, xs, co, k, pad).map((v, i) =>
                r[i] + 0.625 * v + (b ? b[Math.floor(i / 20) % co] : 0)
              ),
          });
        } finally {
          setKernelFamily(null);
        }
      },
    );
  }
}
