/**
 * `createOptimizer`: one of the optimizers here from a typed description. The options are those of
 * each class without the learning rate, which comes from the parameter groups (the first group's
 * lr is the default of any group without one).
 *
 * @module
 */
import type { Tensor } from "../tensor.ts";
import { Adafactor, type AdafactorOptions } from "./adafactor.ts";
import { AdamW, type AdamWOptions, type ParamGroup } from "./adamw.ts";
import { AdamW8bit, type AdamW8bitOptions } from "./adamw8bit.ts";
import type { Optimizer } from "./common.ts";
import { Lion, type LionOptions } from "./lion.ts";
import { SGDNesterov, type SGDOptions } from "./sgd.ts";

/** Which optimizer, with its options (the lr comes from the groups). */
export type OptimizerSpec =
  | { type: "AdamW"; options: Omit<AdamWOptions, "lr"> }
  | { type: "AdamW8bit"; options: Omit<AdamW8bitOptions, "lr"> }
  | { type: "Lion"; options: Omit<LionOptions, "lr"> }
  | { type: "SGDNesterov"; options: Omit<SGDOptions, "lr"> }
  /** With `relativeStep` the optimizer computes its own lr and the groups' lr is not used. */
  | { type: "Adafactor"; options: Omit<AdafactorOptions, "lr"> };

/** The optimizer types {@link OptimizerSpec} can name. */
export type OptimizerType = OptimizerSpec["type"];

/** Build the optimizer `spec` describes over parameter groups (or one group of tensors). */
export function createOptimizer(spec: OptimizerSpec, groups: ParamGroup[] | Tensor[]): Optimizer {
  const lr = groups.length && "lr" in groups[0] ? (groups[0] as ParamGroup).lr : 0;
  switch (spec.type) {
    case "AdamW":
      return new AdamW(groups, { ...spec.options, lr });
    case "AdamW8bit":
      return new AdamW8bit(groups, { ...spec.options, lr });
    case "Lion":
      return new Lion(groups, { ...spec.options, lr });
    case "SGDNesterov":
      return new SGDNesterov(groups, { ...spec.options, lr });
    case "Adafactor":
      return new Adafactor(groups, { ...spec.options, lr: spec.options.relativeStep ? null : lr });
  }
}
