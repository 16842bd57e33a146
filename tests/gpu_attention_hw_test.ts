/**
 * The hardware family's attention (FlashAttention-2 tiling), forced on the software adapter:
 * forward and gradients against a float64 reference in both layouts, causal or not, head dims
 * that are and are not multiples of 4, sequences that are not multiples of the tile or block,
 * Tq != Tk either way, both block shapes, f32 and f16, and the launch's thread count.
 */
import assert from "node:assert/strict";
import { attention, initGpu, rt, Tensor } from "../gpu/mod.ts";
import { setKernelFamily } from "../gpu/family.ts";
import {
  ATTENTION_THREADS,
  attentionGrid,
  attentionTile,
  forceAttentionBlock,
} from "../gpu/ops/attention_tiled.ts";
import { attentionForwardRaw } from "../gpu/ops/attention.ts";
import { checkOp } from "./op_check.ts";

setKernelFamily("hardware");

interface Case {
  b: number;
  h: number;
  tq: number;
  tk: number;
  d: number;
  causal?: boolean;
  scale?: number;
  /** Token layout [B, T, H * D] instead of [B, H, T, D]. */
  tokens?: boolean;
  block: "wide" | "narrow";
}

/** float64 softmax(scale q k^T [causal, top-left]) v, either layout, addressed by stride. */
function reference(c: Case): (xs: Float64Array[]) => Float64Array {
  // Plain locals: the inner loops stay monomorphic across cases.
  const { b, h, tq, tk, d } = c;
  const scale = c.scale ?? 1 / Math.sqrt(d), causal = !!c.causal, tokens = !!c.tokens;
  const at = (t: number, bi: number, hi: number, i: number) =>
    tokens ? ((bi * t + i) * h + hi) * d : ((bi * h + hi) * t + i) * d;
  return ([q, k, v]) => {
    const out = new Float64Array(b * h * tq * d);
    const s = new Float64Array(tk);
    for (let bi = 0; bi < b; bi++) {
      for (let hi = 0; hi < h; hi++) {
        for (let i = 0; i < tq; i++) {
          const qo = at(tq, bi, hi, i);
          let mx = -Infinity;
          for (let j = 0; j < tk; j++) {
            if (causal && j > i) {
              s[j] = -Infinity;
              continue;
            }
            const ko = at(tk, bi, hi, j);
            let acc = 0;
            for (let e = 0; e < d; e++) acc += q[qo + e] * k[ko + e];
            s[j] = acc * scale;
            mx = Math.max(mx, s[j]);
          }
          let sum = 0;
          for (let j = 0; j < tk; j++) sum += s[j] = Math.exp(s[j] - mx);
          for (let j = 0; j < tk; j++) {
            const w = s[j] / sum, vo = at(tk, bi, hi, j);
            for (let e = 0; e < d; e++) out[qo + e] += w * v[vo + e];
          }
        }
      }
    }
    return out;
  };
}

// The tile is 64 rows at these head dims under lavapipe's 32 KiB (16 at D = 160); the wide block
// owns 64 rows (2 invocations each), the narrow one 16 (8 each).
const cases: Case[] = [
  { b: 1, h: 2, tq: 70, tk: 75, d: 8, block: "wide" },
  { b: 2, h: 1, tq: 67, tk: 70, d: 8, causal: true, block: "wide" },
  { b: 1, h: 2, tq: 21, tk: 70, d: 5, causal: true, tokens: true, block: "narrow" },
  { b: 2, h: 2, tq: 19, tk: 9, d: 5, tokens: true, block: "wide" },
  { b: 1, h: 1, tq: 33, tk: 77, d: 40, scale: 0.3, block: "narrow" },
  { b: 1, h: 2, tq: 70, tk: 41, d: 40, causal: true, tokens: true, block: "wide" },
  { b: 1, h: 1, tq: 9, tk: 37, d: 160, block: "narrow" },
];

for (const c of cases) {
  for (const dtype of ["f32", "f16"] as const) {
    const name = `hardware attention ${c.tokens ? "tokens" : "heads"} B${c.b} H${c.h} ` +
      `Tq${c.tq} Tk${c.tk} D${c.d}${c.causal ? " causal" : ""} ${c.block} ${dtype}`;
    Deno.test(name, async () => {
      forceAttentionBlock(c.block);
      try {
        const [q, kv] = c.tokens
          ? [[c.b, c.tq, c.h * c.d], [c.b, c.tk, c.h * c.d]]
          : [[c.b, c.h, c.tq, c.d], [c.b, c.h, c.tk, c.d]];
        const opts = { causal: c.causal, scale: c.scale, heads: c.tokens ? c.h : undefined };
        await checkOp({
          name,
          dtype,
          shapes: [q, kv, kv],
          gpu: ([q, k, v]) => attention(q, k, v, opts),
          cpu: reference(c),
          tol: dtype === "f16" ? 5e-3 : 1e-5,
          gradTol: dtype === "f16" ? 5e-2 : 2e-3,
          eps: dtype === "f16" ? 1e-2 : 1e-3,
        });
      } finally {
        forceAttentionBlock(null);
      }
    });
  }
}

Deno.test("hardware attention: tiles fit workgroup memory, threads per launch as planned", async () => {
  await initGpu();
  const limit = rt().gpu.limits.maxComputeWorkgroupStorageSize;
  for (const dv of [2, 10, 20, 40]) {
    const tile = attentionTile(dv);
    assert.ok(tile >= 8 && tile % 8 === 0 && tile <= 64);
    assert.ok(2 * tile * dv * 16 + ATTENTION_THREADS * 16 + 64 * 8 <= limit);
  }
  const g = { bh: 3, tq: 50, tk: 20 };
  const { grid } = attentionGrid("fwd", g);
  const q = Tensor.zeros([3, g.tq, 8]), k = Tensor.zeros([3, g.tk, 8]);
  rt().profile = [];
  try {
    const { out, lse } = attentionForwardRaw(q, k, k);
    out.dispose();
    lse.dispose();
    const rec = rt().profile!.filter((r) => r.key.startsWith("attention_tiled:fwd"));
    assert.equal(rec.length, 1);
    assert.equal(rec[0].threads, grid[0] * grid[1] * ATTENTION_THREADS);
  } finally {
    rt().profile = null;
    q.dispose();
    k.dispose();
    rt().flush();
  }
});
