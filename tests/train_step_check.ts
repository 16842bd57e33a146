/**
 * The checks the kohya training-step fixtures share (SD in train/, SDXL in sdxl-tiny/train/):
 * every gradient against the reference within a relative tolerance, then clipping and one AdamW
 * step with kohya's parameter groups run from the reference gradients.
 */
import assert from "node:assert/strict";
import { AdamW, clipGradNorm, Tensor } from "../gpu/mod.ts";
import { parameterLearningRates } from "../core/lora/block_lr.ts";
import type { LoraNetwork } from "../core/lora/network.ts";
import { assertClose } from "./op_check.ts";

/** The fixture settings the optimizer step reads. */
export interface StepSettings {
  text_encoder_lr: number | null;
  unet_lr: number | null;
  learning_rate: number | null;
  max_grad_norm: number;
}

/** One parameter's gradient: ours and the reference. */
export interface GradPair {
  key: string;
  got: Float32Array;
  want: Float32Array;
}

/**
 * Each gradient's max |got - want| over max |want|, where the denominator is at least `floor`
 * times the largest reference gradient (true gradients that are exactly zero hold float noise).
 */
export function assertGradients(grads: readonly GradPair[], tol: number, floor: number): void {
  const gmax = Math.max(
    ...grads.map((g) => g.want.reduce((a, v) => Math.max(a, Math.abs(v)), 0)),
  );
  for (const { key, got, want } of grads) {
    let num = 0, den = floor * gmax;
    for (let i = 0; i < want.length; i++) {
      num = Math.max(num, Math.abs(got[i] - want[i]));
      den = Math.max(den, Math.abs(want[i]));
    }
    assert.ok(num / den <= tol, `${key}: relative error ${(num / den).toExponential(3)}`);
  }
}

/**
 * Clipping and one AdamW step from the reference gradients (the first AdamW step divides by
 * |g| + eps, so elements whose gradient is near eps would turn float32 noise in the gradients
 * into large update differences; the optimizer is checked on kohya's gradients). Parameters in
 * `noGrad` get no gradient, as kohya's parameters outside the graph.
 */
export async function assertOptimizerStep(
  net: LoraNetwork,
  names: Map<Tensor, string>,
  grads: readonly GradPair[],
  settings: StepSettings,
  f32: (key: string) => Promise<{ data: Float32Array }>,
  noGrad: ReadonlySet<string> = new Set(),
): Promise<void> {
  const params = net.parameters();
  for (const [i, p] of params.entries()) {
    p.grad?.dispose();
    p.grad = noGrad.has(names.get(p)!) ? null : Tensor.fromArray(grads[i].want, p.shape);
  }
  const clip = clipGradNorm(params, settings.max_grad_norm);
  assertClose("grad norm", [await clip.read()], (await f32("grad_norm_before_clip")).data, 1e-4);
  const lrs = parameterLearningRates(net.modules.map((m) => m.spec), {
    textEncoderLr: settings.text_encoder_lr ?? undefined,
    unetLr: settings.unet_lr ?? undefined,
    learningRate: settings.learning_rate ?? 1e-4,
  });
  const byLr = new Map<number, Tensor[]>();
  for (const p of params) {
    const lr = lrs.get(names.get(p)!);
    if (lr === null || lr === undefined) continue;
    byLr.set(lr, [...(byLr.get(lr) ?? []), p]);
  }
  const before = await Promise.all(params.map((p) => p.toArray()));
  const opt = new AdamW([...byLr].map(([lr, ps]) => ({ lr, params: ps })), {
    lr: 0,
    weightDecay: 0.01,
  });
  opt.update({ gradScaleTensor: clip.scale });
  for (let i = 0; i < params.length; i++) {
    const key = names.get(params[i])!;
    const after = await params[i].toArray();
    const want = (await f32(`after.${key}`)).data;
    const dGot = after.map((v, j) => v - before[i][j]);
    const dWant = want.map((v, j) => v - before[i][j]);
    // Both sides round the new parameter to float32: allow 1e-3 of the tensor's largest
    // update plus two units in the last place of the parameter itself.
    const scale = dWant.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
    for (let j = 0; j < dWant.length; j++) {
      const ulp = Math.abs(before[i][j]) * 2 ** -23;
      const ok = Math.abs(dGot[j] - dWant[j]) <= 1e-3 * scale + 2 * ulp;
      assert.ok(ok, `update of ${key}[${j}]: ${dGot[j]} vs ${dWant[j]} (scale ${scale})`);
    }
  }
  clip.dispose();
  opt.dispose();
}
