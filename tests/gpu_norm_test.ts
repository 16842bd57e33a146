import { groupNorm, layerNorm } from "../gpu/mod.ts";
import { checkOp } from "./op_check.ts";

function groupNormRef(
  n: number,
  c: number,
  s: number,
  groups: number,
  eps: number,
  silu: boolean,
): (xs: Float64Array[]) => Float64Array {
  return ([x, w, b]) => {
    const y = new Float64Array(x.length);
    const cpg = c / groups;
    for (let i = 0; i < n; i++) {
      for (let g = 0; g < groups; g++) {
        const base = (i * c + g * cpg) * s;
        const cnt = cpg * s;
        let m = 0;
        for (let k = 0; k < cnt; k++) m += x[base + k];
        m /= cnt;
        let v = 0;
        for (let k = 0; k < cnt; k++) v += (x[base + k] - m) ** 2;
        const r = 1 / Math.sqrt(v / cnt + eps);
        for (let k = 0; k < cnt; k++) {
          const ch = g * cpg + Math.floor(k / s);
          let o = (x[base + k] - m) * r * w[ch] + b[ch];
          if (silu) o = o / (1 + Math.exp(-o));
          y[base + k] = o;
        }
      }
    }
    return y;
  };
}

for (const silu of [false, true]) {
  for (const dtype of ["f32", "f16"] as const) {
    Deno.test(`groupNorm${silu ? "+silu" : ""} ${dtype}`, async () => {
      await checkOp({
        name: "groupNorm",
        dtype,
        shapes: [[2, 6, 3, 5], [6], [6]],
        gpu: ([x, w, b]) => groupNorm(x, w, b, 3, 1e-5, { silu }),
        cpu: groupNormRef(2, 6, 15, 3, 1e-5, silu),
        gradTol: dtype === "f16" ? 5e-2 : 1e-3,
        eps: dtype === "f16" ? 1e-3 : 1e-4,
      });
    });
  }
}

Deno.test("groupNorm large group crosses workgroup strides", async () => {
  await checkOp({
    name: "groupNorm",
    shapes: [[1, 4, 20, 20], [4], [4]],
    gpu: ([x, w, b]) => groupNorm(x, w, b, 2, 1e-6),
    cpu: groupNormRef(1, 4, 400, 2, 1e-6, false),
  });
});

function layerNormRef(c: number, eps: number): (xs: Float64Array[]) => Float64Array {
  return ([x, w, b]) => {
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
  };
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`layerNorm ${dtype}`, async () => {
    await checkOp({
      name: "layerNorm",
      dtype,
      shapes: [[2, 5, 12], [12], [12]],
      gpu: ([x, w, b]) => layerNorm(x, w, b, 1e-5),
      cpu: layerNormRef(12, 1e-5),
      gradTol: dtype === "f16" ? 5e-2 : 1e-3,
      eps: dtype === "f16" ? 1e-3 : 1e-4,
    });
  });
}
