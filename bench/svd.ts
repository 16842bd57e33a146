/**
 * Truncated SVD (top 32) and the full spectrum on the GPU against PyTorch's CPU SVDs in the same
 * run: torch.linalg.svd with full matrices (what kohya's extract_lora_from_models, svd_merge_lora
 * and resize_lora call) and torch.svd_lowrank. Matrices are Gaussian: a flat spectrum, the hard
 * case for a randomized method (it takes the Gram route), and what the difference of two
 * random-weight checkpoints looks like. A decaying spectrum (a real fine-tune's difference, or the
 * exactly low-rank products of svd_merge/resize) converges by subspace iteration and is faster.
 *
 * Also estimates extract_lora_from_models --dim 32 on SD1.5's 192 U-Net transformer modules by
 * timing each distinct shape once and summing with multiplicities (SVD only; the peer sum is
 * torch.linalg.svd on the same shapes; kohya's whole tool took 135 s in peer-timings.md).
 *
 *   deno run -A bench/svd.ts
 *
 * @module
 */
import { initGpu, Tensor } from "../gpu/mod.ts";
import { singularValues, svdTopK } from "../gpu/linalg/mod.ts";
import { randn } from "../tests/op_check.ts";
import { type BenchRow, peerLabel, runPeer, table, timeGpu } from "./harness.ts";

const TOPK: [number, number, number][] = [[1280, 1280, 32], [320, 2880, 32], [1280, 11520, 32]];
const SVDVALS: [number, number][] = [[1280, 1280]];

/**
 * SD1.5 U-Net transformer modules (Linear / 1x1 conv) as [out, in] with counts: per block of width
 * C, attn1 q/k/v/out, attn2 q/out and proj_in/out are C x C (8), attn2 k/v C x 768 (2), GEGLU
 * ff.net.0.proj 8C x C, ff.net.2 C x 4C; 5 blocks at 320, 5 at 640, 6 at 1280: 192 modules.
 */
function sd15Shapes(): { m: number; n: number; count: number }[] {
  const out: { m: number; n: number; count: number }[] = [];
  for (const [c, blocks] of [[320, 5], [640, 5], [1280, 6]]) {
    out.push({ m: c, n: c, count: 8 * blocks });
    out.push({ m: c, n: 768, count: 2 * blocks });
    out.push({ m: 8 * c, n: c, count: blocks });
    out.push({ m: c, n: 4 * c, count: blocks });
  }
  return out;
}

async function timeTopK(m: number, n: number, k: number): Promise<[number, string]> {
  const w = Tensor.fromArray(randn(m * n, m + n), [m, n]);
  let method = "";
  const s = await timeGpu(async () => {
    const r = await svdTopK(w, k);
    method = `${r.method}, ${r.iterations} it, res ${r.residual.toExponential(0)}`;
    r.U.dispose();
    r.Vt.dispose();
  }, { warmup: 1, iters: 1 });
  w.dispose();
  return [s, method];
}

/** Top-32 and spectrum rows, and the SD1.5 extraction estimate, with the torch ratios. */
export async function bench(): Promise<BenchRow[]> {
  await initGpu();
  const shapes = sd15Shapes();
  const peer = await runPeer("svd.py", {
    topk: TOPK,
    svdvals: SVDVALS,
    shapes: shapes.map((s) => [s.m, s.n]),
  });
  const peerName = peerLabel(peer);
  const at = (key: string, i: number) =>
    (peer?.[key] as (number | null)[] | undefined)?.[i] ?? undefined;
  const rows: BenchRow[] = [];
  for (const [i, [m, n, k]] of TOPK.entries()) {
    const [s, method] = await timeTopK(m, n, k);
    rows.push({
      name: `svdTopK ${m}x${n} k=${k} vs linalg.svd (full)`,
      seconds: s,
      peer: peerName,
      peerSeconds: at("full", i),
      note: method,
    });
    const lr = at("lowrank", i);
    if (lr !== undefined) {
      rows.push({
        name: `svdTopK ${m}x${n} k=${k} vs svd_lowrank(q=k+8, niter=2)`,
        seconds: s,
        peer: peerName,
        peerSeconds: lr,
        note: "svd_lowrank is not float32-accurate on flat spectra",
      });
    }
  }
  for (const [i, [m, n]] of SVDVALS.entries()) {
    const w = Tensor.fromArray(randn(m * n, 5), [m, n]);
    const s = await timeGpu(async () => void await singularValues(w), { warmup: 1, iters: 1 });
    w.dispose();
    rows.push({
      name: `singularValues ${m}x${n} vs linalg.svdvals`,
      seconds: s,
      peer: peerName,
      peerSeconds: at("svdvals", i),
    });
  }
  let ours = 0, theirs = 0, peerComplete = !!peer;
  for (const [i, { m, n, count }] of shapes.entries()) {
    const [s] = await timeTopK(m, n, 32);
    ours += s * count;
    const p = at("shapes", i);
    if (p === undefined) peerComplete = false;
    else theirs += p * count;
  }
  rows.push({
    name: "SD1.5 extract --dim 32, 192 U-Net modules (sum of per-shape SVDs)",
    seconds: ours,
    peer: peerName,
    peerSeconds: peerComplete ? theirs : undefined,
    note: `kohya's whole tool: 135 s in peer-timings.md, ${(135 / ours).toFixed(2)}x`,
  });
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
