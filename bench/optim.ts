/**
 * One optimizer step over 3.2M parameters (200 tensors of [16, 1000], about a dim-16 SD1.5 LoRA)
 * for each optimizer here, and clipGradNorm, against PyTorch's CPU AdamW / SGD(nesterov) /
 * clip_grad_norm_ on the same tensors in the same run (bench/peer/optim.py).
 *
 *   deno run -A bench/optim.ts
 *
 * @module
 */
import {
  Adafactor,
  AdamW,
  AdamW8bit,
  clipGradNorm,
  initGpu,
  Lion,
  type Optimizer,
  SGDNesterov,
  Tensor,
} from "../gpu/mod.ts";
import { randn } from "../tests/op_check.ts";
import { type BenchRow, runPeer, table, timeGpu } from "./harness.ts";

const TENSORS = 200, ROWS = 16, COLS = 1000;

/** Rows for every optimizer and clipping, with the torch ratios where torch has the same step. */
export async function bench(): Promise<BenchRow[]> {
  await initGpu();
  const shape = [ROWS, COLS], n = ROWS * COLS, total = TENSORS * n;
  const peer = await runPeer("optim.py", {
    tensors: Array.from({ length: TENSORS }, () => shape),
  });
  const peerName = peer ? `torch ${peer.torch} cpu x${peer.threads}` : undefined;
  const at = (k: string) => (peer?.[k] as number | undefined) ?? undefined;
  const data = randn(n, 1), grad = randn(n, 2, 0.01);
  const params = Array.from({ length: TENSORS }, () => Tensor.fromArray(data, shape).param());
  for (const p of params) p.grad = Tensor.fromArray(grad, shape);
  const groups = [{ params, lr: 1e-4 }];
  const cases: [string, () => Optimizer, string | undefined, string][] = [
    ["AdamW", () => new AdamW(groups, { lr: 1e-4 }), "adamw", "8 B/param state"],
    ["AdamW8bit", () => new AdamW8bit(groups, { lr: 1e-4 }), "adamw", "2.03 B/param state"],
    ["Lion", () => new Lion(groups, { lr: 1e-4 }), undefined, "4 B/param state"],
    ["SGDNesterov", () => new SGDNesterov(groups, { lr: 1e-4 }), "sgd", "4 B/param state"],
    ["Adafactor", () => new Adafactor(groups), undefined, "factored, ~0.07 B/param"],
  ];
  const rows: BenchRow[] = [];
  for (const [name, make, peerKey, note] of cases) {
    const opt = make();
    const s = await timeGpu(() => opt.update(), { warmup: 1, iters: 3 });
    opt.dispose();
    rows.push({
      name: `${name} step, ${(total / 1e6).toFixed(1)}M params in ${TENSORS} tensors`,
      seconds: s,
      bytes: total * 4 * 2,
      peer: peerKey ? peerName : undefined,
      peerSeconds: peerKey ? at(peerKey) : undefined,
      note: peerKey === "adamw" && name !== "AdamW" ? `${note}; peer is f32 AdamW` : note,
    });
  }
  const s = await timeGpu(() => clipGradNorm(params, 1).dispose(), { warmup: 1, iters: 3 });
  rows.push({
    name: `clipGradNorm, ${(total / 1e6).toFixed(1)}M grads`,
    seconds: s,
    bytes: total * 4,
    peer: peerName,
    peerSeconds: at("clip"),
  });
  for (const p of params) {
    p.grad?.dispose();
    p.dispose();
  }
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
