/**
 * End-to-end proof of the engine: a small conv + attention network trained from scratch on a fixed
 * target, gradient checkpointing (same gradients, lower peak), and the pool returning to its
 * baseline after forward + backward + optimizer step.
 */
import assert from "node:assert/strict";
import {
  AdamW,
  add,
  attention,
  backward,
  checkpoint,
  groupNorm,
  initGpu,
  mseLoss,
  permute,
  reshape,
  rt,
  scope,
  Tensor,
} from "../gpu/mod.ts";
import { conv2d } from "../gpu/ops/conv2d.ts";
import { matmulBias } from "../gpu/ops/matmul.ts";
import { assertClose, randn } from "./op_check.ts";

const C = 8, H = 8, W = 8, CIN = 3;

function param(shape: number[], seed: number, std: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return Tensor.fromArray(randn(n, seed, std), shape).param();
}

/** conv3x3 -> 3 x [GN+SiLU -> self-attention over H*W tokens (residual)] -> conv1x1. */
function makeNet(seed: number) {
  const p = {
    c1w: param([C, CIN, 3, 3], seed, 0.3),
    c1b: param([C], seed + 1, 0.1),
    gnw: Tensor.full([C], 1).param(),
    gnb: Tensor.zeros([C]).param(),
    qkvw: param([3 * C, C], seed + 2, 0.3),
    qkvb: param([3 * C], seed + 3, 0.05),
    c2w: param([CIN, C, 1, 1], seed + 4, 0.3),
    c2b: param([CIN], seed + 5, 0.05),
  };
  const block = (h: Tensor): Tensor => {
    const n = groupNorm(h, p.gnw, p.gnb, 4, 1e-5, { silu: true });
    const tokens = permute(reshape(n, [1, C, H * W]), [0, 2, 1]); // [1, HW, C]
    const qkv = matmulBias(tokens, p.qkvw, p.qkvb, { transB: true }); // [1, HW, 3C]
    const heads = permute(reshape(qkv, [1, H * W, 3, 2, C / 2]), [2, 0, 3, 1, 4]); // [3,1,2,HW,C/2]
    const flat = reshape(heads, [3, 2, H * W, C / 2]);
    const q = sliceFirst(flat, 0), k = sliceFirst(flat, 1), v = sliceFirst(flat, 2);
    const a = attention(q, k, v); // [2, HW, C/2] as [B*H, T, D]
    const back = reshape(permute(reshape(a, [2, H * W, C / 2]), [1, 0, 2]), [H * W, C]);
    const img = reshape(permute(back, [1, 0]), [1, C, H, W]);
    return add(h, img);
  };
  const forward = (x: Tensor, ckpt: boolean): Tensor =>
    scope(() => {
      const h = conv2d(x, p.c1w, p.c1b, { padding: 1 });
      // Three applications of the block: checkpointing keeps one block's activations at a time.
      let hk = h;
      for (let i = 0; i < 3; i++) hk = ckpt ? checkpoint(block, hk) : block(hk);
      return conv2d(hk, p.c2w, p.c2b);
    });
  return { params: Object.values(p), forward };
}

/** Row `i` of a [3, ...] tensor as its own tensor (via a one-hot contraction; differentiable). */
function sliceFirst(t: Tensor, i: number): Tensor {
  const rest = t.shape.slice(1);
  const n = rest.reduce((a, b) => a * b, 1);
  const sel = Tensor.fromArray([0, 1, 2].map((k) => (k === i ? 1 : 0)), [1, 3]);
  const flat = reshape(t, [3, n]);
  // [1,3] x [3,n] -> [1,n]
  return reshape(matmulBias(sel, flat, Tensor.zeros([n]), {}), rest);
}

Deno.test("toy conv+attention network trains to 1/100 of its initial loss", async () => {
  await initGpu();
  const x = Tensor.fromArray(randn(CIN * H * W, 100), [1, CIN, H, W]);
  const target = Tensor.fromArray(randn(CIN * H * W, 101, 0.5), [1, CIN, H, W]);
  const net = makeNet(1);
  const opt = new AdamW(net.params, { lr: 2e-2, weightDecay: 0 });
  let first = 0, last = 0;
  for (let step = 0; step < 400; step++) {
    const loss = scope(() => mseLoss(net.forward(x, false), target));
    backward(loss);
    opt.update();
    opt.zeroGrad();
    if (step === 0) first = await loss.item();
    if (step % 50 === 49) {
      last = await loss.item();
      if (last < first / 100) {
        loss.dispose();
        break;
      }
    }
    loss.dispose();
  }
  assert.ok(last < first / 100, `loss went from ${first} to ${last}, not 100x lower`);
  opt.dispose();
  for (const t of [x, target, ...net.params]) t.dispose();
});

Deno.test("gradient checkpointing: same gradients, lower peak memory", async () => {
  await initGpu();
  const x = Tensor.fromArray(randn(CIN * H * W, 7), [1, CIN, H, W]);
  const target = Tensor.fromArray(randn(CIN * H * W, 8), [1, CIN, H, W]);
  const net = makeNet(3);
  const run = async (ckpt: boolean) => {
    await rt().sync();
    rt().storage.resetPeak();
    const base = rt().storage.stats().liveBytes;
    const loss = scope(() => mseLoss(net.forward(x, ckpt), target));
    backward(loss);
    loss.dispose();
    await rt().sync();
    const peak = rt().storage.stats().peakBytes - base;
    const grads = await Promise.all(net.params.map((p) => p.grad!.toArray()));
    for (const p of net.params) {
      p.grad!.dispose();
      p.grad = null;
    }
    return { peak, grads };
  };
  const plain = await run(false);
  const ck = await run(true);
  plain.grads.forEach((g, i) => assertClose(`param ${i} grad`, ck.grads[i], g, 1e-5));
  assert.ok(ck.peak < plain.peak, `checkpointed peak ${ck.peak} >= plain ${plain.peak}`);
  for (const t of [x, target, ...net.params]) t.dispose();
});

Deno.test("forward + backward + AdamW step returns the pool to its baseline", async () => {
  await initGpu();
  const x = Tensor.fromArray(randn(CIN * H * W, 9), [1, CIN, H, W]);
  const target = Tensor.fromArray(randn(CIN * H * W, 10), [1, CIN, H, W]);
  const net = makeNet(5);
  const opt = new AdamW(net.params, { lr: 1e-3 });
  const step = () => {
    const loss = scope(() => mseLoss(net.forward(x, false), target));
    backward(loss);
    loss.dispose();
    opt.update();
    opt.zeroGrad();
  };
  step(); // allocates the optimizer state
  await rt().sync();
  const base = rt().storage.stats().liveBytes;
  for (let i = 0; i < 3; i++) step();
  await rt().sync();
  assert.equal(rt().storage.stats().liveBytes, base);
  opt.dispose();
  for (const t of [x, target, ...net.params]) t.dispose();
});
