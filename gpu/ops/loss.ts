/**
 * Losses. MSE is built from the elementwise and reduce kernels, so its backward is theirs:
 * `reduction: "none"` returns the per-element squared error for per-sample weighting (min-SNR,
 * prior-loss weights), as diffusion training loops do.
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";
import { check, fmt } from "./check.ts";
import { square, sub } from "./elementwise.ts";
import { mean } from "./reduce.ts";

/** Mean squared error between `pred` and `target` (same shapes). */
export function mseLoss(
  pred: Tensor,
  target: Tensor,
  reduction: "mean" | "none" = "mean",
): Tensor {
  check(
    pred.shape.join() === target.shape.join(),
    "mseLoss",
    () => `pred ${fmt(pred)} and target ${fmt(target)} differ in shape`,
  );
  const d = sub(pred, target);
  const sq = square(d);
  d.dispose();
  if (reduction === "none") return sq;
  const m = mean(sq);
  sq.dispose();
  return m;
}
