import assert from "node:assert/strict";
import {
  attention,
  backward,
  initGpu,
  OpArgumentError,
  rt,
  scope,
  softmax,
  Tensor,
} from "../gpu/mod.ts";
import { checkOp, randn } from "./op_check.ts";

/** float64 reference: softmax(scale q k^T [causal]) v over [BH, Tq, D] x [BH, Tk, D]. */
function refAttention(
  bh: number,
  tq: number,
  tk: number,
  d: number,
  causal = false,
  scale = 1 / Math.sqrt(d),
): (xs: Float64Array[]) => Float64Array {
  return ([q, k, v]) => {
    const out = new Float64Array(bh * tq * d);
    const s = new Float64Array(tk);
    for (let h = 0; h < bh; h++) {
      for (let i = 0; i < tq; i++) {
        let mx = -Infinity;
        const qo = (h * tq + i) * d;
        for (let j = 0; j < tk; j++) {
          if (causal && j > i) {
            s[j] = -Infinity;
            continue;
          }
          const ko = (h * tk + j) * d;
          let acc = 0;
          for (let c = 0; c < d; c++) acc += q[qo + c] * k[ko + c];
          s[j] = acc * scale;
          mx = Math.max(mx, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < tk; j++) sum += s[j] = Math.exp(s[j] - mx);
        for (let j = 0; j < tk; j++) {
          const w = s[j] / sum, vo = (h * tk + j) * d;
          for (let c = 0; c < d; c++) out[qo + c] += w * v[vo + c];
        }
      }
    }
    return out;
  };
}

interface Case {
  name: string;
  lead: number[];
  tq: number;
  tk: number;
  d: number;
  causal?: boolean;
  scale?: number;
}
const cases: Case[] = [
  { name: "B1 H2 Tq5 Tk7 D8", lead: [1, 2], tq: 5, tk: 7, d: 8 },
  { name: "causal T6 D8", lead: [1, 2], tq: 6, tk: 6, d: 8, causal: true },
  { name: "D40 T33 (tiles)", lead: [1, 1], tq: 33, tk: 33, d: 40 },
  { name: "causal D16 T70 (workgroups)", lead: [1, 1], tq: 70, tk: 70, d: 16, causal: true },
  { name: "cross Tk77 D10, [BH,T,D], scale", lead: [2], tq: 9, tk: 77, d: 10, scale: 0.3 },
];
for (const c of cases) {
  for (const dtype of ["f32", "f16"] as const) {
    Deno.test(`attention ${c.name} ${dtype}`, async () => {
      const bh = c.lead.reduce((a, b) => a * b, 1);
      const opts = { causal: c.causal, scale: c.scale };
      await checkOp({
        name: `attention ${c.name}`,
        dtype,
        shapes: [[...c.lead, c.tq, c.d], [...c.lead, c.tk, c.d], [...c.lead, c.tk, c.d]],
        gpu: ([q, k, v]) => attention(q, k, v, opts),
        cpu: refAttention(bh, c.tq, c.tk, c.d, c.causal, c.scale),
        gradTol: dtype === "f16" ? 3e-2 : 2e-3,
      });
    });
  }
}

Deno.test("attention rejects mismatched shapes before WebGPU", async () => {
  await initGpu();
  scope(() => {
    const q = Tensor.zeros([1, 2, 4, 8]);
    const k = Tensor.zeros([1, 2, 5, 16]);
    assert.throws(() => attention(q, k, k), OpArgumentError);
    assert.throws(() => attention(q, q, Tensor.zeros([1, 2, 3, 8])), OpArgumentError);
    assert.throws(() => attention(q, q, Tensor.zeros([1, 2, 4, 8], "f16")), OpArgumentError);
  });
  rt().flush();
});

Deno.test("attention memory is O(T*D): T=1024, D=40 forward and backward", async () => {
  await initGpu();
  const t = 1024, d = 40;
  const q = Tensor.fromArray(randn(t * d, 1), [1, 1, t, d]).param();
  const k = Tensor.fromArray(randn(t * d, 2), [1, 1, t, d]).param();
  const v = Tensor.fromArray(randn(t * d, 3), [1, 1, t, d]).param();
  const g = Tensor.fromArray(randn(t * d, 4), [1, 1, t, d]);
  await rt().sync();
  const base = rt().storage.stats().liveBytes;
  rt().storage.resetPeak();
  const y = attention(q, k, v, { causal: true });
  backward(y, g);
  const dq = await q.grad!.toArray();
  const peak = rt().storage.stats().peakBytes - base;
  const td = t * d * 4;
  // out, lse, delta, dq, dk, dv and the tape's handles: a handful of [T, D] buffers (size classes
  // round up by at most 25%), while one T x T f32 score matrix alone would be 4 MiB.
  assert.ok(peak <= 10 * td, `peak extra ${peak} bytes > 10 * T * D * 4 = ${10 * td}`);
  assert.ok(peak < (t * t * 4) / 2, `peak extra ${peak} bytes is not far below T^2 floats`);
  assert.ok(dq.every(Number.isFinite));
  for (const x of [q, k, v]) (x.grad?.dispose(), x.dispose());
  y.dispose();
  g.dispose();
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, base - 4 * td);
});

function refSoftmax(n: number): (xs: Float64Array[]) => Float64Array {
  return ([x]) => {
    const y = new Float64Array(x.length);
    for (let r = 0; r < x.length / n; r++) {
      let mx = -Infinity, s = 0;
      for (let i = 0; i < n; i++) mx = Math.max(mx, x[r * n + i]);
      for (let i = 0; i < n; i++) s += y[r * n + i] = Math.exp(x[r * n + i] - mx);
      for (let i = 0; i < n; i++) y[r * n + i] /= s;
    }
    return y;
  };
}
for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`softmax last axis ${dtype}`, async () => {
    await checkOp({
      name: "softmax",
      dtype,
      shapes: [[3, 4, 77]],
      gpu: ([x]) => softmax(x, -1),
      cpu: refSoftmax(77),
    });
    await checkOp({
      name: "softmax short rows",
      dtype,
      shapes: [[5, 3]],
      gpu: ([x]) => softmax(x),
      cpu: refSoftmax(3),
    });
  });
}

Deno.test("softmax rejects other axes", async () => {
  await initGpu();
  scope(() => {
    assert.throws(() => softmax(Tensor.zeros([2, 3]), 0), OpArgumentError);
  });
  rt().flush();
});

/** [B, T, H*D] -> [B*H, T, D] (float64), and back. */
function tokensToHeads(x: Float64Array, b: number, t: number, h: number, d: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < b; i++) {
    for (let s = 0; s < t; s++) {
      for (let j = 0; j < h; j++) {
        for (let c = 0; c < d; c++) {
          out[((i * h + j) * t + s) * d + c] = x[((i * t + s) * h + j) * d + c];
        }
      }
    }
  }
  return out;
}
function headsToTokens(x: Float64Array, b: number, t: number, h: number, d: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < b; i++) {
    for (let s = 0; s < t; s++) {
      for (let j = 0; j < h; j++) {
        for (let c = 0; c < d; c++) {
          out[((i * t + s) * h + j) * d + c] = x[((i * h + j) * t + s) * d + c];
        }
      }
    }
  }
  return out;
}

for (const dtype of ["f32", "f16"] as const) {
  for (
    const [b, tq, tk, h, d, causal] of [[2, 5, 7, 3, 8, false], [1, 6, 6, 2, 5, true]] as const
  ) {
    Deno.test(
      `attention token layout [${b},${tq},${h}*${d}] x [${b},${tk},${h}*${d}]` +
        `${causal ? " causal" : ""} ${dtype}: no permutes, same result`,
      async () => {
        const ref = refAttention(b * h, tq, tk, d, causal);
        await checkOp({
          name: "attention tokens",
          dtype,
          shapes: [[b, tq, h * d], [b, tk, h * d], [b, tk, h * d]],
          gpu: ([q, k, v]) => attention(q, k, v, { heads: h, causal }),
          cpu: ([q, k, v]) =>
            headsToTokens(
              ref([
                tokensToHeads(q, b, tq, h, d),
                tokensToHeads(k, b, tk, h, d),
                tokensToHeads(v, b, tk, h, d),
              ]),
              b,
              tq,
              h,
              d,
            ),
          tol: dtype === "f16" ? 5e-3 : 1e-5,
          gradTol: dtype === "f16" ? 5e-2 : 2e-3,
          eps: dtype === "f16" ? 1e-2 : 1e-3,
        });
      },
    );
  }
}
