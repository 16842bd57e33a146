/**
 * conv2d 3x3, 320 -> 320 channels at 64x64, batch 1 (the first U-Net level of SD 1.x at 512px):
 * forward with bias, and the backward pair (grad input + grad weight), in f32 and f16, against
 * PyTorch's CPU convolution in the same run (f32 only: torch 1.13 has no f16 CPU conv, so the f16
 * rows compare with the f32 peer).
 *
 *   deno run -A bench/conv2d.ts
 *
 * @module
 */
import { conv2dGradInput, conv2dGradWeight, conv2dRaw, convDims } from "../gpu/ops/conv2d.ts";
import { initGpu, Tensor } from "../gpu/mod.ts";
import { type BenchRow, peerLabel, randomSigned, runPeer, table, timeGpu } from "./harness.ts";

const SPEC = { n: 1, cin: 320, cout: 320, h: 64, w: 64, k: 3, stride: 1, padding: 1 };

/** Forward and backward rows for f32 and f16, each with the PyTorch ratio. */
export async function bench(): Promise<BenchRow[]> {
  const gpu = await initGpu();
  const { n, cin, cout, h, w, k, stride, padding } = SPEC;
  const peer = await runPeer("conv2d.py", { ...SPEC, iters: 5 });
  const peerName = peerLabel(peer);
  const rows: BenchRow[] = [];
  const dtypes = gpu.gpu.hasF16 ? ["f32", "f16"] as const : ["f32"] as const;
  for (const dtype of dtypes) {
    const x = Tensor.fromArray(randomSigned(n * cin * h * w), [n, cin, h, w], dtype);
    const wt = Tensor.fromArray(randomSigned(cout * cin * k * k), [cout, cin, k, k], dtype);
    const b = Tensor.fromArray(randomSigned(cout), [cout], dtype);
    const d = convDims(x, wt, b, { stride, padding });
    const dy = Tensor.fromArray(randomSigned(n * cout * d.ho * d.wo), [n, cout, d.ho, d.wo], dtype);
    const flops = 2 * n * d.ho * d.wo * cout * cin * k * k;
    const fwd = await timeGpu(() => conv2dRaw(x, wt, b, { stride, padding }).dispose(), {
      iters: 3,
    });
    rows.push({
      name: `conv2d 3x3 ${cin}->${cout} ${h}x${w} fwd ${dtype}`,
      seconds: fwd,
      flops,
      peer: peerName,
      peerSeconds: peer?.forward as number | undefined,
    });
    const gi = await timeGpu(() => conv2dGradInput(dy, wt, d).dispose(), { iters: 3 });
    const gw = await timeGpu(() => conv2dGradWeight(x, dy, d).dispose(), { iters: 3 });
    rows.push({
      name: `conv2d 3x3 ${cin}->${cout} ${h}x${w} grad input ${dtype}`,
      seconds: gi,
      flops,
    });
    rows.push({
      name: `conv2d 3x3 ${cin}->${cout} ${h}x${w} grad weight ${dtype}`,
      seconds: gw,
      flops,
    });
    rows.push({
      name: `conv2d 3x3 ${cin}->${cout} ${h}x${w} bwd (input+weight) ${dtype}`,
      seconds: gi + gw,
      flops: 2 * flops,
      peer: peerName,
      peerSeconds: peer?.backward as number | undefined,
    });
    for (const t of [x, wt, b, dy]) t.dispose();
  }
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
