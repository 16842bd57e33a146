/**
 * GroupNorm(32) + SiLU at 320 x 64 x 64 (every SD ResNet block at the top level), forward and
 * backward, in GB/s of activation traffic, against PyTorch in the same run.
 */
import { backward, groupNorm, initGpu, scope, Tensor } from "../gpu/mod.ts";
import { type BenchRow, peerLabel, runPeer, table, timeGpu } from "./harness.ts";

/** Run the GroupNorm bench. */
export async function bench(): Promise<BenchRow[]> {
  await initGpu();
  const n = 1, c = 320, h = 64, w = 64, groups = 32;
  const peer = await runPeer("groupnorm.py", { n, c, h, w, groups, iters: 5 });
  const rows: BenchRow[] = [];
  for (const dtype of ["f32", "f16"] as const) {
    const size = n * c * h * w;
    const x = Tensor.fromArray(
      new Float32Array(size).map((_, i) => Math.sin(i)),
      [n, c, h, w],
      dtype,
    );
    const wt = Tensor.full([c], 1, dtype), b = Tensor.zeros([c], dtype);
    const bytes = size * (dtype === "f32" ? 4 : 2);
    const fwd = await timeGpu(() => {
      scope(() => groupNorm(x, wt, b, groups, 1e-5, { silu: true })).dispose();
    });
    x.requiresGrad = true;
    const g = Tensor.full([n, c, h, w], 0.5, dtype);
    const bwd = await timeGpu(() => {
      const y = scope(() => groupNorm(x, wt, b, groups, 1e-5, { silu: true }));
      backward(y, g);
      y.dispose();
      x.grad?.dispose();
      x.grad = null;
    });
    x.requiresGrad = false;
    const label = `groupnorm+silu 320x64x64 ${dtype}`;
    rows.push({
      name: `${label} fwd`,
      seconds: fwd,
      bytes: 3 * bytes, // read twice (stats, normalise) + write once
      peer: peerLabel(peer),
      peerSeconds: peer ? (peer.forward as number) : undefined,
    });
    rows.push({
      name: `${label} fwd+bwd`,
      seconds: bwd,
      bytes: 8 * bytes,
      peer: peerLabel(peer),
      peerSeconds: peer ? (peer.forward as number) + (peer.backward as number) : undefined,
    });
    for (const t of [x, wt, b, g]) t.dispose();
  }
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
