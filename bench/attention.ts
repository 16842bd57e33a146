/**
 * Fused attention at SD 1.x's largest self-attention (8 heads x 4096 tokens x head dim 40, the
 * 64x64 latent of a 512px image) and its cross-attention (77 text tokens), forward and backward
 * in f32 and f16, plus softmax over 77-wide rows; PyTorch's explicit softmax(q k^T) v on the CPU
 * runs in the same process tree (f32 only: torch 1.13 has no f16 CPU matmul, so f16 rows compare
 * with the f32 peer).
 *
 * FLOP counts follow FlashAttention's convention: forward 4 * BH * Tq * Tk * D (two matmuls),
 * backward 2.5x that (the kernels also recompute the scores, which is not counted).
 *
 *   deno run -A bench/attention.ts
 *
 * @module
 */
import {
  attentionBackwardRaw,
  attentionForwardRaw,
  initGpu,
  softmaxRaw,
  Tensor,
} from "../gpu/mod.ts";
import { type BenchRow, peerLabel, randomSigned, runPeer, table, timeGpu } from "./harness.ts";

const CASES = [
  { name: "self 8x4096x4096 d40", bh: 8, tq: 4096, tk: 4096, d: 40, causal: false },
  { name: "cross 8x4096x77 d40", bh: 8, tq: 4096, tk: 77, d: 40, causal: false },
];
const SOFTMAX = { rows: 8 * 4096, n: 77 };

/** Forward and backward rows per case and dtype, and a softmax row, with PyTorch ratios. */
export async function bench(): Promise<BenchRow[]> {
  const gpu = await initGpu();
  const peer = await runPeer("attention.py", { cases: CASES, softmax: SOFTMAX, iters: 1 });
  const peerName = peerLabel(peer);
  const rows: BenchRow[] = [];
  const dtypes = gpu.gpu.hasF16 ? ["f32", "f16"] as const : ["f32"] as const;
  for (const dtype of dtypes) {
    for (const c of CASES) {
      const mk = (t: number) =>
        Tensor.fromArray(randomSigned(c.bh * t * c.d), [c.bh, t, c.d], dtype);
      const q = mk(c.tq), k = mk(c.tk), v = mk(c.tk), g = mk(c.tq);
      const opts = { causal: c.causal };
      const p = peer?.[c.name] as { forward: number; backward: number } | undefined;
      const flops = 4 * c.bh * c.tq * c.tk * c.d;
      // One timed iteration after one warm-up (which also compiles): the self-attention case
      // takes seconds per pass on lavapipe.
      const fwd = await timeGpu(() => {
        const r = attentionForwardRaw(q, k, v, opts);
        r.out.dispose();
        r.lse.dispose();
      }, { warmup: 1, iters: 1 });
      rows.push({
        name: `attention ${c.name} fwd ${dtype}`,
        seconds: fwd,
        flops,
        peer: peerName,
        peerSeconds: p?.forward,
      });
      const { out, lse } = attentionForwardRaw(q, k, v, opts);
      const bwd = await timeGpu(() => {
        const r = attentionBackwardRaw(q, k, v, out, lse, g, opts);
        for (const t of [r.dq, r.dk, r.dv]) t?.dispose();
      }, { warmup: 1, iters: 1 });
      rows.push({
        name: `attention ${c.name} bwd ${dtype}`,
        seconds: bwd,
        flops: 2.5 * flops,
        peer: peerName,
        peerSeconds: p?.backward,
      });
      for (const t of [q, k, v, g, out, lse]) t.dispose();
    }
    const x = Tensor.fromArray(
      randomSigned(SOFTMAX.rows * SOFTMAX.n),
      [SOFTMAX.rows, SOFTMAX.n],
      dtype,
    );
    const sm = await timeGpu(() => softmaxRaw(x).dispose(), { iters: 5 });
    rows.push({
      name: `softmax ${SOFTMAX.rows}x${SOFTMAX.n} ${dtype}`,
      seconds: sm,
      bytes: 2 * x.size * (dtype === "f32" ? 4 : 2),
      peer: peerName,
      peerSeconds: peer?.softmax as number | undefined,
    });
    x.dispose();
  }
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
